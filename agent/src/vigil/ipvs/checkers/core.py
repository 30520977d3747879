"""Real-server health checking, sans-I/O: when to check, and what a result means.

Two pure parts, driven by a fake clock in ``agent/tests/test_ipvs_checkers_core.py``:

* :class:`CheckMachine`: one health checker of one real server (a TCP_CHECK, a
  HTTP_GET, ...). It decides when the next run is due and turns each run's
  :class:`CheckResult` into UP / FAILING / DOWN.
* :class:`ServerHealth`: one real server and all its checkers. It folds their states and
  dynamic weights into what IPVS should hold for the server (:class:`ServerChange`).

Neither reads a clock, touches a socket or logs: every input carries ``now`` (monotonic
seconds) and returns a list of actions; :meth:`CheckMachine.next_deadline` says when to
call :meth:`CheckMachine.timer_expired`, which answers :class:`RunCheck`.

Semantics, as keepalived 2.2.7 implements them (``check_tcp.c`` ``tcp_epilog``,
``check_data.c``, ``check_misc.c``; the same rule in every checker):

* A checker starts UP, or DOWN with ``alpha``. Its first run is ``warmup x U[0, 1)``
  seconds after start (keepalived's random start delay; ``warmup`` defaults to
  ``delay_loop``).
* The first run decides at once: a failure takes a non-alpha checker DOWN without any
  retry (keepalived starts each checker with its retry counter exhausted).
* After that an UP checker goes DOWN on its ``retry + 1``-th consecutive failure. After
  the first failure it is FAILING (still counted as up) and the retries run
  ``delay_before_retry`` apart; a success in between makes it UP again and resets the
  count.
* A DOWN checker is checked every ``delay_loop`` without retries, and one success brings
  it UP.
* Runs are ``delay_loop`` apart, counted from the end of the previous run (keepalived
  re-arms its timer when a check completes); MISC checks count from the start of the
  previous run, as keepalived does (:attr:`Anchor.START`).
* Dynamic weight: a MISC_CHECK with ``misc_dynamic`` that exits 2..255 asks for real
  server weight ``status - 2``; its contribution is that minus the configured weight, so
  with one such checker the server's weight becomes exactly ``status - 2``. A FILE_CHECK
  contributes an offset (file value x weight). A checker's contribution is dropped when
  it goes DOWN; exit status 0 sets it back to 0.
* A real server is alive while none of its checkers is DOWN. Its IPVS weight is the
  configured weight plus the contributions, clamped to 0..2**31-1. A dead server leaves
  IPVS, or stays with weight 0 under ``inhibit_on_failure``.

Differences from keepalived, on purpose: HTTP checks all of a checker's URLs in one run
(keepalived checks one URL per ``delay_loop``, so a check with N URLs notices a broken one
up to N loops later); a DOWN HTTP checker is re-checked every ``delay_loop`` (keepalived:
``max(delay_loop, delay_before_retry)``). ``omega`` and the quorum belong to the virtual
server, not here.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: IPVS weights are a signed 32-bit int in the kernel; negative ones are refused.
WEIGHT_MAX = 2**31 - 1

# asyncio may run a timer callback up to one clock resolution early.
_TIMER_SLACK = 1e-6


class CheckState(enum.StrEnum):
    """One checker's view of its real server."""

    INIT = "INIT"  # built, not started
    UP = "UP"
    FAILING = "FAILING"  # up, but the last run(s) failed and retries are pending
    DOWN = "DOWN"
    STOPPED = "STOPPED"


class Trigger(enum.StrEnum):
    START = "start"
    SUCCESS = "success"
    FAILURE = "failure"
    STOP = "stop"


class Anchor(enum.StrEnum):
    """Where the ``delay_loop`` to the next run is counted from."""

    END = "end"  # the end of the previous run (keepalived's network checkers)
    START = "start"  # the start of the previous run (keepalived's MISC_CHECK)


_ALIVE = frozenset({CheckState.UP, CheckState.FAILING})

