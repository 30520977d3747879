"""Sockets inside lab namespaces, and a frame capture with kernel timestamps.

``in_netns(ns, fn)`` runs ``fn`` in a short-lived thread that has joined the namespace, so
a socket created there belongs to the namespace for good while the test's own thread never
leaves its namespace. ``Capture`` uses it for an AF_PACKET socket on a node's interface:
the socket buffers frames from the moment it is bound, so nothing is lost between an
action and the test reading the frames, and SO_TIMESTAMP gives each frame the time the
kernel received it (what a GARP-burst or advert-interval check needs). ``bpf`` (a tcpdump
expression, compiled by ``tcpdump -ddd``) filters in the kernel, so a capture on a flooded
segment only wakes up for the frames it wants.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .lab import Lab, NodeRef

__all__ = ["Capture", "Frame", "compile_bpf", "in_netns"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
SO_TIMESTAMP = 29
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` inside network namespace ``ns`` and return its result (or raise)."""
    result: list[Any] = []

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            result.append(LookupError(f"no network namespace {ns!r} (is the lab closed?)"))
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result.append(OSError(err, f"setns({ns}): {os.strerror(err)}"))
                return
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            result.append(exc)
        finally:
            os.close(fd)

    thread = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join(timeout=30)
    if not result:
        raise TimeoutError(f"in_netns({ns}): the call did not return within 30 s")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def compile_bpf(expression: str) -> list[tuple[int, int, int, int]]:
    """A tcpdump filter expression as classic BPF instructions (code, jt, jf, k).

    Compiled for Ethernet frames by ``tcpdump -ddd`` (a Debian package the lab needs
    anyway); a bad expression raises ValueError with tcpdump's message.
    """
    res = subprocess.run(
        ["tcpdump", "-ddd", "-y", "EN10MB", expression],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    lines = res.stdout.split("\n")
    if res.returncode != 0 or not lines or not lines[0].strip().isdigit():
        raise ValueError(f"bpf filter {expression!r}: {(res.stderr or res.stdout).strip()}")
    count = int(lines[0])
    program = [tuple(int(x) for x in line.split()) for line in lines[1 : count + 1]]
    if len(program) != count or any(len(ins) != 4 for ins in program):
        raise ValueError(f"bpf filter {expression!r}: unexpected tcpdump output")
    return [(ins[0], ins[1], ins[2], ins[3]) for ins in program]


def attach_bpf(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: the kernel drops what ``program`` rejects before it is queued."""
    raw = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


@dataclass(frozen=True)
class Frame:
    """One captured frame: kernel receive time (wall clock), raw bytes, direction."""

    time: float
    data: bytes
    outgoing: bool

    def scapy(self) -> Any:
        """The frame decoded by scapy (imported on use: scapy is a test dependency)."""
        from scapy.layers.l2 import Ether

        return Ether(self.data)


class Capture:
    """Frames on ``node``/``ifname`` from creation on; closed with the lab.

    ``outgoing=False`` (the default) keeps only frames the node received. ``bpf``: a
    tcpdump expression; only matching frames are queued (the filter is attached before
    the socket is bound, so nothing else slips in).
    """

    def __init__(
        self,
        lab: Lab,
        node: NodeRef,
        ifname: str = "eth0",
        *,
        outgoing: bool = False,
        bpf: str | None = None,
    ) -> None:
        n = lab.node(node)
        program = compile_bpf(bpf) if bpf else None

        def open_socket() -> socket.socket:
            # Protocol 0: no frame is queued until bind, after the filter is in place.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
            if program is not None:
                attach_bpf(sock, program)
            sock.bind((ifname, ETH_P_ALL))
            sock.setblocking(False)
            return sock

        self.where = f"{n.name}/{ifname}"
        self.outgoing = outgoing
        self.sock = in_netns(n.ns, open_socket)
        lab.add_cleanup(self.close)
        self.frames: list[Frame] = []

    def close(self) -> None:
        self.sock.close()

    def read(self, timeout: float = 0.0) -> list[Frame]:
        """Collect what is queued (waiting up to ``timeout`` for the first frame)."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return self.frames
        for _ in range(100_000):
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65535, 64)
            except BlockingIOError:
                break
            out = addr[2] == PACKET_OUTGOING
            if out and not self.outgoing:
                continue
            stamp = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    sec, usec = struct.unpack("qq", value[:16])
                    stamp = sec + usec / 1e6
            self.frames.append(Frame(stamp, data, out))
        return self.frames

    def wait(
        self, match: Callable[[Frame], bool], count: int = 1, timeout: float = 5.0
    ) -> list[Frame]:
        """Read until ``count`` captured frames satisfy ``match``; return them."""
        deadline = time.monotonic() + timeout
        got: list[Frame] = []
        for _ in range(100_000):
            got = [f for f in self.frames if match(f)]
            remaining = deadline - time.monotonic()
            if len(got) >= count or remaining <= 0:
                break
            self.read(min(remaining, 0.1))
        if len(got) < count:
            raise AssertionError(
                f"saw {len(got)} of {count} expected frames on {self.where} within {timeout}s "
                f"({len(self.frames)} frames captured in all)"
            )
        return got
