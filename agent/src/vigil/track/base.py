"""What every tracker is, and the weight arithmetic they share.

A tracker watches one thing (a link, a check script, a file, a set of processes, later a
BFD session) and says whether it is OK or FAILED. It knows nothing about VRRP: the
:class:`~vigil.track.manager.TrackerManager` turns a tracker's state into each tracking
instance's FAULT demand or priority contribution, using the instance's own weight for it.
Keeping that split means a new kind of tracker (BFD) only has to implement
:class:`Tracker` and call :meth:`Tracker._set_state`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

log = logging.getLogger("vigil.track")

# Largest priority adjustment a tracker may make (keepalived's bound: 1 + 253 = 254).
MAX_DELTA = 253


class TrackerState(enum.StrEnum):
    """OK: the tracked thing works (link up, script passing); FAILED: it does not."""

    OK = "OK"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Effect:
    """What one tracker does to one instance: demand FAULT, or move the priority."""

    fault: bool = False
    delta: int = 0

    def describe(self) -> str:
        if self.fault:
            return "instance held in FAULT"
        if self.delta:
            return f"priority {self.delta:+d}"
        return "no priority change"


def weight_effect(ok: bool, weight: int, reverse: bool = False) -> Effect:
    """keepalived's weight rules (docs/configuration.md, "track").

    weight 0: FAULT while failed (while OK with ``reverse``). Otherwise a negative weight
    counts while failed and a positive one while OK; ``reverse`` swaps the two.
    """
    if weight == 0:
        return Effect(fault=ok == reverse)
    active = (ok == (weight > 0)) != reverse
    return Effect(delta=weight if active else 0)


def file_effect(value: int, weight: int, reverse: bool = False) -> Effect:
    """keepalived's track_file rule: the file's integer times the weight.

    With weight 0 a non-zero value means FAULT (a zero one with ``reverse``). Otherwise
    ``value * weight`` (negated with ``reverse``) is added to the priority; a result
    below -253 means FAULT and one above 253 is cut to 253.
    """
    if weight == 0:
        return Effect(fault=(value != 0) != reverse)
    delta = value * weight * (-1 if reverse else 1)
    if delta < -MAX_DELTA:
        return Effect(fault=True)
    return Effect(delta=min(delta, MAX_DELTA))


class RiseFall:
    """Counts results in a row: ``rise`` successes make it OK, ``fall`` failures FAILED.

    Pure (no clock): the script tracker feeds it one result per run.
    """

    def __init__(self, rise: int, fall: int, *, initially_ok: bool = True) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be at least 1 (got {rise}, {fall})")
        self.rise = rise
        self.fall = fall
        self.ok = initially_ok
        self.successes = 0  # in a row
        self.failures = 0  # in a row

    def record(self, success: bool) -> bool:
        """Add one result; True when the state flipped."""
        if success:
            self.successes += 1
            self.failures = 0
            if not self.ok and self.successes >= self.rise:
                self.ok = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.ok and self.failures >= self.fall:
                self.ok = False
                return True
        return False


Listener = Callable[["Tracker"], None]


class Tracker:
    """One watched thing with a state and subscribers (the interface BFD will plug into).

    A base class rather than an ABC: every hook has a sensible default (an interface
    tracker is fed from outside and needs no start/stop of its own).

    Subclasses call :meth:`_set_state` (or :meth:`_notify` for a change that is not a
    state flip, such as a track file's value) from the event loop; subscribers run
    synchronously, in order, and one that raises is logged and skipped.
    """

    kind: ClassVar[str] = "tracker"

    def __init__(self, name: str, state: TrackerState = TrackerState.OK) -> None:
        self.name = name
        self.state = state
        self.reason = "initial state"
        self.changes = 0
        self._listeners: list[Listener] = []

    @property
    def key(self) -> str:
        """Unique among all trackers, and the fault/priority source name: ``script:chk``."""
        return f"{self.kind}:{self.name}"

    @property
    def ok(self) -> bool:
        return self.state is TrackerState.OK

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(tracker)`` after every change; returns the unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def effect(self, weight: int, reverse: bool = False) -> Effect:
        """What this tracker's current state does to an instance tracking it so."""
        return weight_effect(self.ok, weight, reverse)

    async def start(self) -> None:
        """Begin watching (the state must be known, or initial, when this returns)."""

    async def stop(self) -> None:
        """Stop watching and release everything (processes, tasks)."""

    def details(self) -> dict[str, Any]:
        """Kind-specific facts for the API (counters, last result, value)."""
        return {}

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": str(self.state),
            "reason": self.reason,
            **self.details(),
        }

    def _set_state(self, state: TrackerState, reason: str) -> None:
        self.reason = reason
        if state is self.state:
            return
        self.state = state
        self._notify()

    def _notify(self) -> None:
        self.changes += 1
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:
                log.exception("tracker %s: listener %r failed", self.key, callback)