TRANSITIONS: Mapping[tuple[CheckState, CheckState], frozenset[Trigger]] = {
    (CheckState.INIT, CheckState.UP): frozenset({Trigger.START}),
    (CheckState.INIT, CheckState.DOWN): frozenset({Trigger.START}),
    (CheckState.INIT, CheckState.STOPPED): frozenset({Trigger.STOP}),
    (CheckState.UP, CheckState.FAILING): frozenset({Trigger.FAILURE}),
    (CheckState.UP, CheckState.DOWN): frozenset({Trigger.FAILURE}),
    (CheckState.UP, CheckState.STOPPED): frozenset({Trigger.STOP}),
    (CheckState.FAILING, CheckState.UP): frozenset({Trigger.SUCCESS}),
    (CheckState.FAILING, CheckState.DOWN): frozenset({Trigger.FAILURE}),
    (CheckState.FAILING, CheckState.STOPPED): frozenset({Trigger.STOP}),
    (CheckState.DOWN, CheckState.UP): frozenset({Trigger.SUCCESS}),
    (CheckState.DOWN, CheckState.STOPPED): frozenset({Trigger.STOP}),
    (CheckState.STOPPED, CheckState.UP): frozenset({Trigger.START}),
    (CheckState.STOPPED, CheckState.DOWN): frozenset({Trigger.START}),
}


def is_allowed(old: CheckState, new: CheckState, trigger: Trigger) -> bool:
    return trigger in TRANSITIONS.get((old, new), frozenset())


class IllegalTransition(RuntimeError):
    """A transition or input the machine does not allow here: a bug in the caller."""


class TimingError(ValueError):
    """Invalid :class:`CheckTiming`; the message names the field and the fix."""


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How one run of a check ended.

    ``weight``: the real server weight a dynamic check asks for (MISC_CHECK
    ``misc_dynamic``: exit status - 2). ``weight_offset``: what a FILE_CHECK adds to the
    configured weight. ``None``: the check says nothing about the weight.
    """

    ok: bool
    latency: float = 0.0
    error: str | None = None
    weight: int | None = None
    weight_offset: int | None = None

    def describe(self) -> str:
        if self.ok:
            extra = "" if self.weight is None else f", weight {self.weight}"
            if self.weight_offset is not None:
                extra += f", weight offset {self.weight_offset:+d}"
            return f"ok in {self.latency * 1000:.1f} ms{extra}"
        return self.error or "failed"


@dataclass(frozen=True, slots=True)
class CheckTiming:
    """When a checker runs; resolved from a checker's settings (no ``None`` left here)."""

    delay_loop: float
    retry: int
    delay_before_retry: float
    warmup: float
    alpha: bool = False
    anchor: Anchor = Anchor.END

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("delay_loop", "delay_before_retry", "warmup"):
            value = getattr(self, name)
            positive = name != "warmup"
            ok = isinstance(value, int | float) and math.isfinite(value)
            ok = ok and (value > 0 if positive else value >= 0)
            if not ok:
                want = "> 0" if positive else ">= 0"
                problems.append(f"{name}: must be seconds {want}, got {value!r}")
        if not isinstance(self.retry, int) or isinstance(self.retry, bool) or self.retry < 0:
            problems.append(f"retry: must be an integer >= 0, got {self.retry!r}")
        if problems:
            raise TimingError("; ".join(f"CheckTiming.{p}" for p in problems))


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class RunCheck:
    """Run the check now. ``attempt`` counts runs since the last success (1 = regular)."""

    check: str
    attempt: int
    retry: bool


@dataclass(frozen=True, slots=True)
class Transition:
    """A checker's state change; ``str()`` is its log line."""

    check: str
    old: CheckState
    new: CheckState
    trigger: Trigger
    reason: str
    time: float

    def __str__(self) -> str:
        return f"({self.check}) {self.old} -> {self.new}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "time": self.time,
            "from": str(self.old),
            "to": str(self.new),
            "trigger": str(self.trigger),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ServerChange:
    """What IPVS should now hold for a real server.

    ``present``: the destination should exist (alive, or dead with
    ``inhibit_on_failure``); ``ipvs_weight``: its weight there (0 while dead and
    inhibited). ``weight`` is the server's effective weight whatever its state.
    """

    server: str
    alive: bool
    weight: int
    present: bool
    ipvs_weight: int
    was_alive: bool | None  # None: the first report, at start
    was_weight: int | None
    reason: str
    time: float

    def __str__(self) -> str:
        state = "alive" if self.alive else "dead"
        if self.was_alive is None:
            what = f"starts {state}, weight {self.weight}"
        elif self.was_alive != self.alive:
            what = f"{'dead -> alive' if self.alive else 'alive -> dead'}, weight {self.weight}"
        else:
            what = f"weight {self.was_weight} -> {self.weight}"
        where = f"in IPVS with weight {self.ipvs_weight}" if self.present else "not in IPVS"
        return f"[{self.server}] {what} ({where}): {self.reason}"


