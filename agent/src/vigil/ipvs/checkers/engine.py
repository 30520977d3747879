"""The checker engine: runs every real server's checks on one asyncio loop.

Thin on purpose: the decisions live in :mod:`.core` (when to run, what a result means),
the I/O in the probes (:mod:`.net`, :mod:`.http`, :mod:`.icmp`, :mod:`.local`). The
engine wires them: checkers due within the same ``SLOT`` (5 ms) share a slot, and the
slots wait in the engine's own heap of times under one loop timer, set for the earliest
(the loop's heap, whose entries compare in Python, then holds one engine entry, not one
per waiting checker), a bounded
number of runs in flight (``concurrency``; due runs beyond it wait in a FIFO and start as
others finish, their timeouts counted from their real start), a hard time limit around
every run, and callbacks when something changes. The TCP and plain HTTP runs a timer
slot starts are polled once when all have started (:meth:`.fast.Poller.settle`): a
connect already over (a server on this host or across a bridge) finishes in that same
loop turn, and only the runs still connecting arm a connect timer.

Nothing here blocks the loop: addresses are numeric (no resolver), TLS contexts and the
MISC user are prepared in threads before the first check, file reads run in a small
thread pool, TLS handshakes run in asyncio's non-blocking SSL layer, scripts are asyncio
subprocesses. A probe that hangs costs one slot until its limit, never the loop.

Callbacks run on the loop and must not block; an exception in one is logged and
ignored:

* ``on_change(ServerChange)``: a real server's alive state or weight changed (and once
  per server at start), i.e. what IPVS should now hold for it;
* ``on_transition(Transition)``: a checker changed state (UP/FAILING/DOWN);
* ``on_result(check_name, CheckResult)``: every completed run (metrics).

It depends on nothing in ``vigil.config`` or ``vigil.daemon``; the IPVS subsystem builds
the :class:`RealServer` settings and applies the changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import heapq
import logging
import math
import random
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from vigil.incremental import SLICE_S, Slicer

from .core import CheckMachine, CheckResult, ServerChange, ServerHealth, Transition
from .fast import Poller
from .http import HttpProbe, TlsContexts
from .icmp import Pingers, PingProbe
from .local import BfdProbe, BfdState, FileProbe, MiscProbe
from .net import DnsProbe, SmtpProbe, TcpProbe, UdpProbe
from .settings import (
    BfdCheck,
    CheckSettings,
    DnsCheck,
    FileCheck,
    HttpCheck,
    MiscCheck,
    PingCheck,
    RealServer,
    SettingsError,
    SmtpCheck,
    TcpCheck,
    UdpCheck,
)

log = logging.getLogger("vigil.ipvs.checkers")

__all__ = ["CheckEngine", "EngineStats", "Probe"]

DEFAULT_CONCURRENCY = 256
#: deadlines are rounded up to this grid so that checkers due together share a timer
SLOT = 0.005
#: how early a checker may be woken (CheckMachine.timer_expired takes it as on time)
_TIMER_SLACK = 1e-6


class Probe(Protocol):
    async def run(self) -> CheckResult: ...


@dataclass
class EngineStats:
    runs: int = 0
    running: int = 0
    queued: int = 0
    max_running: int = 0
    max_queued: int = 0
    max_queue_wait: float = 0.0  # seconds a due run waited for a free slot
    hard_timeouts: int = 0  # runs cancelled at their hard limit
    probe_errors: int = 0  # probes that raised (a bug, logged with its traceback)
    callback_errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(eq=False, slots=True)
class _Check:
    name: str
    settings: CheckSettings
    machine: CheckMachine
    probe: Probe
    server: _Server
    slot: float | None = None  # the timer slot this checker waits in
    task: asyncio.Task[None] | None = None
    run: Any = None  # a callback-driven run in flight (fast.Run)
    due_at: float = 0.0
    make_run: Any = None  # the probe's make_run, if it has one (looked up once)


@dataclass(eq=False, slots=True)
class _Server:
    settings: RealServer
    health: ServerHealth
    checks: list[_Check] = field(default_factory=list)


class CheckEngine:
    """Health checks for a set of real servers. ``await start()``, later ``await stop()``.

    ``concurrency`` bounds the runs in flight; ``rng`` draws the warmup jitter (seed it
    in tests); ``file_threads`` sizes the FILE_CHECK read pool; ``bfd_state`` reads a
    BFD session's state for BFD checks (see :class:`~.local.BfdProbe`), and
    :meth:`bfd_changed` runs a session's checks at once. ``slice_s``: the longest stretch
    of :meth:`add_server` and :meth:`start` work between two yields to the loop.
    """

    def __init__(
        self,
        servers: Iterable[RealServer] = (),
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        on_change: Callable[[ServerChange], None] | None = None,
        on_transition: Callable[[Transition], None] | None = None,
        on_result: Callable[[str, CheckResult], None] | None = None,
        rng: random.Random | None = None,
        file_threads: int = 2,
        helo_name: str | None = None,
        bfd_state: BfdState | None = None,
        slice_s: float = SLICE_S,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise SettingsError(f"CheckEngine.concurrency: must be >= 1, got {concurrency!r}")
        self.concurrency = concurrency
        self.on_change = on_change
        self.on_transition = on_transition
        self.on_result = on_result
        self.rng = rng or random.Random()
        self.stats = EngineStats()
        self.helo_name = helo_name or socket.gethostname() or "localhost"
        self.bfd_state = bfd_state
        self._servers: dict[str, _Server] = {}
        self._queue: collections.deque[_Check] = collections.deque()
        self._slots: dict[float, list[_Check]] = {}  # slot time -> checkers due then
        self._heap: list[float] = []  # the slot times (a heap; one entry per slot)
        self._timer: asyncio.TimerHandle | None = None  # set for _timer_at, the earliest
        self._timer_at = math.inf
        self._tls = TlsContexts()
        self._pingers = Pingers()
        self._files = ThreadPoolExecutor(file_threads, thread_name_prefix="vigil-filecheck")
        self._loop: asyncio.AbstractEventLoop | None = None
        # adding and starting thousands of servers is pure work (a FILE check's read
        # aside): hand the loop back every slice of it
        self._slicer = Slicer(slice_s)
        self._started = False
        self._stopping = False
        for server in servers:
            self._build(server)

    # ------------------------------------------------------------------ read side

    def servers(self) -> list[str]:
        return list(self._servers)

    def health(self, name: str) -> ServerHealth:
        """The live state of one real server (KeyError names the known ones)."""
        try:
            return self._servers[name].health
        except KeyError:
            known = ", ".join(sorted(self._servers)[:10]) or "none"
            raise KeyError(f"no real server {name!r}; the engine has: {known}") from None

    def status(self) -> list[dict[str, Any]]:
        return [s.health.to_dict() for s in self._servers.values()]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Prepare (TLS contexts, MISC users, first FILE reads), report every server's
        initial state through ``on_change``, then start the timers."""
        if self._started:
            raise RuntimeError("CheckEngine.start: already started")
        self._loop = asyncio.get_running_loop()
        self._started = True
        await self._prepare(list(self._servers.values()))
        for server in list(self._servers.values()):
            await self._start_server(server)
            await self._slicer.tick()

    async def stop(self) -> None:
        """Cancel timers and runs in flight (scripts' process groups are killed)."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = []
        for server in self._servers.values():
            tasks += self._halt(server, "engine stopped")
        self._queue.clear()
        self.stats.queued = 0
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pingers.close()
        self._files.shutdown(wait=False, cancel_futures=True)
        self._started = False

    async def add_server(self, server: RealServer) -> None:
        """Check one more server (before start, or a reload added it)."""
        await self._slicer.tick()
        entry = self._build(server)
        if self._started:
            await self._prepare([entry])
            await self._start_server(entry)

    async def remove_server(self, name: str) -> None:
        """Stop checking a server; its runs in flight are cancelled."""
        server = self._servers.pop(name, None)
        if server is None:
            raise KeyError(f"no real server {name!r}")
        tasks = self._halt(server, "removed")
        for c in server.checks:
            with contextlib.suppress(ValueError):
                self._queue.remove(c)
        self.stats.queued = len(self._queue)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pump()

    def reconfigure(self, name: str, weight: int, inhibit_on_failure: bool) -> None:
        """A reload changed a server's configured weight or inhibit_on_failure, not its
        checks: keep its checkers (and their state) running, report the new result."""
        server = self._servers.get(name)
        if server is None:
            raise KeyError(f"no real server {name!r}")
        server.health.base_weight = weight
        server.health.inhibit_on_failure = inhibit_on_failure
        if self._started and self._loop is not None:
            change = server.health.evaluate(self._loop.time(), "configuration changed")
            if change is not None:
                self._emit_change(change)

    def bfd_sessions(self) -> set[str]:
        """The BFD sessions that some real server's BFD check reads."""
        return {
            c.settings.session
            for server in self._servers.values()
            for c in server.checks
            if isinstance(c.settings, BfdCheck)
        }

    def bfd_changed(self, session: str) -> int:
        """BFD session ``session`` changed state: run its checks now rather than at their
        next ``delay_loop``. Returns how many were brought forward (one already running
        reads the state when it runs, which is after this call)."""
        loop = self._loop
        if loop is None or not self._started or self._stopping:
            return 0
        now = loop.time()
        count = 0
        for server in list(self._servers.values()):
            for c in server.checks:
                if not isinstance(c.settings, BfdCheck) or c.settings.session != session:
                    continue
                if c.machine.expedite(now):
                    c.slot = None  # the timer slot it waited in no longer applies
                    self._due(c)
                    count += 1
        return count

    # ------------------------------------------------------------------ building

    def _build(self, server: RealServer) -> _Server:
        name = server.label
        if name in self._servers:
            raise SettingsError(f"real server {name!r} given twice; give each a unique name")
        names = server.check_names()
        machines = [CheckMachine(n, c.timing()) for n, c in zip(names, server.checks, strict=True)]
        health = ServerHealth(name, server.weight, server.inhibit_on_failure, machines)
        entry = _Server(server, health)
        for machine, settings in zip(machines, server.checks, strict=True):
            probe = self._probe(settings, server)
            make_run = getattr(probe, "make_run", None)
            entry.checks.append(
                _Check(machine.name, settings, machine, probe, entry, make_run=make_run)
            )
        self._servers[name] = entry
        return entry

    def _probe(self, check: CheckSettings, server: RealServer) -> Probe:
        if isinstance(check, HttpCheck):
            return HttpProbe(check, server, self._tls)
        if isinstance(check, TcpCheck):
            return TcpProbe(check, server)
        if isinstance(check, DnsCheck):
            return DnsProbe(check, server)
        if isinstance(check, UdpCheck):
            return UdpProbe(check, server)
        if isinstance(check, PingCheck):
            return PingProbe(check, server, self._pingers)
        if isinstance(check, SmtpCheck):
            return SmtpProbe(check, server, self.helo_name)
        if isinstance(check, MiscCheck):
            return MiscProbe(check, server)
        if isinstance(check, FileCheck):
            return FileProbe(check, self._files)
        if isinstance(check, BfdCheck):
            return BfdProbe(check, self.bfd_state)
        raise SettingsError(f"unknown checker settings {type(check).__name__}")

    async def _prepare(self, servers: list[_Server]) -> None:
        checks = [c for s in servers for c in s.checks]
        await self._tls.prepare([c.settings for c in checks if isinstance(c.settings, HttpCheck)])
        for c in checks:
            if isinstance(c.probe, MiscProbe):
                await c.probe.prepare()

    async def _start_server(self, server: _Server) -> None:
        loop = self._loop
        assert loop is not None
        for c in server.checks:
            known = None
            if isinstance(c.settings, FileCheck):
                known = await self._run_probe(c)
            actions = c.machine.start(loop.time(), self.rng.random(), known=known)
            self._apply(c, actions, known, report=False)
        change = server.health.evaluate(loop.time(), "checks started")
        if change is not None:
            self._emit_change(change)
        for c in server.checks:
            self._arm(c)

    def _halt(self, server: _Server, reason: str) -> list[asyncio.Task[None]]:
        now = self._loop.time() if self._loop is not None else 0.0
        tasks = []
        for c in server.checks:
            c.slot = None
            if c.task is not None:
                tasks.append(c.task)
            if c.run is not None:
                c.run.cancel()
                c.run = None
                self.stats.running -= 1
            for action in c.machine.stop(now, reason):
                if isinstance(action, Transition):
                    self._emit_transition(action)
        return tasks

    # ------------------------------------------------------------------ scheduling

    def _arm(self, c: _Check) -> None:
        deadline = c.machine.next_deadline()
        loop = self._loop
        if deadline is None or loop is None or self._stopping:
            return
        slot = math.ceil(deadline / SLOT) * SLOT
        c.slot = slot
        waiting = self._slots.get(slot)
        if waiting is not None:
            waiting.append(c)
            return
        self._slots[slot] = [c]
        heapq.heappush(self._heap, slot)
        if slot < self._timer_at:
            self._retime()

    def _retime(self) -> None:
        """Set the loop timer for the earliest slot (if it is not set for it already)."""
        heap = self._heap
        at = heap[0] if heap else math.inf
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        loop = self._loop
        if heap and loop is not None and not self._stopping:
            self._timer = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        """The earliest slot is due: run every slot due by now; the timer moves on to
        the next one first."""
        self._timer, self._timer_at = None, math.inf
        loop = self._loop
        if loop is None or self._stopping:
            return
        heap, slots = self._heap, self._slots
        # the loop may run a timer up to its clock resolution early; the checkers' own
        # slack is larger. The due slots are taken first: a checker re-armed meanwhile
        # waits for the next timer, never for this loop.
        limit = loop.time() + _TIMER_SLACK
        due = []
        while heap and heap[0] <= limit:
            due.append(heapq.heappop(heap))
        self._retime()
        deferred = False
        try:
            for slot in due:
                for c in slots.pop(slot, ()):
                    if c.slot == slot:  # not re-armed or halted meanwhile
                        deferred = self._due(c, defer=True) or deferred
        finally:
            for slot in due:
                if slot in slots:  # not reached: something above raised
                    heapq.heappush(heap, slot)
            self._retime()
            if deferred:
                # the connects started here that are already over finish in this loop
                # turn; the others get their timers (see fast.Poller.settle)
                Poller.of(loop).settle()

    def _due(self, c: _Check, defer: bool = False) -> bool:
        """Launch (or queue) ``c``'s run; True if it waits for ``Poller.settle``."""
        c.slot = None
        loop = self._loop
        if loop is None or self._stopping:
            return False
        now = loop.time()
        if not c.machine.take_run(now):
            self._arm(c)  # woke a little early: wait for the rest
            return False
        c.due_at = now
        if self.stats.running < self.concurrency:
            return self._launch(c, defer, now)
        self._queue.append(c)
        self.stats.queued = len(self._queue)
        self.stats.max_queued = max(self.stats.max_queued, self.stats.queued)
        return False

    def _launch(self, c: _Check, defer: bool = False, now: float | None = None) -> bool:
        """Start ``c``'s run; True if it waits for ``Poller.settle`` (``defer``).
        ``now``: the loop's time if the caller just read it (a run due now, not queued)."""
        loop = self._loop
        assert loop is not None
        stats = self.stats
        stats.running += 1
        if stats.running > stats.max_running:
            stats.max_running = stats.running
        started = loop.time() if now is None else now
        if started - c.due_at > stats.max_queue_wait:
            stats.max_queue_wait = started - c.due_at
        make_run = c.make_run
        run = make_run(loop, functools.partial(self._finished, c, started)) if make_run else None
        if run is not None:
            c.run = run
            return bool(run.start(defer))
        c.task = loop.create_task(self._run(c), name=f"check {c.name}")
        return False

    def _pump(self) -> None:
        while self._queue and self.stats.running < self.concurrency and not self._stopping:
            c = self._queue.popleft()
            self.stats.queued = len(self._queue)
            if c.machine.running and self._servers.get(c.server.settings.label) is c.server:
                self._launch(c)

    def _finished(self, c: _Check, started: float, result: CheckResult) -> None:
        """A callback-driven run ended (never called after its cancel())."""
        loop = self._loop
        assert loop is not None
        c.run = None
        stats = self.stats
        stats.runs += 1
        stats.running -= 1
        now = loop.time()
        if c.machine.running:
            weight, offset = result.weight, result.weight_offset
            result = CheckResult(result.ok, now - started, result.error, weight, offset)
            actions = c.machine.result(now, result)
            # most runs change nothing: no transition, no weight news, nobody to tell
            if actions or weight is not None or offset is not None or self.on_result:
                self._apply(c, actions, result)
            self._arm(c)
        if self._queue:
            self._pump()

    async def _run(self, c: _Check) -> None:
        try:
            result = await self._run_probe(c)
        finally:
            c.task = None
            self.stats.running -= 1
            self._pump()
        loop = self._loop
        if loop is None or not c.machine.running:
            return  # stopped or removed meanwhile
        actions = c.machine.result(loop.time(), result)
        self._apply(c, actions, result)
        self._arm(c)

    async def _run_probe(self, c: _Check) -> CheckResult:
        """One run with the hard limit; latency measured here, never raises (but for
        cancellation)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        limit = c.settings.budget()
        try:
            async with asyncio.timeout(limit):
                result = await c.probe.run()
        except TimeoutError:
            self.stats.hard_timeouts += 1
            result = CheckResult(ok=False, error=f"no result within {limit:g}s (hard limit)")
        except Exception as exc:
            self.stats.probe_errors += 1
            log.exception("(%s) probe raised", c.name)
            result = CheckResult(ok=False, error=f"checker error: {exc!r}")
        self.stats.runs += 1
        latency = loop.time() - started
        return CheckResult(result.ok, latency, result.error, result.weight, result.weight_offset)

    # ------------------------------------------------------------------ reporting

    def _apply(
        self, c: _Check, actions: list[Any], result: CheckResult | None, *, report: bool = True
    ) -> None:
        """Log and hand out a run's transitions, then the server's change if any.

        At start (``report`` False) the server's first state goes out once all its
        checkers have started, from :meth:`_start_server`.
        """
        loop = self._loop
        assert loop is not None
        reason = None
        for action in actions:
            if isinstance(action, Transition):
                self._emit_transition(action)
                reason = f"{action.check}: {action.old} -> {action.new}: {action.reason}"
        if result is not None and self.on_result is not None:
            self._callback(self.on_result, c.name, result)
        if not report or self._servers.get(c.server.settings.label) is not c.server:
            return
        if reason is None and (
            result is None or (result.weight is None and result.weight_offset is None)
        ):
            return  # no state change and no weight news: the server cannot have changed
        if reason is None and result is not None:
            reason = f"{c.name}: {result.describe()}"
        change = c.server.health.evaluate(loop.time(), reason or c.name)
        if change is not None:
            self._emit_change(change)

    def _emit_transition(self, t: Transition) -> None:
        # UP <-> DOWN at INFO; start, stop and the FAILING steps in between at DEBUG
        quiet = "FAILING" in (t.old, t.new) or t.old == "INIT" or t.new == "STOPPED"
        level = logging.DEBUG if quiet else logging.INFO
        log.log(level, "%s", t)
        if self.on_transition is not None:
            self._callback(self.on_transition, t)

    def _emit_change(self, change: ServerChange) -> None:
        # a server that starts alive (the usual start) at DEBUG: ten thousand of them
        # are ten thousand lines, and a good part of a large config's start-up
        quiet = change.was_alive is None and change.alive
        log.log(logging.DEBUG if quiet else logging.INFO, "%s", change)
        if self.on_change is not None:
            self._callback(self.on_change, change)

    def _callback(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("checker engine callback %r raised", fn)
