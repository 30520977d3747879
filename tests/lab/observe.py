"""Watching a running lab from outside: kernel addresses, agents' event streams, /proc.

Long-running tools (the chaos soak, the socket fuzzer) need to know *when* things happen
without polling subprocesses many times a second:

- ``AddressWatch``: one rtnetlink socket per namespace, subscribed to address events and
  read by one thread; it keeps the addresses of every watched namespace and a timeline of
  changes, each stamped with ``time.monotonic()`` when it was read (CLOCK_MONOTONIC is the
  same in every namespace, so it lines up with a probe's and an injector's times).
- ``EventFollower``: follows an agent's ``/v1/events`` Server-Sent Events in a thread,
  reconnects after the agent restarts (a new pid starts again from seq 0) and keeps every
  event with the time it arrived.
- ``proc_sample(pid)``: open file descriptors, RSS and threads of a process, and the
  members of its process group (what a leak check compares at start and end).

Everything here is bounded: threads stop on ``close()`` (the lab calls it) and wake at
least every ``poll`` seconds to notice.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.client import ApiClient, ApiError, ApiUnreachable

from .capture import in_netns
from .procs import group_members

if TYPE_CHECKING:
    from .lab import Lab, NodeRef

__all__ = [
    "AddrChange",
    "AddressWatch",
    "EventFollower",
    "ProcSample",
    "SeenEvent",
    "proc_sample",
]

NETLINK_ROUTE = 0
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")
#: at most this many messages are handled per wake-up of the watch thread
MAX_MESSAGES_PER_WAKEUP = 10_000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AddrChange:
    """An address appeared (``present``) or went away in a namespace at ``time``."""

    time: float
    node: str
    address: IPAddress
    present: bool


def _parse_addr_messages(data: bytes) -> Iterable[tuple[int, IPAddress | None]]:
    """(message type, address) for each message of a netlink datagram (None: not one)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        body = data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3
        if mtype not in (RTM_NEWADDR, RTM_DELADDR):
            yield mtype, None
            continue
        if len(body) < _IFADDRMSG.size:
            continue
        family = body[0]
        found: dict[int, bytes] = {}
        pos = _IFADDRMSG.size
        while pos + _RTATTR.size <= len(body):
            rta_len, rta_type = _RTATTR.unpack_from(body, pos)
            if rta_len < _RTATTR.size:
                break
            found[rta_type] = body[pos + _RTATTR.size : pos + rta_len]
            pos += (rta_len + 3) & ~3
        raw = found.get(IFA_LOCAL) if family == socket.AF_INET else None
        raw = raw or found.get(IFA_ADDRESS)
        if raw is None:
            continue
        if family == socket.AF_INET and len(raw) == 4:
            yield mtype, ipaddress.IPv4Address(raw)
        elif family == socket.AF_INET6 and len(raw) == 16:
            yield mtype, ipaddress.IPv6Address(raw)


def _dump_addresses(sock: socket.socket, timeout: float = 5.0) -> set[IPAddress]:
    """Every address in the socket's namespace, by an RTM_GETADDR dump."""
    request = _NLMSGHDR.pack(
        _NLMSGHDR.size + _IFADDRMSG.size, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
    ) + _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    sock.send(request)
    found: set[IPAddress] = set()
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([sock], [], [], remaining)
        if not ready:
            break
        data = sock.recv(1 << 20)
        for mtype, addr in _parse_addr_messages(data):
            if mtype in (NLMSG_DONE, NLMSG_ERROR):
                return found
            if addr is not None and mtype == RTM_NEWADDR:
                found.add(addr)
    raise TimeoutError(f"address dump did not finish within {timeout}s")