Action = RunCheck | Transition


# ---------------------------------------------------------------------------- machine


class _Phase(enum.Enum):
    IDLE = "idle"  # not started or stopped: no timer
    WAITING = "waiting"  # a run is due at the deadline
    RUNNING = "running"  # a run was handed out; waiting for its result


def _secs(value: float) -> str:
    return f"{value:.2f}s"


@dataclass(slots=True)
class CheckCounters:
    runs: int = 0
    successes: int = 0
    failures: int = 0
    went_down: int = 0
    went_up: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "successes": self.successes,
            "failures": self.failures,
            "went_down": self.went_down,
            "went_up": self.went_up,
        }


class CheckMachine:
    """One checker of one real server. See the module docstring for the rules."""

    # a thousand real servers are a thousand of these: no per-instance __dict__
    __slots__ = (
        "_deadline",
        "_dynamic_weight",
        "_failures",
        "_has_run",
        "_last",
        "_last_transition",
        "_name",
        "_phase",
        "_retrying",
        "_run_started",
        "_state",
        "_timing",
        "_weight_offset",
        "counters",
    )

    def __init__(self, name: str, timing: CheckTiming) -> None:
        self._name = name
        self._timing = timing
        self._state = CheckState.INIT
        self._phase = _Phase.IDLE
        self._deadline: float | None = None
        self._has_run = False
        self._failures = 0  # consecutive failures
        self._run_started: float | None = None
        self._retrying = False
        self._dynamic_weight: int | None = None
        self._weight_offset = 0
        self._last: CheckResult | None = None
        self._last_transition: Transition | None = None
        self.counters = CheckCounters()

    # ------------------------------------------------------------------ read side

    @property
    def name(self) -> str:
        return self._name

    @property
    def timing(self) -> CheckTiming:
        return self._timing

    @property
    def state(self) -> CheckState:
        return self._state

    @property
    def alive(self) -> bool:
        """Counts as up for its real server (UP or FAILING)."""
        return self._state in _ALIVE

    @property
    def running(self) -> bool:
        return self._phase is _Phase.RUNNING

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def last_result(self) -> CheckResult | None:
        return self._last

    @property
    def last_transition(self) -> Transition | None:
        return self._last_transition

    def weight_contribution(self, base_weight: int) -> int:
        """What this checker adds to the configured weight (0 unless dynamic)."""
        if not self.alive:
            return 0
        if self._dynamic_weight is not None:
            return self._dynamic_weight - base_weight + self._weight_offset
        return self._weight_offset

    def next_deadline(self) -> float | None:
        """When :meth:`timer_expired` is due (``None`` while running or idle)."""
        return self._deadline if self._phase is _Phase.WAITING else None

    def to_dict(self) -> dict[str, Any]:
        last = self._last
        lt = self._last_transition
        return {
            "name": self._name,
            "state": str(self._state),
            "running": self.running,
            "next_run": self.next_deadline(),
            "consecutive_failures": self._failures,
            "retry": self._timing.retry,
            "delay_loop": self._timing.delay_loop,
            "dynamic_weight": self._dynamic_weight,
            "weight_offset": self._weight_offset,
            "last_result": None if last is None else last.describe(),
            "last_latency": None if last is None else round(last.latency, 6),
            "last_transition": None if lt is None else lt.to_dict(),
            "counters": self.counters.to_dict(),
        }

    # ------------------------------------------------------------------ inputs

    def start(self, now: float, jitter: float, known: CheckResult | None = None) -> list[Action]:
        """Begin checking: UP (DOWN with alpha), first run at ``now + warmup * jitter``.

        ``jitter`` is a number in [0, 1) the caller draws (the machine has no RNG).
        ``known``: a result the caller already has (a FILE_CHECK reads its file before the
        server is first reported), which decides the initial state and counts as the
        first run; the next run is then ``delay_loop`` later.
        """
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter: must be in [0, 1), got {jitter!r}")
        if self._state not in (CheckState.INIT, CheckState.STOPPED):
            raise IllegalTransition(f"({self._name}) start in {self._state}: already started")
        self._has_run = False
        self._failures = 0
        self._retrying = False
        self._dynamic_weight = None
        self._weight_offset = 0
        if known is not None:
            self.counters.runs += 1
            self._last = known
            self._has_run = True
            if known.ok:
                self._absorb_weight(known)
                self.counters.successes += 1
                target, why = CheckState.UP, f"first check: {known.describe()}"
            else:
                self.counters.failures += 1
                self._failures = 1
                target, why = CheckState.DOWN, f"first check failed: {known.describe()}"
            self._schedule(now + self._timing.delay_loop)
            return [self._transition(now, target, Trigger.START, why)]
        if self._timing.alpha:
            target, why = CheckState.DOWN, "started down (alpha) until a check succeeds"
        else:
            target, why = CheckState.UP, "started up until a check fails"
        self._schedule(now + self._timing.warmup * jitter)
        return [self._transition(now, target, Trigger.START, why)]

    def timer_expired(self, now: float) -> list[Action]:
        """The deadline passed: hand out one run. Early or duplicate calls do nothing."""
        if not self.take_run(now):
            return []
        return [RunCheck(self._name, self._failures + 1, self._retrying)]

    def take_run(self, now: float) -> bool:
        """:meth:`timer_expired` without building its action (the engine's hot path):
        True if a run is handed out now."""
        if self._phase is not _Phase.WAITING or self._deadline is None:
            return False
        if now + _TIMER_SLACK < self._deadline:
            return False
        self._phase = _Phase.RUNNING
        self._run_started = now
        self._deadline = None
        return True

    def expedite(self, now: float) -> bool:
        """Bring a waiting run forward to ``now`` (an event-driven checker's input
        changed); False while a run is in flight or the checker is stopped."""
        if self._phase is not _Phase.WAITING:
            return False
        if self._deadline is None or self._deadline > now:
            self._deadline = now
        return True

    def result(self, now: float, result: CheckResult) -> list[Action]:
        """The run handed out by :meth:`timer_expired` ended with ``result``."""
        if self._phase is not _Phase.RUNNING:
            if self._state is CheckState.STOPPED:
                return []  # a run that finished after stop(): nothing to do
            raise IllegalTransition(f"({self._name}) result without a run in {self._state}")
        started = self._run_started if self._run_started is not None else now
        self._run_started = None
        self.counters.runs += 1
        self._last = result
        first = not self._has_run
        self._has_run = True
        anchor = started if self._timing.anchor is Anchor.START else now
        if result.ok:
            return self._on_success(now, anchor, result, first)
        return self._on_failure(now, anchor, result, first)

    def stop(self, now: float, reason: str = "stopped") -> list[Action]:
        """Stop checking; a run in flight may still report, and is then ignored."""
        if self._state is CheckState.STOPPED:
            return []
        actions: list[Action] = [self._transition(now, CheckState.STOPPED, Trigger.STOP, reason)]
        self._phase = _Phase.IDLE
        self._deadline = None
        self._run_started = None
        return actions

    # ------------------------------------------------------------------ rules

    def _on_success(
        self, now: float, anchor: float, result: CheckResult, first: bool
    ) -> list[Action]:
        self.counters.successes += 1
        self._absorb_weight(result)
        failures, self._failures = self._failures, 0
        self._retrying = False
        self._schedule(anchor + self._timing.delay_loop)
        if self._state is CheckState.DOWN:
            self.counters.went_up += 1
            why = f"check succeeded ({result.describe()})"
            if first:
                why = f"first check succeeded ({result.describe()})"
            return [self._transition(now, CheckState.UP, Trigger.SUCCESS, why)]
        if self._state is CheckState.FAILING:
            why = f"check succeeded after {failures} failure(s) ({result.describe()})"
            return [self._transition(now, CheckState.UP, Trigger.SUCCESS, why)]
        return []

    def _on_failure(
        self, now: float, anchor: float, result: CheckResult, first: bool
    ) -> list[Action]:
        self.counters.failures += 1
        self._failures += 1
        error = result.describe()
        if self._state is CheckState.DOWN:
            self._retrying = False
            self._schedule(anchor + self._timing.delay_loop)
            return []
        retry = self._timing.retry
        if first or self._failures > retry:
            self._retrying = False
            self._dynamic_weight = None
            self._weight_offset = 0
            self.counters.went_down += 1
            self._schedule(anchor + self._timing.delay_loop)
            if first:
                why = f"first check failed: {error}"
            elif retry:
                why = f"{self._failures} failures in a row (retry {retry}), last: {error}"
            else:
                why = f"check failed (retry 0): {error}"
            return [self._transition(now, CheckState.DOWN, Trigger.FAILURE, why)]
        self._retrying = True
        delay = self._timing.delay_before_retry
        self._schedule(anchor + delay)
        why = f"check failed: {error}; retry {self._failures} of {retry} in {_secs(delay)}"
        if self._state is CheckState.UP:
            return [self._transition(now, CheckState.FAILING, Trigger.FAILURE, why)]
        return []

    def _absorb_weight(self, result: CheckResult) -> None:
        if result.weight is not None:
            self._dynamic_weight = result.weight
        elif result.weight_offset is None:
            # exit status 0 of a dynamic MISC check: back to the configured weight
            self._dynamic_weight = None
        if result.weight_offset is not None:
            self._weight_offset = result.weight_offset

    def _schedule(self, deadline: float) -> None:
        self._phase = _Phase.WAITING
        self._deadline = deadline

    def _transition(self, now: float, new: CheckState, trigger: Trigger, reason: str) -> Transition:
        if not is_allowed(self._state, new, trigger):
            raise IllegalTransition(
                f"({self._name}) {self._state} -> {new} on {trigger} is not allowed"
            )
        record = Transition(self._name, self._state, new, trigger, reason, now)
        self._state = new
        self._last_transition = record
        return record


