"""Each VRRP instance's state as a tracker other subsystems can watch: ``vrrp:<instance>``.

Subsystems never import each other; they meet in the tracker registry. IPVS follows a
VRRP instance to switch the connection sync daemon between master and backup on every
transition, and to run its checks only while this node holds the VIP (``ha_suspend``).
So every running instance publishes a :class:`VrrpStateTracker`: OK while MASTER, FAILED
in any other state, with the VRRP state itself in ``details()["vrrp_state"]``. It is
published at the instance's first transition (INIT -> BACKUP/MASTER), updated on every
transition (watchers see ``changed`` even between two non-master states, e.g. BACKUP ->
FAULT) and withdrawn when the instance stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vigil.track.base import Tracker, TrackerState

if TYPE_CHECKING:
    from vigil.track.registry import TrackerRegistry
    from vigil.vrrp.instance import InstanceRuntime
    from vigil.vrrp.machine import Transition
    from vigil.vrrp.runtime import VrrpSubsystem

__all__ = ["StatePublisher", "VrrpStateTracker"]

KIND = "vrrp"


class VrrpStateTracker(Tracker):
    """OK while the instance is MASTER."""

    kind = KIND

    def __init__(self, name: str) -> None:
        super().__init__(name, TrackerState.FAILED)
        self.vrrp_state = "INIT"
        self.reason = "not started"

    def update(self, vrrp_state: str, reason: str) -> None:
        changed = vrrp_state != self.vrrp_state
        self.vrrp_state = vrrp_state
        state = TrackerState.OK if vrrp_state == "MASTER" else TrackerState.FAILED
        flipped = state is not self.state
        self._set_state(state, f"{vrrp_state}: {reason}")
        if changed and not flipped:
            self._notify()  # same OK/FAILED, but watchers may care (BACKUP -> FAULT)

    def details(self) -> dict[str, Any]:
        return {"vrrp_state": self.vrrp_state}


class StatePublisher:
    """Publishes one :class:`VrrpStateTracker` per running instance (a transition hook)."""

    def __init__(self, sub: VrrpSubsystem, registry: TrackerRegistry) -> None:
        self.registry = registry
        self.trackers: dict[str, VrrpStateTracker] = {}
        sub.transition_hooks.append(self.on_transition)

    def on_transition(self, inst: InstanceRuntime, tr: Transition) -> None:
        name = inst.name
        new = str(tr.new)
        if new == "STOPPED":
            if self.trackers.pop(name, None) is not None:
                self.registry.withdraw(f"{KIND}:{name}")
            return
        tracker = self.trackers.get(name)
        if tracker is None:
            tracker = self.trackers[name] = VrrpStateTracker(name)
            tracker.update(new, tr.reason)
            self.registry.publish(tracker)
        else:
            tracker.update(new, tr.reason)

    def close(self) -> None:
        for name in list(self.trackers):
            self.registry.withdraw(f"{KIND}:{name}")
        self.trackers.clear()