class AddressWatch:
    """The addresses of several lab namespaces, kept current from rtnetlink events.

    ``watch(node)`` adds a namespace; ``present(node)`` is its address set now;
    ``changes`` the timeline; ``on_change`` (optional) is called from the watch thread
    for every change. An overflow of a namespace's event socket is repaired with a fresh
    dump (counted in ``resyncs``).
    """

    def __init__(self, lab: Lab, *, on_change: Callable[[AddrChange], None] | None = None) -> None:
        self.lab = lab
        self.on_change = on_change
        self.changes: list[AddrChange] = []
        self.resyncs = 0
        self._lock = threading.Lock()
        self._present: dict[str, set[IPAddress]] = {}
        self._events: dict[str, socket.socket] = {}
        self._dumpers: dict[str, socket.socket] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        lab.add_cleanup(self.close)

    def watch(self, node: NodeRef) -> None:
        n = self.lab.node(node)

        def open_sockets() -> tuple[socket.socket, socket.socket]:
            events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            events.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            dumper = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            dumper.bind((0, 0))
            return events, dumper

        events, dumper = in_netns(n.ns, open_sockets)
        events.setblocking(False)
        # Subscribed first, dumped second: every change after the dump is queued on the
        # event socket, and replaying queued changes onto the dump ends in the current state.
        now = time.monotonic()
        addresses = _dump_addresses(dumper)
        with self._lock:
            self._events[n.name] = events
            self._dumpers[n.name] = dumper
            self._present[n.name] = set(addresses)
            for addr in sorted(addresses, key=lambda a: (a.version, int(a))):
                self.changes.append(AddrChange(now, n.name, addr, True))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="address-watch", daemon=True)
            self._thread.start()
        else:
            self._wake_w.send(b"x")

    def present(self, node: NodeRef) -> set[IPAddress]:
        name = self.lab.node(node).name
        with self._lock:
            return set(self._present.get(name, ()))

    def holders(self, address: str | IPAddress, nodes: Iterable[NodeRef]) -> list[str]:
        """The watched nodes that have ``address`` now (in the order given)."""
        ip = ipaddress.ip_address(str(address).split("/")[0])
        names = [self.lab.node(n).name for n in nodes]
        with self._lock:
            return [n for n in names if ip in self._present.get(n, ())]

    def _apply(self, name: str, mtype: int, addr: IPAddress, now: float) -> None:
        have = self._present.setdefault(name, set())
        present = mtype == RTM_NEWADDR
        if (addr in have) == present:
            return
        if present:
            have.add(addr)
        else:
            have.discard(addr)
        change = AddrChange(now, name, addr, present)
        self.changes.append(change)
        if self.on_change is not None:
            with contextlib.suppress(Exception):
                self.on_change(change)

    def _resync(self, name: str) -> None:
        self.resyncs += 1
        dumper = self._dumpers[name]
        now = time.monotonic()
        try:
            fresh = _dump_addresses(dumper)
        except (OSError, TimeoutError):
            return
        with self._lock:
            have = self._present.setdefault(name, set())
            for addr in have - fresh:
                self._apply(name, RTM_DELADDR, addr, now)
            for addr in fresh - have:
                self._apply(name, RTM_NEWADDR, addr, now)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                socks = {s: name for name, s in self._events.items()}
            try:
                ready, _, _ = select.select([*socks, self._wake_r], [], [], 0.5)
            except (OSError, ValueError):
                return  # closed under us
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(64)
            for sock in ready:
                name = socks.get(sock)
                if name is None:
                    continue
                for _ in range(MAX_MESSAGES_PER_WAKEUP):
                    try:
                        data = sock.recv(1 << 20)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno == errno.ENOBUFS:
                            self._resync(name)
                            continue
                        break
                    now = time.monotonic()
                    with self._lock:
                        for mtype, addr in _parse_addr_messages(data):
                            if addr is not None:
                                self._apply(name, mtype, addr, now)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for sock in (*self._events.values(), *self._dumpers.values()):
                sock.close()
            self._events.clear()
            self._dumpers.clear()
        self._wake_r.close()
        self._wake_w.close()


@dataclass(frozen=True)
class SeenEvent:
    """An agent event as received: when (monotonic), from which agent process, the event."""

    time: float
    node: str
    pid: int | None
    event: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.event.get("kind", ""))


class EventFollower:
    """Follows one agent's event stream in a thread, across restarts of the agent.

    ``socket_path`` is the agent's API socket (the same across restarts). After a
    disconnect it asks ``/v1/health`` for the pid: the same process resumes after the
    last seq seen, a new one is read from its first event. ``events`` holds everything
    seen; ``reconnects`` counts the streams opened after the first.
    """

    def __init__(self, node: str, socket_path: str | Path, *, poll: float = 0.2) -> None:
        self.node = node
        self.client = ApiClient(str(socket_path), timeout=2.0)
        self.poll = poll
        self.events: list[SeenEvent] = []
        self.reconnects = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._last_seq = 0
        self._thread = threading.Thread(target=self._run, name=f"events-{node}", daemon=True)

    def start(self) -> EventFollower:
        self._thread.start()
        return self

    def snapshot(self) -> list[SeenEvent]:
        with self._lock:
            return list(self.events)

    def _current_pid(self) -> int | None:
        status, body = self.client.get("/v1/health")
        if isinstance(body, dict) and isinstance(body.get("pid"), int):
            return int(body["pid"])
        raise ApiUnreachable(f"health answered {status} without a pid")

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                pid = self._current_pid()
                if pid != self._pid:
                    self._pid, self._last_seq = pid, 0
                since = self._last_seq
                if not first:
                    self.reconnects += 1
                first = False
                # The read timeout is above the server's 15 s heartbeat: a silent stream
                # is a stopped agent, and the loop comes back here to ask again.
                for msg in self.client.stream(f"/v1/events?follow=1&since={since}", timeout=20):
                    now = time.monotonic()
                    data = msg.get("data")
                    if isinstance(data, dict) and isinstance(data.get("seq"), int):
                        self._last_seq = max(self._last_seq, int(data["seq"]))
                        with self._lock:
                            self.events.append(SeenEvent(now, self.node, self._pid, data))
                    if self._stop.is_set():
                        return
            except (ApiUnreachable, ApiError, OSError, ValueError) as exc:
                if len(self.errors) < 1000:
                    self.errors.append(f"{time.monotonic():.3f} {exc}")
            self._stop.wait(self.poll)

    def close(self) -> None:
        """Stop following; a stream blocked in a read ends at its timeout (thread is a daemon)."""
        self._stop.set()
        self._thread.join(timeout=0.5)


@dataclass(frozen=True)
class ProcSample:
    """What a leak check compares: fds, RSS (KiB), threads and the process group's size."""

    pid: int
    time: float
    fds: int
    rss_kb: int
    threads: int
    group: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "fds": self.fds,
            "rss_kb": self.rss_kb,
            "threads": self.threads,
            "group_processes": self.group,
        }


def proc_sample(pid: int) -> ProcSample | None:
    """Sample ``pid`` from /proc; None when it is gone."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    values: dict[str, int] = {}
    for line in status.splitlines():
        key, _sep, rest = line.partition(":")
        if key in ("VmRSS", "Threads"):
            values[key] = int(rest.split()[0])
    return ProcSample(
        pid=pid,
        time=time.monotonic(),
        fds=fds,
        rss_kb=values.get("VmRSS", 0),
        threads=values.get("Threads", 0),
        group=len(group_members(os.getpgid(pid))) if _exists(pid) else 0,
    )


def _exists(pid: int) -> bool:
    try:
        os.getpgid(pid)
    except ProcessLookupError:
        return False
    return True
