"""Tracked interfaces (``track.interfaces``): OK while the link is up and has carrier.

The VRRP subsystem already runs one netlink monitor; it hands every link event to the
tracker manager, which feeds the matching :class:`InterfaceTracker`. No second monitor,
no polling.
"""

from __future__ import annotations

from typing import Any

from vigil.track.base import Tracker, TrackerState


def link_problem(exists: bool, up: bool, carrier: bool, name: str) -> str | None:
    """Why the link is not usable, or None (the wording the VRRP FAULT reasons use)."""
    if not exists:
        return f"interface {name} does not exist"
    if not up:
        return f"interface {name} is administratively down"
    if not carrier:
        return f"interface {name} has no carrier"
    return None


class InterfaceTracker(Tracker):
    """One interface, shared by every instance that tracks it."""

    kind = "interface"

    def __init__(self, name: str) -> None:
        super().__init__(name)

    def link_changed(self, problem: str | None) -> None:
        """Feed the link's state: ``problem`` None means up with carrier."""
        if problem is None:
            self._set_state(TrackerState.OK, f"interface {self.name} is up")
        else:
            self._set_state(TrackerState.FAILED, problem)

    def initial(self, problem: str | None) -> None:
        """The state at start-up, before any instance attaches (no notification)."""
        self.state = TrackerState.OK if problem is None else TrackerState.FAILED
        self.reason = problem or f"interface {self.name} is up"

    def details(self) -> dict[str, Any]:
        return {}
