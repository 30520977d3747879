"""How late the agent's event loop runs its callbacks (its lag), measured from inside.

Everything time-critical in vigild (VRRP adverts and Master_Down, BFD transmission and
detection, VIP changes) runs in one event loop, so a loop that is late by 0.4 s delays
all of them by 0.4 s: with 0.1 s adverts that is long enough for a backup to take over.
:class:`LoopLag` records how late the loop is (what a timer or a packet of any subsystem
would have suffered). It keeps the worst lag of the current and the previous window
(``vigil_event_loop_lag_seconds``), counts stalls (a lag over ``stall``:
``vigil_event_loop_stalls``) and logs a stall once per burst, so a stall shows in the
log and in the metrics next to the takeover it caused.

Two ways to measure, the same figures:

- **From the loop's selector** (vigild's own loop, :func:`new_event_loop`): every turn of
  the loop, the time its callbacks held it (from the selector's return to its next call:
  anything due or arriving meanwhile waited that long) and how far the selector's wait
  overran its timeout (the process was not scheduled, or was stopped, when a timer was
  due). No wake-ups of its own: a 20 Hz timer cost vigild three quarters of its idle CPU
  (each wake-up is about 125 us on a virtualized host, many times that under QEMU's
  emulation).
- **A timer** every ``period`` seconds that records how late it woke, on any other loop
  (tests that run the agent in a loop of their own).

The log line says where the time went: the CPU time the process used while the loop was
late (close to the lag: a long callback or a garbage collection ran; far below it: the
process was not scheduled, i.e. starved, stopped, or blocked in a system call) and the
longest garbage collection in that time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import selectors
import time
from typing import Any

from vigil.log import RateLimitedLog

__all__ = ["LoopLag", "TimedSelector", "new_event_loop"]

log = logging.getLogger("vigil.agent")

#: Seconds between two measurements (a cheap wake-up; timers are 10 ms and up).
PERIOD = 0.05
#: A lag over this is a stall: logged (once per burst) and counted.
STALL = 0.25
#: The worst lag is kept over windows of this many seconds.
WINDOW = 10.0


class TimedSelector(selectors.BaseSelector):
    """The platform's default selector, timed for :class:`LoopLag`: it reports how long
    the loop ran callbacks between two waits, and how far a wait overran its timeout."""

    def __init__(self, inner: selectors.BaseSelector | None = None) -> None:
        self._inner = inner or selectors.DefaultSelector()
        self.observer: LoopLag | None = None
        self._returned: float | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        observer = self.observer
        if observer is None:
            self._returned = None
            return self._inner.select(timeout)
        entered = time.monotonic()
        if self._returned is not None:
            observer.ran(entered - self._returned, entered)
        ready = self._inner.select(timeout)
        self._returned = time.monotonic()
        if timeout is not None:
            observer.waited(self._returned - entered - timeout, self._returned)
        return ready


def new_event_loop() -> asyncio.AbstractEventLoop:
    """vigild's event loop: asyncio's selector loop on a :class:`TimedSelector`, so
    :class:`LoopLag` measures it without timers of its own."""
    return asyncio.SelectorEventLoop(TimedSelector())


class LoopLag:
    """Start with ``start()`` inside the loop; ``worst()`` is the recent worst lag."""

    def __init__(self, period: float = PERIOD, stall: float = STALL, window: float = WINDOW):
        self.period = period
        self.stall = stall
        self.window = window
        self.stalls = 0
        self.worst_ever = 0.0
        self._current = 0.0
        self._previous = 0.0
        self._window_end = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log = RateLimitedLog(log)
        self._cpu = 0.0
        self._gc_started: float | None = None
        self._gc_longest = 0.0
        self._selector: TimedSelector | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._cpu = time.process_time()
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        self._window_end = now + self.window
        # vigild's own loop (new_event_loop) is measured by its selector; any other by a
        # timer. asyncio keeps a selector loop's selector in ``_selector``.
        selector = getattr(self._loop, "_selector", None)
        if isinstance(selector, TimedSelector):
            self._selector = selector
            selector.observer = self
        else:
            self._arm(now)

    @property
    def mode(self) -> str:
        """``selector`` or ``timer``: how this loop is measured."""
        return "selector" if self._selector is not None else "timer"

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._selector is not None:
            self._selector.observer = None
            self._selector = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def ran(self, busy: float, now: float) -> None:
        """The selector's report: the loop ran callbacks for ``busy`` seconds up to
        ``now`` (whatever was due or arrived meanwhile waited as long)."""
        cpu = time.process_time()
        used, self._cpu = cpu - self._cpu, cpu
        gc_longest, self._gc_longest = self._gc_longest, 0.0
        self.observe(busy, now, cpu=used, gc=gc_longest)

    def waited(self, overrun: float, now: float) -> None:
        """The selector's report: its wait ended ``overrun`` seconds after its timeout
        (a timer was due then), at ``now``."""
        if overrun > self.stall:
            cpu = time.process_time()
            used, self._cpu = cpu - self._cpu, cpu
            self.observe(overrun, now, cpu=used, gc=0.0)
        elif overrun > self._current:
            self.observe(overrun, now)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        elif self._gc_started is not None:
            self._gc_longest = max(self._gc_longest, time.monotonic() - self._gc_started)
            self._gc_started = None

    def worst(self) -> float:
        """The worst lag seen in the current or the previous window (seconds)."""
        return max(self._current, self._previous)

    def _arm(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.period
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        cpu = time.process_time()
        used, self._cpu = cpu - self._cpu, cpu
        gc_longest, self._gc_longest = self._gc_longest, 0.0
        self.observe(now - self._due, now, cpu=used, gc=gc_longest)
        self._arm(now)

    def observe(self, lag: float, now: float, *, cpu: float = 0.0, gc: float = 0.0) -> None:
        """One measurement: the loop ran a callback ``lag`` seconds after it was due;
        ``cpu``: CPU seconds the process used since the last one; ``gc``: its longest
        garbage collection since then."""
        lag = max(0.0, lag)
        if now >= self._window_end:
            self._previous, self._current = self._current, 0.0
            self._window_end = now + self.window
        self._current = max(self._current, lag)
        self.worst_ever = max(self.worst_ever, lag)
        if lag > self.stall:
            self.stalls += 1
            self._log.warning(
                "stall",
                "agent: the event loop ran %.3f s late (timers, adverts and BFD packets "
                "with it); the process used %.3f s of CPU meanwhile (%s), its longest "
                "garbage collection took %.3f s",
                lag,
                cpu,
                _where(lag, cpu),
                gc,
            )


def _where(lag: float, cpu: float) -> str:
    """Where a stall's time went, from the CPU time used in it."""
    if cpu >= 0.8 * lag:
        return "busy: a long callback"
    if cpu >= 0.1 * lag:
        return "busy while other processes had the CPU"
    return "not running: starved of CPU, stopped or blocked"
