"""PING_CHECK: ICMP / ICMPv6 echo over one shared raw socket per (family, fwmark).

One socket for all pings, not one per ping: every raw ICMP socket gets a copy of every
ICMP packet the host receives, so a thousand of them would cost a thousand copies per
reply. The shared socket has a kernel type filter (ICMP_FILTER / ICMP6_FILTER: echo
replies and the errors that quote our echoes) and demultiplexes by our identifier and a
per-ping sequence number, checks the reply's source and an 8-byte cookie in the payload,
and fails a ping at once when an ICMP error (unreachable, time exceeded) quotes it.
``bindto`` / ``bind_if`` go into each datagram as IP_PKTINFO / IPV6_PKTINFO.
Needs CAP_NET_RAW (vigild runs as root for IPVS anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import socket
import struct
from dataclasses import dataclass

from .core import CheckResult
from .settings import PingCheck, RealServer
from .sockets import SO_MARK, fail, os_error

__all__ = ["PingProbe", "Pinger", "Pingers", "icmp_checksum"]

SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
IP_PKTINFO = 8
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)

ECHO4, REPLY4, UNREACH4, TIMXCEED4 = 8, 0, 3, 11
ECHO6, REPLY6, UNREACH6, TIMXCEED6 = 128, 129, 1, 3
_ECHO = struct.Struct("!BBHHH")
PAYLOAD_PAD = b"vigil-ping-check" * 2  # 32 bytes after the cookie: 56-byte payload like ping
MAX_PER_WAKEUP = 256


def icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _filter4(allowed: tuple[int, ...]) -> bytes:
    mask = 0xFFFFFFFF
    for t in allowed:
        mask &= ~(1 << t)
    return struct.pack("=I", mask)


def _filter6(allowed: tuple[int, ...]) -> bytes:
    words = [0xFFFFFFFF] * 8
    for t in allowed:
        words[t >> 5] &= ~(1 << (t & 31))
    return struct.pack("=8I", *words)


@dataclass
class _Pending:
    dst: bytes  # packed destination address
    cookie: bytes
    future: asyncio.Future[str | None]  # None: reply; str: the error


class Pinger:
    """One raw ICMP socket of a family (and mark), shared by every ping of that kind."""

    def __init__(self, family: int, fwmark: int | None = None) -> None:
        self.family = family
        self.v6 = family == socket.AF_INET6
        proto = socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP
        self.sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_NONBLOCK, proto)
        try:
            self.sock.setblocking(False)
            if self.v6:
                allowed6 = (REPLY6, UNREACH6, TIMXCEED6)
                self.sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _filter6(allowed6))
            else:
                allowed4 = (REPLY4, UNREACH4, TIMXCEED4)
                self.sock.setsockopt(SOL_RAW, ICMP_FILTER, _filter4(allowed4))
            if fwmark is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_MARK, fwmark)
        except BaseException:
            self.sock.close()
            raise
        self.ident = random.getrandbits(16)
        self._seq = random.getrandbits(16)
        self._pending: dict[int, _Pending] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.strays = 0

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        for p in self._pending.values():
            if not p.future.done():
                p.future.cancel()
        self._pending.clear()
        self.sock.close()

    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            loop.add_reader(self.sock.fileno(), self._readable)
            self._loop = loop
        return loop

    def _next_seq(self) -> int:
        for _ in range(65536):
            self._seq = (self._seq + 1) & 0xFFFF
            if self._seq not in self._pending:
                return self._seq
        raise RuntimeError("65536 pings in flight on one socket")

    async def ping(
        self, dst: str, timeout: float, source: str | None = None, ifindex: int = 0
    ) -> str | None:
        """Send one echo and wait: None for a reply, else why not (text)."""
        loop = self._attach()
        seq = self._next_seq()
        cookie = os.urandom(8)
        packed = ipaddress.ip_address(dst).packed
        echo_type = ECHO6 if self.v6 else ECHO4
        body = cookie + PAYLOAD_PAD
        header = _ECHO.pack(echo_type, 0, 0, self.ident, seq)
        if not self.v6:  # the kernel computes the ICMPv6 checksum itself
            header = _ECHO.pack(echo_type, 0, icmp_checksum(header + body), self.ident, seq)
        ancillary = []
        if source is not None or ifindex:
            if self.v6:
                spec = ipaddress.ip_address(source).packed if source else bytes(16)
                ancillary.append(
                    (socket.IPPROTO_IPV6, IPV6_PKTINFO, spec + struct.pack("=i", ifindex))
                )
            else:
                spec = ipaddress.ip_address(source).packed if source else bytes(4)
                ancillary.append(
                    (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i", ifindex) + spec + bytes(4))
                )
        future: asyncio.Future[str | None] = loop.create_future()
        self._pending[seq] = _Pending(packed, cookie, future)
        try:
            try:
                addr = (dst, 0, 0, 0) if self.v6 else (dst, 0)
                self.sock.sendmsg([header + body], ancillary, 0, addr)
            except OSError as exc:
                return os_error("send echo", exc)
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                return f"no echo reply within {timeout:g}s"
        finally:
            self._pending.pop(seq, None)

    def _readable(self) -> None:
        for _ in range(MAX_PER_WAKEUP):
            try:
                data, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            with contextlib.suppress(struct.error, ValueError, IndexError):
                self._dispatch(data, addr[0])

    def _dispatch(self, data: bytes, src: str) -> None:
        # raw IPv4 sockets see the IP header; IPv6 ones do not
        icmp = data if self.v6 else data[(data[0] & 0x0F) * 4 :]
        if len(icmp) < 8:
            return
        typ, code, _, ident, seq = _ECHO.unpack_from(icmp)
        reply, unreach, exceeded = (
            (REPLY6, UNREACH6, TIMXCEED6) if self.v6 else (REPLY4, UNREACH4, TIMXCEED4)
        )
        if typ == reply:
            p = self._pending.get(seq)
            if ident != self.ident or p is None or p.future.done():
                self.strays += 1
                return
            src_packed = ipaddress.ip_address(src.split("%", 1)[0]).packed
            if src_packed != p.dst or icmp[8:16] != p.cookie:
                self.strays += 1
                return
            p.future.set_result(None)
            return
        if typ not in (unreach, exceeded):
            return
        inner = icmp[8:]  # the quoted datagram: IP header, then our echo header
        if self.v6:
            quoted_dst, echo = inner[24:40], inner[40:48]
        else:
            ihl = (inner[0] & 0x0F) * 4
            quoted_dst, echo = inner[16:20], inner[ihl : ihl + 8]
        if len(echo) < 8:
            return
        etype, _, _, eident, eseq = _ECHO.unpack_from(echo)
        p = self._pending.get(eseq)
        if etype != (ECHO6 if self.v6 else ECHO4) or eident != self.ident or p is None:
            return
        if quoted_dst != p.dst or p.future.done():
            return
        what = "destination unreachable" if typ == unreach else "time exceeded"
        p.future.set_result(f"ICMP {what} (code {code}) from {src}")


class Pingers:
    """The shared sockets, opened on first use and closed with the engine."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int | None], Pinger] = {}

    def get(self, family: int, fwmark: int | None) -> Pinger:
        key = (family, fwmark)
        pinger = self._by_key.get(key)
        if pinger is None:
            pinger = self._by_key[key] = Pinger(family, fwmark)
        return pinger

    def close(self) -> None:
        for pinger in self._by_key.values():
            pinger.close()
        self._by_key.clear()


class PingProbe:
    def __init__(self, check: PingCheck, server: RealServer, pingers: Pingers) -> None:
        self.check = check
        self.dst = str(ipaddress.ip_address(check.connect_ip or server.address))
        self.family = socket.AF_INET6 if ":" in self.dst else socket.AF_INET
        self.pingers = pingers
        self.ifindex = socket.if_nametoindex(check.bind_if) if check.bind_if else 0

    async def run(self) -> CheckResult:
        try:
            pinger = self.pingers.get(self.family, self.check.fwmark)
        except OSError as exc:
            return fail(os_error("raw ICMP socket (needs CAP_NET_RAW)", exc))
        error = await pinger.ping(
            self.dst, self.check.connect_timeout, self.check.bindto, self.ifindex
        )
        return CheckResult(ok=True) if error is None else fail(error)
