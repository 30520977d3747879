"""The event-loop lag monitor (vigil.looplag) and the API's accept pace
(vigil.api.server.PacedAccept): their arithmetic with a fake clock, and the lag monitor
in a real loop that a blocking callback holds up."""

from __future__ import annotations

import asyncio
import logging
import selectors
import time
from typing import Any

import pytest

from vigil.api.server import PacedAccept
from vigil.looplag import LoopLag, new_event_loop

MODES = ("timer", "selector")


def run_in(mode: str, coro: Any) -> Any:
    """Run ``coro`` in a plain asyncio loop (LoopLag's timer) or in vigild's own loop
    (measured by its selector)."""
    if mode == "timer":
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


def test_lag_keeps_the_worst_of_this_and_the_previous_window() -> None:
    lag = LoopLag(period=0.05, stall=0.25, window=10.0)
    lag._window_end = 10.0
    lag.observe(0.01, 1.0)
    lag.observe(0.3, 2.0)
    assert lag.worst() == 0.3 and lag.stalls == 1
    lag.observe(0.02, 11.0)  # a new window: the previous one's worst still counts
    assert lag.worst() == 0.3
    lag.observe(0.0, 22.0)  # two windows on: forgotten
    assert lag.worst() == pytest.approx(0.02)
    assert lag.worst_ever == 0.3 and lag.stalls == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_blocked_loop_is_measured_and_logged_once(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> LoopLag:
        lag = LoopLag(period=0.01, stall=0.1)
        lag.start()
        assert lag.mode == mode
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # a callback that holds the loop (what a starved process looks like)
        await asyncio.sleep(0.05)
        time.sleep(0.3)
        await asyncio.sleep(0.05)
        lag.stop()
        return lag

    with caplog.at_level(logging.WARNING, logger="vigil.agent"):
        lag = run_in(mode, main())
    assert lag.stalls == 2 and 0.25 <= lag.worst() < 5.0
    lines = [r.getMessage() for r in caplog.records if "event loop ran" in r.getMessage()]
    assert len(lines) == 1, lines  # once per burst
    assert lines[0].startswith("agent: the event loop ran 0.")
    # sleeping uses no CPU: where the time went is told from the CPU time used
    assert "(not running: starved of CPU, stopped or blocked)" in lines[0], lines


@pytest.mark.parametrize("mode", MODES)
def test_a_stall_that_burns_cpu_is_told_apart(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        lag = LoopLag(period=0.01, stall=0.1)
        lag.start()
        assert lag.mode == mode
        await asyncio.sleep(0.05)
        end = time.process_time() + 0.3
        while time.process_time() < end:  # a callback that computes for 0.3 s
            pass
        await asyncio.sleep(0.05)
        lag.stop()

    with caplog.at_level(logging.WARNING, logger="vigil.agent"):
        run_in(mode, main())
    lines = [r.getMessage() for r in caplog.records if "event loop ran" in r.getMessage()]
    # CPU time, not wall time: 0.3 s of it whatever the machine's load did to the lag
    assert len(lines) == 1 and "(busy" in lines[0], lines
    used = float(lines[0].split("the process used ")[1].split(" s of CPU")[0])
    assert 0.29 <= used < 1.0, lines


def test_the_selector_sees_a_stopped_process_and_wakes_for_nothing_itself() -> None:
    """In vigild's loop the measure needs no timer: an idle loop with one timer a second
    wakes once a second; and a wait that overran its timeout (the process stopped or not
    scheduled while a timer was due: a SIGSTOP, here a blocking wait the selector does
    not know of) is a lag."""
    from vigil.looplag import TimedSelector

    class LateOnce(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
        """The platform's selector, whose next wait with a timeout ends 0.3 s late when
        asked (as a stopped process's would), counting its waits."""

        def __init__(self) -> None:
            super().__init__()
            self.late_once = False
            self.waits = 0

        def select(self, timeout: float | None = None) -> Any:
            self.waits += 1
            ready = super().select(timeout)
            if self.late_once and timeout:
                self.late_once = False
                time.sleep(0.3)
            return ready

    inner = LateOnce()
    selector = TimedSelector(inner)

    async def main() -> LoopLag:
        lag = LoopLag(period=0.01, stall=0.1)
        lag.start()
        assert lag.mode == "selector"
        waits = inner.waits
        await asyncio.sleep(0.5)  # one timer: one or two waits, not 50 ticks
        assert inner.waits - waits <= 3, inner.waits - waits
        assert lag.stalls == 0
        inner.late_once = True
        await asyncio.sleep(0.05)
        lag.stop()
        return lag

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        lag = runner.run(main())
    assert lag.stalls == 1 and 0.25 <= lag.worst() < 5.0, (lag.stalls, lag.worst())


def test_accept_pace_gives_a_burst_then_the_rate() -> None:
    pace = PacedAccept(rate=200.0, burst=16)
    now = 100.0
    assert sum(pace.take(now) for _ in range(100)) == 16
    assert pace.wait(now) == pytest.approx(1 / 200)
    # one second later: 200 more at most (the bucket holds no more than the burst, so
    # taken one by one as they come)
    taken = 0
    for i in range(1, 2001):
        taken += pace.take(now + i / 2000)
    assert 199 <= taken <= 201
    # an idle bucket refills to the burst, not beyond
    assert sum(pace.take(now + 60) for _ in range(100)) == 16
