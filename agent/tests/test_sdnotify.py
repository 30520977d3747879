"""sd_notify against real datagram sockets we bind (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from vigil.sdnotify import SdNotifier


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    d = tempfile.mkdtemp(prefix="vgn", dir="/tmp")
    path = os.path.join(d, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    try:
        yield path, s
    finally:
        s.close()
        os.unlink(path)
        os.rmdir(d)


def recv_lines(s: socket.socket) -> list[str]:
    return s.recv(4096).decode().split("\n")


def test_ready_status_stopping(listener: tuple[str, socket.socket]) -> None:
    path, s = listener
    n = SdNotifier(path)
    assert n.enabled
    assert n.ready("running: 2 instances")
    assert recv_lines(s) == ["READY=1", "STATUS=running: 2 instances"]
    assert n.status("hello")
    assert recv_lines(s) == ["STATUS=hello"]
    assert n.stopping()
    assert recv_lines(s) == ["STOPPING=1"]


def test_reloading_carries_monotonic_usec(listener: tuple[str, socket.socket]) -> None:
    path, s = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert SdNotifier(path).reloading("reloading")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = recv_lines(s)
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert lines[2] == "STATUS=reloading"


def test_abstract_namespace_socket() -> None:
    name = f"vigil-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(b"\0" + name.encode())
        s.settimeout(5)
        assert SdNotifier("@" + name).ready()
        assert recv_lines(s) == ["READY=1"]


def test_environment_variable_is_used(
    listener: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, s = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert SdNotifier().ready()
    assert recv_lines(s) == ["READY=1"]


def test_without_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SdNotifier()
    assert not n.enabled
    assert n.ready() is False


def test_unreachable_socket_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    n = SdNotifier("/tmp/vigil-no-such-notify-socket")
    assert n.ready() is False
    assert "sd_notify to /tmp/vigil-no-such-notify-socket failed" in caplog.text


def test_watchdog_ping(listener: tuple[str, socket.socket]) -> None:
    path, s = listener
    assert SdNotifier(path).watchdog()
    assert recv_lines(s) == ["WATCHDOG=1"]


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("2000000", None, 1.0),
        ("2000000", "self", 1.0),
        ("2000000", "1", None),  # addressed to another process
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, str(os.getpid()) if value == "self" else value)
    assert SdNotifier("/run/notify").watchdog_interval() == expected
    assert SdNotifier("").watchdog_interval() is None  # no NOTIFY_SOCKET, no watchdog
