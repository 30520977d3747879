"""Sockets for network checks: how a check's socket is opened, bound, marked and closed.

Shared by every network probe (TCP, UDP, DNS, SMTP, HTTP) and their callback-driven fast
paths, so none of them imports another.
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from .core import CheckResult
from .settings import NetCheck, RealServer

IP_BIND_ADDRESS_NO_PORT = 24
SO_MARK = getattr(socket, "SO_MARK", 36)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)

DEFAULT_PORTS = {"dns": 53, "smtp": 25}
_LINGER_RST = struct.pack("ii", 1, 0)
_STREAM_FLAGS = socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC


def fail(error: str) -> CheckResult:
    return CheckResult(ok=False, error=error)


def os_error(what: str, exc: OSError) -> str:
    """``connect: connection refused`` from an OSError (errno names, lower case)."""
    if isinstance(exc, TimeoutError):
        return f"{what}: timed out"
    # errno's text, not asyncio's "Connect call failed (...)"
    text = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return f"{what}: {text[:1].lower()}{text[1:]}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a checker connects: the real server's address and port, or the overrides."""

    family: int
    address: str
    port: int
    sockaddr: tuple[str, int] | tuple[str, int, int, int]

    @classmethod
    def for_check(cls, check: NetCheck, server: RealServer) -> Endpoint:
        address = check.connect_ip or server.address
        ip = ipaddress.ip_address(address)
        port = check.connect_port or server.port or DEFAULT_PORTS.get(check.KIND, 0)
        if ip.version == 6:
            scope = socket.if_nametoindex(check.bind_if) if check.bind_if else 0
            return cls(socket.AF_INET6, str(ip), port, (str(ip), port, 0, scope))
        return cls(socket.AF_INET, str(ip), port, (str(ip), port))

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.family == socket.AF_INET6 else self.address
        return f"{host}:{self.port}"


def open_socket(check: NetCheck, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A non-blocking socket with the checker's mark, device and source applied."""
    # SOCK_NONBLOCK makes Python's socket non-blocking already (timeout 0): no fcntl
    sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
    _setup(sock, check, family, kind)
    return sock


def open_stream(check: NetCheck, family: int) -> _socket.socket:
    """:func:`open_socket` for TCP as the bare C socket type, for the callback-driven
    runs that need none of :class:`socket.socket`'s Python layer (its ``__init__`` and
    ``close`` are Python functions: two calls per check saved)."""
    sock = _socket.socket(family, _STREAM_FLAGS)
    plain = check.fwmark is None and check.bind_if is None
    if not plain or check.bindto is not None or check.bind_port is not None:
        _setup(sock, check, family, socket.SOCK_STREAM)
    return sock


def _setup(sock: _socket.socket, check: NetCheck, family: int, kind: int) -> None:
    try:
        if check.fwmark is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, check.fwmark)
        if check.bind_if is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, check.bind_if.encode())
        if check.bindto is not None or check.bind_port is not None:
            source = check.bindto or ("::" if family == socket.AF_INET6 else "0.0.0.0")
            if check.bind_port is None and kind == socket.SOCK_STREAM:
                # pick the port at connect(): the 4-tuple, not the address, must be unique
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            if check.bind_port is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((source, check.bind_port or 0))
    except BaseException:
        sock.close()
        raise


async def connect(
    loop: asyncio.AbstractEventLoop, check: NetCheck, endpoint: Endpoint
) -> socket.socket | CheckResult:
    """A connected TCP socket, or the failed result (refused, timed out, bind error)."""
    try:
        sock = open_socket(check, endpoint.family, socket.SOCK_STREAM)
    except OSError as exc:
        return fail(os_error("socket setup (bindto/bind_port/bind_if/fwmark)", exc))
    try:
        async with asyncio.timeout(check.connect_timeout):
            await loop.sock_connect(sock, endpoint.sockaddr)
    except TimeoutError:
        close(sock, check)
        return fail(f"connect timeout after {check.connect_timeout:g}s")
    except OSError as exc:
        close(sock, check)
        return fail(os_error("connect", exc))
    except BaseException:
        close(sock, check)
        raise
    return sock


def close(sock: _socket.socket, check: NetCheck) -> None:
    """Close; with a fixed ``bind_port`` reset the connection so the same 4-tuple can be
    used again at the next run instead of waiting out TIME_WAIT."""
    if check.bind_port is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.close()
