"""Helpers for the transport and GARP namespace tests (no tests here).

- ``in_netns`` runs a function in a short-lived thread that has entered a lab namespace, so
  the test process can own sockets that live in a peer's namespace (a thread's network
  namespace is its own; the sockets keep theirs after the thread ends).
- ``Wire`` is an AF_PACKET capture on a peer's interface: it sees the frames exactly as
  they crossed the veth, Ethernet header included.
- ``DriverProcess`` runs ``test_net_transport_driver.py`` inside a node and talks to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from scapy.layers.l2 import Ether

from tests.lab.lab import Lab, Node

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
VRRP_PROTO = 112
IPV6_CHECKSUM = 7
DRIVER = Path(__file__).with_name("test_net_transport_driver.py")
REPO = Path(__file__).resolve().parents[2]

_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread inside namespace ``ns`` and return its result."""
    result: dict[str, Any] = {}

    def worker() -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=worker, name=f"netns-{ns}")
    thread.start()
    thread.join(timeout=10)
    if "error" in result:
        raise result["error"]
    if "value" not in result:
        raise TimeoutError(f"function in namespace {ns} did not finish")
    return result["value"]  # type: ignore[no-any-return]


class Wire:
    """Frames arriving on ``ifname`` in ``node`` (outgoing ones are skipped)."""

    def __init__(self, lab: Lab, node: str, ifname: str = "eth0") -> None:
        self.node = lab.node(node)

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((ifname, ETH_P_ALL))
            sock.setblocking(False)
            return sock

        self.sock = in_netns(self.node.ns, make)
        lab.add_cleanup(self.sock.close)

    def frames(
        self, match: Callable[[Ether], bool], count: int = 1, timeout: float = 5.0
    ) -> list[Ether]:
        """Wait until ``count`` incoming frames satisfy ``match``; return those frames."""
        got: list[Ether] = []
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            remaining = deadline - time.monotonic()
            if len(got) >= count or remaining <= 0:
                break
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                break
            try:
                data, address = self.sock.recvfrom(65535)
            except BlockingIOError:
                continue
            if address[2] == PACKET_OUTGOING:
                continue
            frame = Ether(data)
            if match(frame):
                got.append(frame)
        if len(got) < count:
            raise AssertionError(
                f"saw {len(got)} of {count} expected frames on {self.node.name} within {timeout}s"
            )
        return got


def peer_vrrp_socket(lab: Lab, node: str, family: int, ifname: str = "eth0") -> socket.socket:
    """A plain raw VRRP socket in a peer namespace (kernel defaults unless set here)."""

    def make() -> socket.socket:
        fam = socket.AF_INET if family == 4 else socket.AF_INET6
        sock = socket.socket(fam, socket.SOCK_RAW, VRRP_PROTO)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        if family == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
            sock.setsockopt(
                socket.IPPROTO_IPV6,
                socket.IPV6_MULTICAST_IF,
                socket.if_nametoindex(ifname),
            )
        return sock

    sock = in_netns(lab.node(node).ns, make)
    lab.add_cleanup(sock.close)
    return sock


def vrrp_message(vrid: int, priority: int = 100, addresses: bytes = bytes(4)) -> bytes:
    """A VRRPv3 advert (checksum left 0: the transport does not look past the VRID)."""
    count = len(addresses) // (4 if len(addresses) % 16 else 16)
    return bytes([0x31, vrid, priority, count, 0, 100, 0, 0]) + addresses


class DriverProcess:
    """The transport driver running inside a node; commands and events as JSON lines."""

    def __init__(self, lab: Lab, node: str) -> None:
        self.node: Node = lab.node(node)
        argv = ["ip", "netns", "exec", self.node.ns, sys.executable, str(DRIVER)]
        self.stderr_path = lab.unique_path(lab.workdir / "logs", f"{node}.driver", ".err")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=REPO,
            start_new_session=True,
        )
        lab.add_cleanup(self.close)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ids = iter(range(1, 1_000_000))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_event(lambda e: e["event"] == "ready", timeout=15)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            (self.replies if "reply" in message else self.events).put(message)

    def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        """Send a command and return its reply (raises if the driver reports an error)."""
        assert self.proc.stdin is not None
        ident = next(self._ids)
        self.proc.stdin.write((json.dumps({"op": op, "id": ident, **args}) + "\n").encode())
        self.proc.stdin.flush()
        try:
            reply = self.replies.get(timeout=10)
        except queue.Empty:
            raise AssertionError(f"driver gave no reply to {op} {args}: {self.stderr()}") from None
        assert reply["reply"] == ident
        if not reply["ok"]:
            raise AssertionError(f"driver {op} {args} failed: {reply['error']}")
        return reply

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first event satisfying ``match`` (others seen meanwhile are dropped)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        for _ in range(100_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if match(event):
                return event
            seen.append(event)
        raise AssertionError(
            f"no matching driver event within {timeout}s; saw {seen[-5:]}; {self.stderr()}"
        )

    def drain(self) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(queue.Empty):
            for _ in range(100_000):
                out.append(self.events.get_nowait())
        return out

    def stderr(self) -> str:
        return "stderr: " + self.stderr_path.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._stderr.close()
