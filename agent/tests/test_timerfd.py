"""vigil.timerfd.PreciseTimer on a real event loop and a real timerfd (no root needed).

These check behaviour, not speed: a callback never runs before its deadline, runs once,
re-arming moves it, cancel and close stop it, and the call_at fallback behaves the same.
How much earlier than call_at it fires is measured in bench/ (failover timelines).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from vigil import timerfd
from vigil.timerfd import PreciseTimer

WAIT = 2.0  # bound on every wait for a callback that must come


@pytest.fixture(params=["timerfd", "call_at"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "call_at":
        monkeypatch.setattr(timerfd, "_libc", None)
    return str(request.param)


async def test_this_machine_has_timerfd() -> None:
    assert timerfd.available()


async def test_fires_once_not_before_its_deadline(mode: str) -> None:
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    done = asyncio.Event()

    def fired() -> None:
        calls.append(loop.time())
        done.set()

    timer = PreciseTimer(loop, fired)
    assert timer.uses_timerfd is (mode == "timerfd")
    when = loop.time() + 0.02
    timer.arm(when)
    assert timer.when == when
    await asyncio.wait_for(done.wait(), WAIT)
    assert len(calls) == 1 and calls[0] >= when
    assert timer.when is None
    # Nothing else is due: a second, later timer fires and the first stayed silent.
    other = asyncio.Event()
    later = PreciseTimer(loop, other.set)
    later.arm(loop.time() + 0.03)
    await asyncio.wait_for(other.wait(), WAIT)
    assert len(calls) == 1
    timer.close()
    later.close()


async def test_rearming_moves_the_deadline(mode: str) -> None:
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    done = asyncio.Event()
    timer = PreciseTimer(loop, lambda: (calls.append(loop.time()), done.set()))
    timer.arm(loop.time() + 0.01)
    later = loop.time() + 0.06
    timer.arm(later)
    await asyncio.wait_for(done.wait(), WAIT)
    assert len(calls) == 1 and calls[0] >= later
    timer.close()


async def test_a_past_deadline_fires_at_once(mode: str) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    timer = PreciseTimer(loop, done.set)
    timer.arm(loop.time() - 1.0)
    await asyncio.wait_for(done.wait(), WAIT)
    timer.close()


async def test_cancel_and_close_stop_it(mode: str) -> None:
    loop = asyncio.get_running_loop()
    calls: list[str] = []
    again = asyncio.Event()
    cancelled = PreciseTimer(loop, lambda: (calls.append("cancelled"), again.set()))
    closed = PreciseTimer(loop, lambda: calls.append("closed"))
    cancelled.arm(loop.time() + 0.01)
    closed.arm(loop.time() + 0.01)
    cancelled.cancel()
    closed.close()
    witness = asyncio.Event()
    probe = PreciseTimer(loop, witness.set)
    probe.arm(loop.time() + 0.05)
    await asyncio.wait_for(witness.wait(), WAIT)
    assert calls == []
    assert cancelled.when is None
    with pytest.raises(RuntimeError, match="closed"):
        closed.arm(loop.time() + 1)
    # Cancelled timers can be armed again.
    cancelled.arm(loop.time() + 0.01)
    await asyncio.wait_for(again.wait(), WAIT)
    assert calls == ["cancelled"]
    cancelled.close()
    probe.close()
    closed.close()  # twice is harmless


async def test_close_releases_the_descriptor() -> None:
    loop = asyncio.get_running_loop()
    before = len(os.listdir("/proc/self/fd"))
    timers = [PreciseTimer(loop, lambda: None) for _ in range(20)]
    assert len(os.listdir("/proc/self/fd")) == before + 20
    for timer in timers:
        timer.close()
    assert len(os.listdir("/proc/self/fd")) == before


async def test_far_deadlines_wait_on_call_at_until_the_lead() -> None:
    """A backup re-arms on every advert: that must not cost a timerfd system call."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    timer = PreciseTimer(loop, done.set)
    for step in range(100):
        timer.arm(loop.time() + 0.05 + step * 1e-4)
        assert not timer._fd_armed  # still on call_at: no timerfd_settime yet
    when = timer.when
    assert when is not None
    await asyncio.wait_for(done.wait(), WAIT)
    assert loop.time() >= when
    timer.close()


