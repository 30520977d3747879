"""Tracked processes (keepalived ``vrrp_track_process``): count matches in /proc.

One :class:`ProcScanner` serves every process tracker: once a second it lists /proc in a
worker thread (so a host with thousands of processes never stalls the loop), reading each
process's ``comm`` and, only when some tracker could need it, its command line. Each
:class:`ProcessTracker` counts its matches and judges the quorum; ``delay`` and
``terminate_delay`` hold a change back until it has lasted that long, so a service
restart does not flap mastership.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vigil.track.base import Tracker, TrackerState
from vigil.track.config import TrackProcessConfig

log = logging.getLogger("vigil.track")

SCAN_INTERVAL = 1.0
COMM_LEN = 15  # the kernel's TASK_COMM_LEN - 1


@dataclass(frozen=True)
class ProcInfo:
    """One process as seen in /proc: its short name and (if read) its argv."""

    pid: int
    comm: str
    argv: tuple[str, ...] | None = None


class ProcessMatcher:
    """Does a process match a ``track_processes`` entry? Pure, so unit tests cover it."""

    def __init__(self, cfg: TrackProcessConfig) -> None:
        self.cfg = cfg
        self.comm = cfg.process[:COMM_LEN]
        self.params: tuple[str, ...] | None = None
        if cfg.parameters is not None and not cfg.full_command:
            self.params = tuple(shlex.split(cfg.parameters))

    @property
    def needs_argv(self) -> bool:
        return self.cfg.full_command or self.params is not None

    def wants_argv(self, comm: str) -> bool:
        """Whether the scanner must read this process's command line for us."""
        return self.cfg.full_command or (self.params is not None and comm == self.comm)

    def matches(self, proc: ProcInfo) -> bool:
        if self.cfg.full_command:
            return bool(proc.argv) and " ".join(proc.argv or ()) == self.cfg.process
        if proc.comm != self.comm:
            return False
        if self.params is None:
            return True
        if proc.argv is None:
            return False
        return params_match(self.params, proc.argv[1:], self.cfg.param_match)


def params_match(wanted: tuple[str, ...], actual: tuple[str, ...], mode: str) -> bool:
    """``exact``: all parameters equal; ``partial``: the given ones are the first ones;
    ``initial``: as partial, but the last given one may be the start of the process's."""
    if mode == "exact":
        return actual == wanted
    if len(actual) < len(wanted):
        return False
    if mode == "partial":
        return actual[: len(wanted)] == wanted
    if mode == "initial":
        if not wanted:
            return True
        head = len(wanted) - 1
        return actual[:head] == wanted[:head] and actual[head].startswith(wanted[head])
    raise ValueError(f"param_match: unknown mode {mode!r}; use exact, partial or initial")


class Quorum:
    """Turns match counts over time into OK/FAILED, honouring delay/terminate_delay.

    Pure: every call takes ``now``. ``pending`` is the state a change would reach and when.
    """

    def __init__(self, cfg: TrackProcessConfig, state: TrackerState) -> None:
        self.cfg = cfg
        self.state = state
        self.pending: tuple[TrackerState, float] | None = None

    def target(self, count: int) -> TrackerState:
        high = self.cfg.quorum_max
        ok = count >= self.cfg.quorum and (high is None or count <= high)
        return TrackerState.OK if ok else TrackerState.FAILED

    def observe(self, count: int, now: float) -> TrackerState | None:
        """The new state if it changes now; otherwise None (maybe a change is pending)."""
        target = self.target(count)
        if target is self.state:
            self.pending = None
            return None
        terminated = target is TrackerState.FAILED and count < self.cfg.quorum
        delay = self.cfg.delay
        if terminated and self.cfg.terminate_delay > 0:
            delay = self.cfg.terminate_delay
        if self.pending is None or self.pending[0] is not target:
            self.pending = (target, now + delay)
        if now >= self.pending[1]:
            self.pending = None
            self.state = target
            return target
        return None

    def deadline(self) -> float | None:
        return None if self.pending is None else self.pending[1]