# ---------------------------------------------------------------------------- server


@dataclass(slots=True)
class _Reported:
    alive: bool | None = None
    weight: int | None = None


def clamp_weight(weight: int) -> int:
    return max(0, min(WEIGHT_MAX, weight))


@dataclass(slots=True)
class ServerHealth:
    """One real server: its checkers folded into alive/dead and an effective weight."""

    name: str
    base_weight: int
    inhibit_on_failure: bool
    checks: Sequence[CheckMachine]
    _reported: _Reported = field(default_factory=_Reported)

    @property
    def alive(self) -> bool:
        return all(c.alive for c in self.checks)

    @property
    def weight(self) -> int:
        total = self.base_weight + sum(c.weight_contribution(self.base_weight) for c in self.checks)
        return clamp_weight(total)

    @property
    def present(self) -> bool:
        return self.alive or self.inhibit_on_failure

    @property
    def ipvs_weight(self) -> int:
        return self.weight if self.alive else 0

    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.alive]

    def evaluate(self, now: float, reason: str) -> ServerChange | None:
        """A :class:`ServerChange` if alive or weight changed since the last report."""
        alive, weight = self.alive, self.weight
        rep = self._reported
        if rep.alive == alive and rep.weight == weight:
            return None
        change = ServerChange(
            server=self.name,
            alive=alive,
            weight=weight,
            present=alive or self.inhibit_on_failure,
            ipvs_weight=weight if alive else 0,
            was_alive=rep.alive,
            was_weight=rep.weight,
            reason=reason,
            time=now,
        )
        rep.alive, rep.weight = alive, weight
        return change

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alive": self.alive,
            "weight": self.weight,
            "base_weight": self.base_weight,
            "present": self.present,
            "ipvs_weight": self.ipvs_weight,
            "inhibit_on_failure": self.inhibit_on_failure,
            "failed_checks": self.failed_checks(),
            "checks": [c.to_dict() for c in self.checks],
        }


__all__ = [
    "TRANSITIONS",
    "WEIGHT_MAX",
    "Action",
    "Anchor",
    "CheckCounters",
    "CheckMachine",
    "CheckResult",
    "CheckState",
    "CheckTiming",
    "IllegalTransition",
    "RunCheck",
    "ServerChange",
    "ServerHealth",
    "TimingError",
    "Transition",
    "Trigger",
    "clamp_weight",
    "is_allowed",
]
