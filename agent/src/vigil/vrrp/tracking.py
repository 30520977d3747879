"""VRRP instances tracking things: trackers' states turned into FAULT or priority.

Trackers themselves are run and published by others (the core runs interfaces, scripts,
files and processes; BFD publishes its sessions) in the agent's tracker registry. This
part of VRRP says which keys its instances want, watches them, and on every change:

1. publishes a ``tracker`` event per tracking instance (so the event stream shows the
   cause before the ``vrrp_priority`` / ``vrrp_transition`` it leads to);
2. turns the tracker's state and the instance's weight into an
   :class:`~vigil.track.base.Effect` and applies it with the instance's hooks
   (``set_fault`` / ``clear_fault`` / ``set_priority_delta``), under the source name
   ``kind:name`` (``script:chk_haproxy``).

Applying is idempotent: reconciling an instance sets exactly the wanted effects and
clears the ones no longer wanted, so a reload that keeps a tracker keeps its state and
causes no priority change at all.

Fast peer detection lives here too: an instance's ``fast_takeover_bfd`` session is watched
like a tracker, and when it goes from Up to Down because its detection time expired
(diagnostic 1: the peer or the path is dead, not a peer that said AdminDown, RFC 5882
3.2), the instance is told (``peer_down``): a backup whose master is that peer takes over.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vigil.track.base import Effect, Tracker
from vigil.track.registry import TrackerRegistry

if TYPE_CHECKING:
    from vigil.vrrp.config import VrrpConfig, VrrpInstanceConfig

log = logging.getLogger("vigil.track")

#: the registry owner name VRRP wants its keys under
OWNER = "vrrp"
#: the BFD diagnostic that means the peer or the path died (Control Detection Time Expired)
BFD_DETECTION_EXPIRED = 1


class TrackTarget(Protocol):
    """What tracking needs of a VRRP instance (vigil.vrrp.instance.InstanceRuntime)."""

    @property
    def name(self) -> str: ...

    def set_fault(self, source: str, reason: str) -> None: ...

    def clear_fault(self, source: str, reason: str) -> None: ...

    def set_priority_delta(self, source: str, delta: int) -> None: ...

    def peer_down(self, reason: str, peer: Any) -> None: ...

    def peer_unheard(self, reason: str) -> None: ...

    def peer_up(self, reason: str) -> None: ...


class TrackHost(Protocol):
    """What tracking needs of the VRRP subsystem."""

    @property
    def instances(self) -> Mapping[str, Any]: ...

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None: ...


@dataclass(frozen=True)
class Binding:
    """One instance tracking one tracker, with the instance's weight for it."""

    key: str  # tracker key, kind:name
    kind: str
    name: str
    weight: int
    reverse: bool


def bindings_of(inst: VrrpInstanceConfig) -> list[Binding]:
    """Everything an instance tracks, in config order (interfaces, scripts, files, processes)."""
    track = inst.track
    out = [
        Binding(f"interface:{t.name}", "interface", t.name, t.weight, t.weight_reverse)
        for t in track.interfaces
    ]
    for kind, refs in (("script", track.scripts), ("file", track.files)):
        out.extend(
            Binding(f"{kind}:{r.name}", kind, r.name, r.weight, r.weight_reverse) for r in refs
        )
    out.extend(
        Binding(f"process:{r.name}", "process", r.name, r.weight, r.weight_reverse)
        for r in track.processes
    )
    out.extend(
        Binding(f"bfd:{r.name}", "bfd", r.name, r.weight, r.weight_reverse) for r in track.bfd
    )
    return out