async def test_rearming_inside_the_lead_window(mode: str) -> None:
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    done = asyncio.Event()
    timer = PreciseTimer(loop, lambda: (calls.append(loop.time()), done.set()))
    timer.arm(loop.time() + timerfd.LEAD / 2)  # inside the lead: straight to the timerfd
    later = loop.time() + 0.03
    timer.arm(later)  # moved out again before it fired
    await asyncio.wait_for(done.wait(), WAIT)
    assert len(calls) == 1 and calls[0] >= later
    timer.close()


async def test_imprecise_deadlines_use_call_at(mode: str) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    timer = PreciseTimer(loop, done.set)
    when = loop.time() + 0.01
    timer.arm(when, precise=False)
    assert not timer._fd_armed
    await asyncio.wait_for(done.wait(), WAIT)
    assert loop.time() >= when
    timer.close()


@pytest.mark.serial  # a callback a few ms before a deadline: run alone in make test
async def test_on_lead_runs_once_before_a_precise_deadline(mode: str) -> None:
    loop = asyncio.get_running_loop()
    order: list[tuple[str, float]] = []
    done = asyncio.Event()
    timer = PreciseTimer(
        loop,
        lambda: (order.append(("fire", loop.time())), done.set()),
        on_lead=lambda: order.append(("lead", loop.time())),
    )
    when = loop.time() + 0.05
    timer.arm(when)
    assert order == []  # far off: nothing prepared yet
    await asyncio.wait_for(done.wait(), WAIT)
    assert [name for name, _ in order] == ["lead", "fire"]
    lead_at, fired_at = order[0][1], order[1][1]
    assert when - timerfd.LEAD <= lead_at < when <= fired_at
    timer.close()


async def test_re_arming_far_off_never_runs_on_lead(mode: str) -> None:
    """A backup re-arms Master_Down on every advert: no preparation until it is due."""
    loop = asyncio.get_running_loop()
    leads: list[float] = []
    done = asyncio.Event()
    timer = PreciseTimer(loop, done.set, on_lead=lambda: leads.append(loop.time()))
    for step in range(50):
        timer.arm(loop.time() + 0.5 + step * 1e-3)
        await asyncio.sleep(0)
    assert leads == []
    timer.arm(loop.time() + 0.02)
    await asyncio.wait_for(done.wait(), WAIT)
    assert len(leads) == 1
    timer.close()


async def test_a_deadline_inside_the_lead_prepares_at_once(mode: str) -> None:
    loop = asyncio.get_running_loop()
    leads: list[str] = []
    done = asyncio.Event()
    timer = PreciseTimer(loop, done.set, on_lead=lambda: leads.append("lead"))
    timer.arm(loop.time() + timerfd.LEAD / 2)
    assert leads == ["lead"]  # inside arm(), before the loop runs again
    await asyncio.wait_for(done.wait(), WAIT)
    assert leads == ["lead"]
    timer.close()


async def test_a_failing_on_lead_is_logged_and_the_timer_still_fires(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def broken() -> None:
        raise RuntimeError("no luck")

    timer = PreciseTimer(loop, done.set, on_lead=broken)
    when = loop.time() + 0.02
    timer.arm(when)
    await asyncio.wait_for(done.wait(), WAIT)
    assert loop.time() >= when
    assert "timer lead callback" in caplog.text and "no luck" in caplog.text
    timer.close()


async def test_on_lead_may_move_or_cancel_the_deadline(mode: str) -> None:
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    done = asyncio.Event()
    timer: PreciseTimer

    def move() -> None:
        timer.arm(later)

    timer = PreciseTimer(loop, lambda: (calls.append(loop.time()), done.set()), on_lead=move)
    later = loop.time() + 0.06
    timer.arm(loop.time() + 0.02)
    await asyncio.wait_for(done.wait(), WAIT)
    assert len(calls) == 1 and calls[0] >= later

    cancelled = PreciseTimer(loop, lambda: calls.append(-1.0), on_lead=lambda: cancelled.cancel())
    cancelled.arm(loop.time() + 0.01)
    witness = asyncio.Event()
    probe = PreciseTimer(loop, witness.set)
    probe.arm(loop.time() + 0.05)
    await asyncio.wait_for(witness.wait(), WAIT)
    assert -1.0 not in calls
    for t in (timer, cancelled, probe):
        t.close()
