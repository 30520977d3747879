"""A virtual server's quorum, with hysteresis: pure, no clock, no I/O.

The quorum is the total weight of the live real servers a virtual server needs to serve
without loss of quality (keepalived's ``quorum``, default 1). ``hysteresis`` damps flaps:
a virtual server that has quorum loses it only when the live weight drops below
``quorum - hysteresis``, and one that lost it regains it only at ``quorum + hysteresis``.
A live weight of 0 always loses quorum (unless ``quorum`` is 0: never lost).

Every virtual server starts UP (nominal); the first evaluation, when the checkers report
their first results, may take it DOWN (with ``alpha`` every real server starts dead, so it
does, and the sorry server serves until the first checks pass). Each change is a
:class:`QuorumChange` whose ``str()`` is the log line::

    (web) quorum UP -> DOWN: live weight 1 < 2 (quorum 3 - hysteresis 1)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["TRANSITIONS", "IllegalTransition", "Quorum", "QuorumChange", "QuorumState"]


class QuorumState(enum.StrEnum):
    UP = "UP"
    DOWN = "DOWN"


class Trigger(enum.StrEnum):
    LOST = "lost"  # live weight below the down threshold
    GAINED = "gained"  # live weight at or above the up threshold


TRANSITIONS: Mapping[tuple[QuorumState, QuorumState], Trigger] = {
    (QuorumState.UP, QuorumState.DOWN): Trigger.LOST,
    (QuorumState.DOWN, QuorumState.UP): Trigger.GAINED,
}


class IllegalTransition(RuntimeError):
    """A transition the table does not allow (a bug)."""


@dataclass(frozen=True)
class QuorumChange:
    name: str
    old: QuorumState
    new: QuorumState
    weight: int
    reason: str

    @property
    def up(self) -> bool:
        return self.new is QuorumState.UP

    def __str__(self) -> str:
        return f"({self.name}) quorum {self.old} -> {self.new}: {self.reason}"


class Quorum:
    """The quorum state of one virtual server; feed it the live weight after each change."""

    def __init__(self, name: str, quorum: int, hysteresis: int = 0) -> None:
        if quorum < 0 or hysteresis < 0:
            raise ValueError(f"quorum {quorum} / hysteresis {hysteresis}: must be >= 0")
        self.name = name
        self.quorum = quorum
        self.hysteresis = hysteresis
        self.state = QuorumState.UP
        self.weight: int | None = None  # the last live weight seen
        self.last: QuorumChange | None = None

    @property
    def up(self) -> bool:
        return self.state is QuorumState.UP

    @property
    def down_below(self) -> int:
        """Quorum is lost when the live weight drops below this."""
        return self.quorum - self.hysteresis

    @property
    def up_at(self) -> int:
        """Quorum is regained when the live weight reaches this."""
        return self.quorum + self.hysteresis

    def configure(self, quorum: int, hysteresis: int) -> QuorumChange | None:
        """New settings (a reload): re-evaluate the last weight against them."""
        self.quorum, self.hysteresis = quorum, hysteresis
        return None if self.weight is None else self.update(self.weight)

    def update(self, weight: int) -> QuorumChange | None:
        """The live weight now; a :class:`QuorumChange` if the state changes."""
        self.weight = weight
        if self.quorum <= 0:
            return None if self.up else self._go(QuorumState.UP, f"quorum 0: live weight {weight}")
        if self.up and (weight == 0 or weight < self.down_below):
            return self._go(QuorumState.DOWN, self._why(weight, "<", self.down_below, "-"))
        if not self.up and weight >= self.up_at and weight > 0:
            return self._go(QuorumState.UP, self._why(weight, ">=", self.up_at, "+"))
        return None

    def _why(self, weight: int, op: str, bound: int, sign: str) -> str:
        if self.hysteresis:
            return (
                f"live weight {weight} {op} {bound} "
                f"(quorum {self.quorum} {sign} hysteresis {self.hysteresis})"
            )
        return f"live weight {weight} {op} quorum {self.quorum}"

    def _go(self, new: QuorumState, reason: str) -> QuorumChange:
        if (self.state, new) not in TRANSITIONS:
            raise IllegalTransition(f"({self.name}) quorum {self.state} -> {new}")
        change = QuorumChange(self.name, self.state, new, self.weight or 0, reason)
        self.state = new
        self.last = change
        return change

    def to_dict(self) -> dict[str, object]:
        return {
            "state": str(self.state),
            "quorum": self.quorum,
            "hysteresis": self.hysteresis,
            "live_weight": self.weight,
            "lost_below": self.down_below,
            "regained_at": self.up_at,
        }
