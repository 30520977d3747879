"""Waiting on an instance's pulse: woken by changes, bounded by a deadline, never polling."""

from __future__ import annotations

import asyncio

import pytest

from vigil.vrrp.watch import Pulse

pytestmark = pytest.mark.unit


async def until(cond: object, rounds: int = 100) -> bool:
    """Let the loop run (at most ``rounds`` iterations, no time passes) until ``cond()``."""
    for _ in range(rounds):
        if cond():  # type: ignore[operator]
            return True
        await asyncio.sleep(0)
    return bool(cond())  # type: ignore[operator]


def test_a_condition_that_already_holds_returns_at_once() -> None:
    async def main() -> None:
        pulse = Pulse()
        assert await pulse.wait_until(lambda: True, 10.0)
        assert pulse.waiting == 0

    asyncio.run(main())


def test_a_pulse_wakes_the_waiter_which_rechecks_its_condition() -> None:
    async def main() -> None:
        pulse = Pulse()
        state = {"n": 0}
        checks = {"n": 0}

        def check() -> bool:
            checks["n"] += 1
            return state["n"] >= 2

        task = asyncio.create_task(pulse.wait_until(check, 60.0))
        assert await until(lambda: pulse.waiting == 1)  # registered
        state["n"] = 1
        pulse.fire()
        assert await until(lambda: checks["n"] == 2 and pulse.waiting == 1)
        assert not task.done()  # woke, re-checked, waits again
        state["n"] = 2
        pulse.fire()
        assert await asyncio.wait_for(task, 1.0) is True
        assert pulse.waiting == 0

    asyncio.run(main())


def test_the_deadline_ends_the_wait_with_the_last_answer() -> None:
    """A fake clock that jumps past the deadline: no real time passes."""

    async def main() -> None:
        pulse = Pulse()
        fake = {"t": 100.0}
        task = asyncio.create_task(pulse.wait_until(lambda: False, 5.0, clock=lambda: fake["t"]))
        await asyncio.sleep(0)
        fake["t"] = 106.0  # past the deadline; the next pulse finds it over
        pulse.fire()
        assert await asyncio.wait_for(task, 1.0) is False
        assert pulse.waiting == 0

    asyncio.run(main())


def test_a_timeout_without_any_pulse_returns_false() -> None:
    async def main() -> None:
        pulse = Pulse()
        assert await pulse.wait_until(lambda: False, 0.01) is False
        assert pulse.waiting == 0

    asyncio.run(main())


def test_firing_with_nobody_waiting_only_counts() -> None:
    pulse = Pulse()
    pulse.fire()
    pulse.fire()
    assert pulse.fired == 2 and pulse.waiting == 0


def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    async def main() -> None:
        pulse = Pulse()
        task = asyncio.create_task(pulse.wait_until(lambda: False, 60.0))
        assert await until(lambda: pulse.waiting == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pulse.waiting == 0

    asyncio.run(main())


def test_next_returns_true_on_a_pulse_and_false_at_its_timeout() -> None:
    async def main() -> None:
        pulse = Pulse()
        task = asyncio.create_task(pulse.next(60.0))
        assert await until(lambda: pulse.waiting == 1)
        pulse.fire()
        assert await asyncio.wait_for(task, 1.0) is True
        assert await pulse.next(0.01) is False
        assert await pulse.next(0) is False
        assert pulse.waiting == 0

    asyncio.run(main())