class InstanceTracking:
    """Watches the trackers VRRP instances name; maps their states onto instances."""

    def __init__(self, host: TrackHost, registry: TrackerRegistry) -> None:
        self.host = host
        self.registry = registry
        self.bindings: dict[str, list[Binding]] = {}
        #: instance -> the tracker key of its fast takeover BFD session
        self.fast: dict[str, str] = {}
        #: fast_takeover_bfd sessions seen Down and not Up since (keys)
        self._fast_down: set[str] = set()
        self.applied: dict[str, dict[str, Effect]] = {}
        self._unwatch: dict[str, Callable[[], None]] = {}

    @property
    def trackers(self) -> dict[str, Tracker]:
        """The trackers VRRP instances track, by key (those published now)."""
        out = {}
        for key in self._unwatch:
            tracker = self.registry.get(key)
            if tracker is not None:
                out[key] = tracker
        return out

    # ------------------------------------------------------------ life cycle

    async def start(self, section: VrrpConfig) -> None:
        """Want every tracked thing; its state is known when this returns."""
        self._bind(section)
        await self.registry.want(OWNER, set(self._unwatch))

    async def apply(self, section: VrrpConfig) -> None:
        """After a reload: want the new set of keys, then reconcile every instance."""
        self._bind(section)
        await self.registry.want(OWNER, set(self._unwatch))
        for name in list(self.applied):
            if name not in self.bindings:
                del self.applied[name]
        for name in self.bindings:
            self.reconcile(name)

    async def stop(self) -> None:
        for unwatch in self._unwatch.values():
            unwatch()
        self._unwatch.clear()
        await self.registry.release(OWNER)

    def _bind(self, section: VrrpConfig) -> None:
        self.bindings = {inst.name: bindings_of(inst) for inst in section.vrrp_instances}
        self.fast = {
            inst.name: f"bfd:{inst.fast_takeover_bfd}"
            for inst in section.vrrp_instances
            if inst.fast_takeover_bfd is not None
        }
        keys = {b.key for bindings in self.bindings.values() for b in bindings}
        keys |= set(self.fast.values())
        for key in [k for k in self._unwatch if k not in keys]:
            self._unwatch.pop(key)()
        for key in keys - set(self._unwatch):
            self._unwatch[key] = self.registry.watch(key, self._registry_event)

    def _registry_event(self, key: str, tracker: Tracker | None, what: str) -> None:
        if what == "changed" and tracker is not None:
            self._fast_takeover(tracker)
            self._changed(tracker)
            return
        # appeared, replaced or gone: bring the instances that track it up to date quietly
        for name, bindings in self.bindings.items():
            if any(b.key == key for b in bindings):
                self.reconcile(name)

    # ------------------------------------------------------------ applying to instances

    def attach(self, inst: TrackTarget) -> None:
        """A (re)started instance gets every current effect at once."""
        self.applied.pop(inst.name, None)
        self.reconcile(inst.name)

    def reconcile(self, name: str) -> None:
        """Make the instance's tracker faults and deltas exactly what the trackers say."""
        inst = self._target(name)
        if inst is None:
            return
        before = self.applied.setdefault(name, {})
        wanted: dict[str, tuple[Binding, Effect]] = {}
        for b in self.bindings.get(name, []):
            tracker = self.registry.get(b.key)
            if tracker is not None:
                wanted[b.key] = (b, tracker.effect(b.weight, b.reverse))
        for key in [k for k in before if k not in wanted]:
            del before[key]
            inst.set_priority_delta(key, 0)
            inst.clear_fault(key, f"{key} is no longer tracked")
        for b, effect in wanted.values():
            self._apply(inst, b, effect)

    def _apply(self, inst: TrackTarget, b: Binding, effect: Effect) -> None:
        tracker = self.registry.get(b.key)
        assert tracker is not None
        self.applied.setdefault(inst.name, {})[b.key] = effect
        inst.set_priority_delta(b.key, effect.delta)
        if effect.fault:
            inst.set_fault(b.key, f"tracked {b.kind} {b.name}: {tracker.reason}")
        else:
            inst.clear_fault(b.key, f"tracked {b.kind} {b.name}: {tracker.reason}")

    def _target(self, name: str) -> TrackTarget | None:
        inst = self.host.instances.get(name)
        if inst is None:
            return None
        machine = getattr(inst, "machine", None)
        state = str(getattr(machine, "state", ""))
        if state in ("INIT", "STOPPED"):
            return None
        return inst

    def _changed(self, tracker: Tracker) -> None:
        for name, bindings in self.bindings.items():
            for b in bindings:
                if b.key != tracker.key:
                    continue
                inst = self._target(name)
                if inst is None:
                    continue
                effect = tracker.effect(b.weight, b.reverse)
                data: dict[str, Any] = {
                    "tracker": tracker.name,
                    "tracker_kind": tracker.kind,
                    "state": str(tracker.state),
                    "weight": b.weight,
                    "weight_reverse": b.reverse,
                    "delta": effect.delta,
                    "fault": effect.fault,
                    "reason": tracker.reason,
                    **tracker.details(),
                }
                self.host.publish(
                    "tracker",
                    name,
                    f"tracked {tracker.kind} {tracker.name} is {tracker.state} "
                    f"({tracker.reason}): {effect.describe()}",
                    **data,
                )
                self._apply(inst, b, effect)

    def _fast_takeover(self, tracker: Tracker) -> None:
        """A BFD session some instance uses for fast peer detection went Down: tell it.
        Up again after a Down: tell it too (a master announces its VIPs again)."""
        details = tracker.details()
        if tracker.ok and tracker.key in self._fast_down:
            self._fast_down.discard(tracker.key)
            for name, key in self.fast.items():
                inst = self._target(name) if key == tracker.key else None
                if inst is not None:
                    inst.peer_up(f"BFD session {tracker.name} to {details.get('peer')} is Up again")
            return
        if tracker.ok or details.get("bfd_state") != "Down":
            return
        self._fast_down.add(tracker.key)
        for name, key in self.fast.items():
            inst = self._target(name) if key == tracker.key else None
            if inst is not None:
                inst.peer_unheard(f"BFD session {tracker.name} to {details.get('peer')} went Down")
        for name, key in self.fast.items():
            if key != tracker.key:
                continue
            inst = self._target(name)
            if inst is None:
                continue
            if details.get("diag") != BFD_DETECTION_EXPIRED:
                log.info(
                    "(%s) BFD session %s is Down (%s): not a dead master, no fast takeover",
                    name,
                    tracker.name,
                    details.get("diag_text"),
                )
                continue
            peer = details.get("peer")
            inst.peer_down(
                f"fast peer detection: BFD session {tracker.name} to {peer} is Down "
                f"({tracker.reason.partition(': ')[2] or tracker.reason})",
                None if peer is None else ipaddress.ip_address(peer),
            )

    # ------------------------------------------------------------ API + metrics

    def view(self, name: str) -> list[dict[str, Any]]:
        """The instance's trackers for its API view: state, weight and what it applies."""
        applied = self.applied.get(name, {})
        out = []
        for b in self.bindings.get(name, []):
            tracker = self.registry.get(b.key)
            if tracker is None:
                continue
            effect = applied.get(b.key, Effect())
            out.append(
                {
                    **tracker.view(),
                    "weight": b.weight,
                    "weight_reverse": b.reverse,
                    "delta": effect.delta,
                    "fault": effect.fault,
                }
            )
        return out
