"""The tracker manager: builds trackers from the config and applies them to instances.

The VRRP subsystem owns one :class:`TrackerManager`. It creates one tracker per tracked
thing (however many instances track it), subscribes to it, and on every change:

1. publishes a ``tracker`` event per tracking instance (so the event stream shows the
   cause before the ``vrrp_priority`` / ``vrrp_transition`` it leads to);
2. turns the tracker's state and the instance's weight into an
   :class:`~vigil.track.base.Effect` and applies it with the instance's hooks
   (``set_fault`` / ``clear_fault`` / ``set_priority_delta``), under the source name
   ``kind:name`` (``script:chk_haproxy``).

Applying is idempotent: reconciling an instance sets exactly the wanted effects and
clears the ones no longer wanted, so a reload that keeps a tracker keeps its state and
causes no priority change at all. Only trackers whose own config changed are replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from vigil.track.base import Effect, Tracker
from vigil.track.file import FileTracker
from vigil.track.interface import InterfaceTracker, link_problem
from vigil.track.process import ProcessTracker, ProcScanner
from vigil.track.script import ScriptTracker

if TYPE_CHECKING:
    from vigil.config import Config, VrrpInstanceConfig
    from vigil.net.netlink import LinkEvent

log = logging.getLogger("vigil.track")


class TrackTarget(Protocol):
    """What the manager needs of a VRRP instance (vigil.vrrp.runtime.InstanceRuntime)."""

    @property
    def name(self) -> str: ...

    def set_fault(self, source: str, reason: str) -> None: ...

    def clear_fault(self, source: str, reason: str) -> None: ...

    def set_priority_delta(self, source: str, delta: int) -> None: ...


class TrackHost(Protocol):
    """What the manager needs of the VRRP subsystem."""

    @property
    def instances(self) -> Mapping[str, Any]: ...

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None: ...

    async def link_problem(self, ifname: str) -> str | None: ...


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
    return out


def tracker_specs(config: Config) -> dict[str, Any]:
    """Each tracked thing's key and the config that defines it (equal spec = keep it)."""
    specs: dict[str, Any] = {}
    secure = config.globals.script_security
    for inst in config.vrrp_instances:
        for b in bindings_of(inst):
            if b.key in specs:
                continue
            if b.kind == "interface":
                specs[b.key] = b.name
            elif b.kind == "script":
                specs[b.key] = (config.vrrp_scripts[b.name], secure)
            elif b.kind == "file":
                specs[b.key] = config.track_files[b.name]
            else:
                specs[b.key] = config.track_processes[b.name]
    return specs


class TrackerManager:
    """Creates, feeds and stops trackers; maps their states onto instances."""

    def __init__(self, host: TrackHost) -> None:
        self.host = host
        self.trackers: dict[str, Tracker] = {}
        self.specs: dict[str, Any] = {}
        self.bindings: dict[str, list[Binding]] = {}
        self.applied: dict[str, dict[str, Effect]] = {}
        self.scanner = ProcScanner()
        self._unsubscribe: dict[str, Callable[[], None]] = {}

    # ------------------------------------------------------------ life cycle

    async def start(self, config: Config) -> None:
        """Build and start every tracked thing; states are known when this returns."""
        self.bindings = {inst.name: bindings_of(inst) for inst in config.vrrp_instances}
        await self._add(tracker_specs(config))

    async def apply(self, config: Config) -> None:
        """After a reload: replace changed trackers, keep the rest, reconcile instances."""
        new_specs = tracker_specs(config)
        gone = [k for k, spec in self.specs.items() if new_specs.get(k) != spec]
        for key in gone:
            await self._remove(key)
        self.bindings = {inst.name: bindings_of(inst) for inst in config.vrrp_instances}
        await self._add({k: s for k, s in new_specs.items() if k not in self.trackers})
        if gone:
            log.info("track: restarted or removed %s", ", ".join(gone))
        for name in list(self.applied):
            if name not in self.bindings:
                del self.applied[name]
        for name in self.bindings:
            self.reconcile(name)

    async def stop(self) -> None:
        """Stop every tracker (kills running check scripts' process groups)."""
        await asyncio.gather(
            *(self._remove(key) for key in list(self.trackers)), return_exceptions=True
        )
        await self.scanner.stop()

    async def _add(self, specs: dict[str, Any]) -> None:
        processes: list[ProcessTracker] = []
        for key, spec in specs.items():
            tracker = self._build(key, spec)
            self.trackers[key] = tracker
            self.specs[key] = spec
            self._unsubscribe[key] = tracker.subscribe(self._changed)
            if isinstance(tracker, InterfaceTracker):
                tracker.initial(await self.host.link_problem(tracker.name))
            elif isinstance(tracker, ProcessTracker):
                processes.append(tracker)
            else:
                await tracker.start()
        await self.scanner.add(processes)

    def _build(self, key: str, spec: Any) -> Tracker:
        kind = key.partition(":")[0]
        if kind == "interface":
            return InterfaceTracker(spec)
        if kind == "script":
            cfg, secure = spec
            return ScriptTracker(cfg, secure=secure)
        if kind == "file":
            return FileTracker(spec)
        return ProcessTracker(spec)

    async def _remove(self, key: str) -> None:
        tracker = self.trackers.pop(key, None)
        self.specs.pop(key, None)
        unsubscribe = self._unsubscribe.pop(key, None)
        if unsubscribe is not None:
            unsubscribe()
        if tracker is None:
            return
        if isinstance(tracker, ProcessTracker):
            await self.scanner.remove(tracker.name)
        else:
            with contextlib.suppress(Exception):
                await tracker.stop()

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
            tracker = self.trackers.get(b.key)
            if tracker is not None:
                wanted[b.key] = (b, tracker.effect(b.weight, b.reverse))
        for key in [k for k in before if k not in wanted]:
            del before[key]
            inst.set_priority_delta(key, 0)
            inst.clear_fault(key, f"{key} is no longer tracked")
        for b, effect in wanted.values():
            self._apply(inst, b, effect)

    def _apply(self, inst: TrackTarget, b: Binding, effect: Effect) -> None:
        tracker = self.trackers[b.key]
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

    # ------------------------------------------------------------ link events

    def link_event(self, ev: LinkEvent) -> None:
        """The subsystem's netlink monitor saw a link change."""
        tracker = self.trackers.get(f"interface:{ev.ifname}")
        if isinstance(tracker, InterfaceTracker):
            tracker.link_changed(link_problem(not ev.removed, ev.up, ev.carrier, ev.ifname))

    async def resync(self) -> None:
        """After a netlink overflow: ask the kernel for every tracked link again."""
        for tracker in list(self.trackers.values()):
            if isinstance(tracker, InterfaceTracker):
                tracker.link_changed(await self.host.link_problem(tracker.name))

    # ------------------------------------------------------------ API + metrics

    def view(self, name: str) -> list[dict[str, Any]]:
        """The instance's trackers for its API view: state, weight and what it applies."""
        applied = self.applied.get(name, {})
        out = []
        for b in self.bindings.get(name, []):
            tracker = self.trackers.get(b.key)
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

    def all_views(self) -> list[dict[str, Any]]:
        return [t.view() for t in self.trackers.values()]

    def metrics(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "vigil_tracker_up",
            "1 while the tracked thing is OK (link up, check passing, quorum met)",
            labels=["tracker", "kind"],
        )
        for tracker in self.trackers.values():
            up.add_metric([tracker.name, tracker.kind], 1.0 if tracker.ok else 0.0)
        yield up
