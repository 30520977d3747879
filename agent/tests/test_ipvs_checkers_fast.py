"""The callback-driven TCP run and its poller (vigil.ipvs.checkers.fast) on loopback: a
run started with ``defer`` finishes in :meth:`Poller.settle` when its connect is already
over, and only a run still connecting gets its connect timer there."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from vigil.ipvs.checkers import CheckResult, RealServer, TcpCheck
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
