"""The callback-driven TCP run and its poller (vigil.ipvs.checkers.fast) on loopback: a
run started with ``defer`` finishes in :meth:`Poller.settle` when its connect is already
over, and only a run still connecting gets its connect timer there; and the engine's
timer heap, which keeps one loop timer for the earliest slot."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator

import pytest

from vigil.ipvs.checkers import CheckEngine, CheckResult, RealServer, TcpCheck
from vigil.ipvs.checkers.fast import FastTcpRun, Poller
from vigil.ipvs.checkers.net import Endpoint


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def full_listener() -> Iterator[socket.socket]:
    """A listener whose accept queue is full: a new connect's SYN is dropped, so the
    connect stays in progress until its timeout."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)  # room for one connection, which this one takes
    first = socket.create_connection(sock.getsockname())
    try:
        yield sock
    finally:
        first.close()
        sock.close()


def tcp_run(port: int, results: list[CheckResult], connect_timeout: float = 5.0) -> FastTcpRun:
    check = TcpCheck(connect_timeout=connect_timeout)
    server = RealServer(address="127.0.0.1", port=port, checks=(check,))
    loop = asyncio.get_running_loop()
    return FastTcpRun(loop, check, Endpoint.for_check(check, server), results.append)


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()  # never listened: a connect is refused
    return port


async def test_a_deferred_connect_that_is_over_finishes_in_settle_without_a_timer(
    listener: socket.socket,
) -> None:
    results: list[CheckResult] = []
    run = tcp_run(listener.getsockname()[1], results)
    assert run.start(defer=True) is True
    assert run.timer is None and results == []
    Poller.of(asyncio.get_running_loop()).settle()
    assert results == [CheckResult(ok=True)]  # in this turn of the loop, not a later one
    assert run.finished and run.timer is None and run.sock is None


async def test_a_refused_deferred_connect_reads_its_error(listener: socket.socket) -> None:
    results: list[CheckResult] = []
    run = tcp_run(closed_port(), results)
    assert run.start(defer=True) is True
    Poller.of(asyncio.get_running_loop()).settle()
    assert results == [CheckResult(ok=False, error="connect: connection refused")]


async def test_a_deferred_connect_still_in_progress_gets_its_timer_at_settle(
    full_listener: socket.socket,
) -> None:
    results: list[CheckResult] = []
    run = tcp_run(full_listener.getsockname()[1], results, connect_timeout=0.2)
    loop = asyncio.get_running_loop()
    before = loop.time()
    assert run.start(defer=True) is True
    Poller.of(loop).settle()
    assert results == [] and run.timer is not None
    # counted from the start of the run, not from the settle
    assert before + 0.2 <= run.timer.when() == run.deadline <= loop.time() + 0.2
    async with asyncio.timeout(5):
        while not results:
            await asyncio.sleep(0.02)
    assert results == [CheckResult(ok=False, error="connect timeout after 0.2s")]


async def test_settle_arms_the_timers_of_the_others_when_a_result_callback_raises(
    listener: socket.socket, full_listener: socket.socket
) -> None:
    def boom(result: CheckResult) -> None:
        raise RuntimeError("callback bug")

    loop = asyncio.get_running_loop()
    over = tcp_run(listener.getsockname()[1], [])
    over.done = boom
    waiting = tcp_run(full_listener.getsockname()[1], [], connect_timeout=30)
    assert over.start(defer=True) and waiting.start(defer=True)
    with pytest.raises(RuntimeError, match="callback bug"):
        Poller.of(loop).settle()
    assert waiting.timer is not None  # never left without a timeout
    waiting.cancel()
    assert waiting.timer is None and Poller.of(loop).pending == []


async def test_a_run_started_without_defer_arms_its_timer_at_once(
    full_listener: socket.socket,
) -> None:
    results: list[CheckResult] = []
    run = tcp_run(full_listener.getsockname()[1], results, connect_timeout=30)
    assert run.start() is False
    assert run.timer is not None
    assert Poller.of(asyncio.get_running_loop()).pending == []
    run.cancel()


class _Half(random.Random):
    """Every warmup jitter 0.5: a checker's first run is at half its warmup."""

    def random(self) -> float:
        return 0.5


async def test_a_checker_due_before_the_engine_timer_moves_the_timer_forward(
    listener: socket.socket,
) -> None:
    """The slots wait in the engine's heap under one loop timer: a checker added with an
    earlier slot, and one re-armed far away while another is due soon, must not wait
    for the later slot."""
    port = listener.getsockname()[1]

    def server(name: str, warmup: float) -> RealServer:
        check = TcpCheck(delay_loop=60, warmup=warmup)
        return RealServer(address="127.0.0.1", port=port, name=name, checks=(check,))

    def runs(name: str) -> int:
        return engine.health(name).checks[0].counters.runs

    async def ran(name: str) -> None:
        async with asyncio.timeout(10):  # "late" runs after 60 s, the next runs later
            while runs(name) < 1:
                await asyncio.sleep(0.02)

    engine = CheckEngine([server("late", 120), server("soon", 0.02)], rng=_Half())
    await engine.start()
    try:
        await ran("soon")  # then re-armed 60 s on, while "late" waits
        await engine.add_server(server("next", 0.4))  # the earliest now
        await ran("next")
        assert (runs("soon"), runs("late")) == (1, 0)
    finally:
        await engine.stop()
