"""TCP, UDP, DNS and SMTP probes: one non-blocking socket per run, nothing else.

Every probe is a small object built once per checker (addresses, request bytes and
compiled patterns are prepared up front) whose ``run()`` coroutine does one check and
returns a :class:`CheckResult` without raising for the server's failures. Sockets are
created non-blocking with the checker's ``fwmark`` (SO_MARK), ``bind_if``
(SO_BINDTODEVICE) and ``bindto``/``bind_port`` applied; addresses are always numeric,
so nothing ever resolves a name. Each wait is bounded by ``asyncio.timeout``; the engine
adds a hard limit around the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import socket
from collections.abc import Callable
from typing import Any

from .core import CheckResult
from .dns import DnsQuery, DnsReject, check_response
from .fast import FastTcpRun
from .settings import DnsCheck, NetCheck, RealServer, SmtpCheck, TcpCheck, UdpCheck
from .sockets import Endpoint, close, connect, fail, open_socket, os_error

__all__ = [
    "DnsProbe",
    "Endpoint",
    "SmtpProbe",
    "TcpProbe",
    "UdpProbe",
    "fail",
    "open_socket",
    "os_error",
]


# Linux values Python 3.11 does not export.
class TcpProbe:
    """TCP_CHECK: connect and close."""

    __slots__ = ("check", "endpoint")

    def __init__(self, check: TcpCheck, server: RealServer) -> None:
        self.check = check
        self.endpoint = Endpoint.for_check(check, server)

    async def run(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        sock = await connect(loop, self.check, self.endpoint)
        if isinstance(sock, CheckResult):
            return sock
        close(sock, self.check)
        return CheckResult(ok=True)

    def make_run(self, loop: asyncio.AbstractEventLoop, done: Callable[[CheckResult], None]) -> Any:
        """The callback-driven run the engine prefers (:mod:`.fast`)."""
        return FastTcpRun(loop, self.check, self.endpoint, done)


def _udp_socket(check: NetCheck, endpoint: Endpoint) -> socket.socket | CheckResult:
    try:
        sock = open_socket(check, endpoint.family, socket.SOCK_DGRAM)
    except OSError as exc:
        return fail(os_error("socket setup (bindto/bind_port/bind_if/fwmark)", exc))
    try:
        sock.connect(endpoint.sockaddr)  # UDP: only sets the peer; never blocks
    except OSError as exc:
        sock.close()
        return fail(os_error("connect", exc))
    return sock


def _udp_error(what: str, exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return f"{what}: port unreachable (ICMP)"
    return os_error(what, exc)


class UdpProbe:
    """UDP_CHECK; see :class:`UdpCheck` for the reply rules."""

    def __init__(self, check: UdpCheck, server: RealServer) -> None:
        self.check = check
        self.endpoint = Endpoint.for_check(check, server)
        self.pattern = check.reply_pattern or b""
        self.mask = check.reply_mask or b"\xff" * len(self.pattern)

    async def run(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        check = self.check
        sock = _udp_socket(check, self.endpoint)
        if isinstance(sock, CheckResult):
            return sock
        payload = check.payload if check.payload is not None else random.randbytes(16)
        try:
            await loop.sock_sendall(sock, payload)
            async with asyncio.timeout(check.connect_timeout):
                reply = await loop.sock_recv(sock, check.max_reply_length + 1)
        except TimeoutError:
            if check.require_reply:
                return fail(f"no reply within {check.connect_timeout:g}s")
            return CheckResult(ok=True)  # no ICMP error: keepalived counts this as up
        except OSError as exc:
            return fail(_udp_error("udp", exc))
        finally:
            sock.close()
        if not check.require_reply:
            return CheckResult(ok=True)
        return self.judge(reply)

    def judge(self, reply: bytes) -> CheckResult:
        check = self.check
        n = len(reply)
        if not check.min_reply_length <= n <= check.max_reply_length:
            return fail(
                f"reply of {n} bytes outside {check.min_reply_length}..{check.max_reply_length}"
            )
        for i in range(min(n, len(self.pattern))):
            if (reply[i] ^ self.pattern[i]) & self.mask[i]:
                return fail(f"reply does not match the pattern at byte {i}")
        return CheckResult(ok=True)


class DnsProbe:
    """DNS_CHECK over UDP; waits past stray datagrams until a verdict or the timeout."""

    MAX_DATAGRAMS = 64  # per run: a flood of strays cannot keep us busy

    def __init__(self, check: DnsCheck, server: RealServer) -> None:
        self.check = check
        self.endpoint = Endpoint.for_check(check, server)

    async def run(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        check = self.check
        query = DnsQuery(random.getrandbits(16), check.query_name, check.qtype)
        sock = _udp_socket(check, self.endpoint)
        if isinstance(sock, CheckResult):
            return sock
        last: DnsReject | None = None
        try:
            await loop.sock_sendall(sock, query.pack())
            async with asyncio.timeout(check.connect_timeout):
                for _ in range(self.MAX_DATAGRAMS):
                    data = await loop.sock_recv(sock, 4096)
                    verdict = check_response(query, data, require_answer=check.require_answer)
                    if isinstance(verdict, DnsReject):
                        last = verdict
                        continue
                    if verdict.ok:
                        return CheckResult(ok=True)
                    return fail(f"{check.type} {check.query_name}: {verdict.reason}")
                return fail(f"no usable answer in {self.MAX_DATAGRAMS} datagrams ({last})")
        except TimeoutError:
            extra = f"; ignored a datagram: {last}" if last else ""
            return fail(f"no answer within {check.connect_timeout:g}s{extra}")
        except OSError as exc:
            return fail(_udp_error("dns", exc))
        finally:
            sock.close()


class _Lines:
    """SMTP replies off a non-blocking socket: ``(code, text)`` of a whole (multi-line)
    reply, each wait bounded by the timeout, each reply by MAX bytes."""

    MAX = 8192

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float):
        self.loop = loop
        self.sock = sock
        self.timeout = timeout
        self.buf = b""

    async def reply(self) -> tuple[int, str]:
        lines: list[bytes] = []
        async with asyncio.timeout(self.timeout):
            while True:
                while b"\n" not in self.buf:
                    if len(self.buf) > self.MAX:
                        raise ValueError("reply line too long")
                    data = await self.loop.sock_recv(self.sock, 4096)
                    if not data:
                        raise ConnectionError("connection closed by the server")
                    self.buf += data
                line, _, self.buf = self.buf.partition(b"\n")
                line = line.rstrip(b"\r")
                lines.append(line)
                if len(line) < 3 or not line[:3].isdigit():
                    raise ValueError(f"not an SMTP reply: {line[:40]!r}")
                if len(line) == 3 or line[3:4] == b" ":
                    text = b" ".join(x[4:] for x in lines).decode("utf-8", "replace")
                    return int(line[:3]), text
                if line[3:4] != b"-" or sum(map(len, lines)) > self.MAX:
                    raise ValueError(f"not an SMTP reply: {line[:40]!r}")


class SmtpProbe:
    """SMTP_CHECK: banner 220, HELO -> 250, QUIT (its answer is read but not judged)."""

    def __init__(self, check: SmtpCheck, server: RealServer, default_helo: str) -> None:
        self.check = check
        self.endpoint = Endpoint.for_check(check, server)
        self.helo = f"HELO {check.helo_name or default_helo}\r\n".encode()

    async def run(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        check = self.check
        sock = await connect(loop, check, self.endpoint)
        if isinstance(sock, CheckResult):
            return sock
        lines = _Lines(loop, sock, check.connect_timeout)
        step = "banner"
        try:
            code, text = await lines.reply()
            if code != 220:
                return fail(f"banner {code} {text[:60]}, want 220")
            step = "HELO"
            await loop.sock_sendall(sock, self.helo)
            code, text = await lines.reply()
            if code != 250:
                return fail(f"HELO answered {code} {text[:60]}, want 250")
            step = "QUIT"
            await loop.sock_sendall(sock, b"QUIT\r\n")
            with contextlib.suppress(OSError, ValueError, TimeoutError):
                await lines.reply()
            return CheckResult(ok=True)
        except TimeoutError:
            return fail(f"{step}: no reply within {check.connect_timeout:g}s")
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                return fail(os_error(step, exc))
            return fail(f"{step}: {exc}")
        finally:
            close(sock, check)