def scan_proc(wants_argv: Callable[[str], bool], root: str = "/proc") -> list[ProcInfo]:
    """List processes; reads cmdline only where ``wants_argv(comm)`` says so.

    Processes that vanish mid-scan are skipped; kernel threads have an empty argv.
    """
    out: list[ProcInfo] = []
    try:
        entries = os.listdir(root)
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        base = f"{root}/{entry}"
        try:
            with open(f"{base}/comm", "rb") as fh:
                comm = fh.read().decode("utf-8", "replace").rstrip("\n")
            argv: tuple[str, ...] | None = None
            if wants_argv(comm):
                with open(f"{base}/cmdline", "rb") as fh:
                    raw = fh.read()
                argv = tuple(p.decode("utf-8", "replace") for p in raw.split(b"\0")[:-1])
        except OSError:
            continue
        out.append(ProcInfo(int(entry), comm, argv))
    return out


class ProcessTracker(Tracker):
    """A set of matching processes and its quorum."""

    kind = "process"

    def __init__(self, cfg: TrackProcessConfig) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.matcher = ProcessMatcher(cfg)
        self.quorum = Quorum(cfg, self.state)
        self.count = 0
        self._timer: asyncio.TimerHandle | None = None

    def initial(self, procs: Iterable[ProcInfo]) -> None:
        """The first scan sets the state at once (no delay), before instances attach."""
        self.count = sum(1 for p in procs if self.matcher.matches(p))
        state = self.quorum.target(self.count)
        self.quorum.state = state
        self.state = state
        self.reason = self._describe()

    def observe(self, procs: Iterable[ProcInfo], now: float) -> None:
        self.count = sum(1 for p in procs if self.matcher.matches(p))
        self._judge(now)

    def _judge(self, now: float) -> None:
        new = self.quorum.observe(self.count, now)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if new is not None:
            self._set_state(new, self._describe())
            return
        deadline = self.quorum.deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(deadline, self._judge_later)

    def _judge_later(self) -> None:
        self._timer = None
        self._judge(asyncio.get_running_loop().time())

    def _describe(self) -> str:
        high = self.cfg.quorum_max
        want = f"{self.cfg.quorum}" if high is None else f"{self.cfg.quorum}..{high}"
        return f"{self.count} matching process(es) of {self.cfg.process!r}, quorum {want}"

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def details(self) -> dict[str, Any]:
        pending = self.quorum.pending
        return {
            "count": self.count,
            "quorum": self.cfg.quorum,
            "quorum_max": self.cfg.quorum_max,
            "pending": None if pending is None else str(pending[0]),
        }


class ProcScanner:
    """Scans /proc once per interval for all process trackers (none: no scanning)."""

    def __init__(self, interval: float = SCAN_INTERVAL) -> None:
        self.interval = interval
        self.trackers: dict[str, ProcessTracker] = {}
        self.scans = 0
        self._task: asyncio.Task[None] | None = None

    def _wants_argv(self, comm: str) -> bool:
        return any(t.matcher.wants_argv(comm) for t in self.trackers.values())

    async def scan(self) -> list[ProcInfo]:
        wanted = self._wants_argv
        procs = await asyncio.to_thread(scan_proc, wanted)
        self.scans += 1
        return procs

    async def add(self, trackers: Iterable[ProcessTracker]) -> None:
        """Register trackers and give them their initial state from a fresh scan."""
        new = list(trackers)
        for tracker in new:
            self.trackers[tracker.name] = tracker
        if new:
            procs = await self.scan()
            for tracker in new:
                tracker.initial(procs)
        self._ensure_running()

    async def remove(self, name: str) -> None:
        tracker = self.trackers.pop(name, None)
        if tracker is not None:
            await tracker.stop()

    def _ensure_running(self) -> None:
        if self.trackers and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="track-proc-scan"
            )

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.trackers:
            await asyncio.sleep(self.interval)
            try:
                procs = await self.scan()
            except Exception:
                log.exception("track: scanning /proc failed")
                continue
            now = loop.time()
            for tracker in list(self.trackers.values()):
                tracker.observe(procs, now)
        self._task = None

    async def stop(self) -> None:
        for name in list(self.trackers):
            await self.remove(name)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
