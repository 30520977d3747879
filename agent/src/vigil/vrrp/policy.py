"""The pure decisions of VRRP's runtime control: no I/O, no clock of its own.

How long a handover may take, when a released master may drop its VIPs (make-before-
break), what priority a takeover needs, how durations are written. Driven by a fake clock
in ``agent/tests/test_control.py``; :mod:`vigil.vrrp.control` does the orchestration.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from vigil.vrrp.machine import PRIORITY_MAX_BACKUP, VrrpState

__all__ = [
    "HANDOVER_LINGER",
    "MAX_DURATION",
    "HandoverWatch",
    "Outcome",
    "default_handover_timeout",
    "parse_duration",
    "takeover_priority",
]

# After the new master's first advert, keep the VIPs this long so its GARP/NA reach the
# clients before we stop answering (make-before-break).
HANDOVER_LINGER = 0.2
MAX_DURATION = 366 * 86400.0


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """``90``, ``90s``, ``1.5m``, ``2h``, ``500ms`` -> seconds (> 0, at most a year)."""
    if isinstance(text, bool):
        raise ValueError(f"{what}: must be a duration like 30s, 5m or 1h, got {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = _DURATION.match(text)
        if m is None:
            raise ValueError(
                f"{what}: {text!r} is not a duration; use seconds or a number with "
                "ms, s, m, h or d (e.g. 30s, 5m, 1h)"
            )
        value = float(m.group(1)) * _UNIT[m.group(2)]
    if not math.isfinite(value) or value <= 0 or value > MAX_DURATION:
        raise ValueError(f"{what}: must be more than 0 and at most 366 days, got {text!r}")
    return value


def default_handover_timeout(interval: float) -> float:
    """Long enough for any peer to take over after our priority 0 (its skew time is
    under one advert interval) plus its first advert and the linger."""
    return round(2 * interval + 1.0 + HANDOVER_LINGER, 3)


class Outcome(enum.StrEnum):
    """Where a make-before-break release stands (see :class:`HandoverWatch`)."""

    WAITING = "waiting"  # no new master yet
    LINGER = "linger"  # new master seen; keeping the VIPs a moment longer
    DONE = "done"  # remove the VIPs now: the new master has them
    RETOOK = "retook"  # we became MASTER again ourselves (no peer: our own timer)
    LEFT = "left"  # we went to FAULT/STOPPED meanwhile
    TIMEOUT = "timeout"  # nobody took over in time: roll back


@dataclass
class HandoverWatch:
    """Decides, from observed state only, when a released master may drop its VIPs.

    Pure: the caller feeds it what the machine shows (state, the master it believes in)
    at times of its choosing. A new master counts as seen when, in BACKUP, the machine
    names a master with a priority above 0 that is not ourselves.
    """

    started: float
    timeout: float
    own_address: str | None = None
    linger: float = HANDOVER_LINGER
    seen_at: float | None = None
    new_master: str | None = None
    new_priority: int | None = None

    def observe(
        self, now: float, state: str, master_address: str | None, master_priority: int | None
    ) -> Outcome:
        if state == VrrpState.MASTER:
            return Outcome.RETOOK
        if state != VrrpState.BACKUP:
            return Outcome.LEFT
        if (
            self.seen_at is None
            and master_address is not None
            and master_address != self.own_address
            and master_priority
        ):
            self.seen_at = now
            self.new_master, self.new_priority = master_address, master_priority
        if self.seen_at is not None:
            return Outcome.DONE if now >= self.seen_at + self.linger else Outcome.LINGER
        if now >= self.started + self.timeout:
            return Outcome.TIMEOUT
        return Outcome.WAITING

    def next_deadline(self) -> float:
        """When the answer of :meth:`observe` changes by itself, without a new observation:
        the end of the linger once a new master was seen, else the timeout."""
        if self.seen_at is not None:
            return self.seen_at + self.linger
        return self.started + self.timeout


def takeover_priority(wanted: int, master_priority: int | None) -> int | None:
    """The override a takeover needs: None if ``wanted`` already outranks the master.

    Raises ValueError when no backup priority can outrank it (254 or the owner's 255).
    """
    if master_priority is None or wanted > master_priority:
        return None
    if master_priority >= PRIORITY_MAX_BACKUP:
        raise ValueError(
            f"the master advertises priority {master_priority}; a backup can advertise at "
            f"most {PRIORITY_MAX_BACKUP} (255 is the address owner's), so it cannot be "
            "outranked: lower the master's priority or hand over from the master instead"
        )
    return master_priority + 1
