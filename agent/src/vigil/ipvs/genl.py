"""IPVS requests over a plain generic netlink socket, replies decoded with ``struct``.

pyroute2 opens the socket and resolves the IPVS family. Its asyncio socket decoded every
attribute of every reply through several layers of Python objects, and a drift check's
dump is one reply per service and destination: under QEMU TCG the full dump of 250
services was about half of the agent's busy time at 25 checks a second (a py-spy profile
in the IPVS VM). Here a request is encoded and a reply split into its attributes with
``struct``, and an attribute is decoded when it is asked for, with the same names and
values as pyroute2 gives (``get_attr``), so :func:`vigil.ipvs.kernel.parse_service` and
its siblings read either.

The attribute names and types come from the message classes of :mod:`vigil.ipvs.kernel`
(``nla_map``), for encoding and decoding alike; ``tests/test_ipvs_genl.py`` checks every
attribute against pyroute2's own decoding of the same bytes, and the requests byte for
byte against its encoding.

The kernel answers a generic netlink request inside the ``send`` call, so a reply is
normally read at once; only a long dump (the kernel fills the socket's buffer and adds the
rest as it is read) or a busy kernel waits for the socket to be readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable
from typing import Any

from pyroute2.netlink import NLM_F_MULTI, nla

from vigil.incremental import Slicer

log = logging.getLogger("vigil.ipvs")

__all__ = ["Channel", "GenlError", "Reply", "decode_replies", "encode_request"]

NLMSG_ERROR, NLMSG_DONE = 2, 3
_HDR = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
NLMSG_HDRLEN = _HDR.size
_NLA = struct.Struct("=HH")  # nlattr: length, type
_ERR = struct.Struct("=i")
_GENL = struct.Struct("=BBH")  # genlmsghdr: command, version, reserved
_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_RCVBUF = 1 << 20
_READ = 1 << 16  # one netlink datagram: a dump part is at most 32 KiB


class GenlError(Exception):
    """The kernel answered a request with an error (``code``: a positive errno)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _ip4(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw[:4]))


def _ip6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw[:16]))


def _asciiz(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _codec(fmt: str) -> tuple[Any, Any]:
    s = struct.Struct(fmt)
    return (lambda raw: s.unpack_from(raw)[0]), s.pack


def _text(value: str) -> bytes:
    return value.encode() + b"\0"


# pyroute2's scalar types: (decode, encode)
_SCALARS: dict[str, tuple[Any, Any]] = {
    "none": (lambda raw: None, lambda value: b""),
    "uint8": _codec("=B"),
    "uint16": _codec("=H"),
    "uint32": _codec("=I"),
    "uint64": _codec("=Q"),
    "be16": _codec("!H"),
    "cdata": (bytes, bytes),
    "asciiz": (_asciiz, _text),
    "ip4addr": (_ip4, lambda value: ipaddress.IPv4Address(value).packed),
    "ip6addr": (_ip6, lambda value: ipaddress.IPv6Address(value).packed),
}


class _Layout:
    """One attribute set of a pyroute2 message class: name -> (number, decode, encode),
    built once per class from its ``nla_map`` (positional: the index is the number)."""

    _cache: dict[type, _Layout] = {}

    def __init__(self, cls: type) -> None:
        self.by_name: dict[str, tuple[int, Any, Any]] = {}
        for number, (name, kind) in enumerate(cls.nla_map):  # type: ignore[attr-defined]
            codec = _SCALARS.get(kind)
            if codec is None:
                sub = getattr(cls, kind)
                fields = getattr(sub, "fields", None)
                if fields and not getattr(sub, "nla_map", None):
                    codec = _struct_codec(fields)
                else:
                    codec = _nested_codec(sub)
            self.by_name[name] = (number, *codec)

    @classmethod
    def of(cls, msg_class: type) -> _Layout:
        layout = cls._cache.get(msg_class)
        if layout is None:
            layout = cls._cache[msg_class] = cls(msg_class)
        return layout

    def encode(self, items: Iterable[tuple[str, Any]]) -> bytes:
        """Attributes as pyroute2 encodes them (no NLA_F_NESTED flag, padded to 4)."""
        out = bytearray()
        for name, value in items:
            try:
                number, _, encode = self.by_name[name]
            except KeyError:
                raise ValueError(f"unknown netlink attribute {name!r}") from None
            payload = encode(value)
            out += _NLA.pack(4 + len(payload), number)
            out += payload
            out += bytes(-len(payload) % 4)
        return bytes(out)


def _struct_codec(fields: Any) -> tuple[Any, Any]:
    names = [name for name, _ in fields]
    s = struct.Struct("=" + "".join(fmt for _, fmt in fields))
    return (
        lambda raw: dict(zip(names, s.unpack_from(raw), strict=True)),
        lambda value: s.pack(*(value[n] for n in names)),
    )


def _nested_codec(sub: type) -> tuple[Any, Any]:
    if not issubclass(sub, nla):
        raise TypeError(f"{sub!r}: not an attribute class")

    def encode(value: Any) -> bytes:
        items = value["attrs"] if isinstance(value, dict) else value
        return _Layout.of(sub).encode(items)

    return (lambda raw: Attrs(raw, sub)), encode


def encode_request(
    cls: type, family: int, flags: int, seq: int, cmd: int, version: int,
    attrs: Iterable[tuple[str, Any]],
) -> bytes:  # fmt: skip
    """One request of message class ``cls``: its top-level ``attrs`` as (name, value)."""
    body = _GENL.pack(cmd, version, 0) + _Layout.of(cls).encode(attrs)
    return _HDR.pack(_HDR.size + len(body), family, flags, seq, 0) + body


class Attrs:
    """A set of attributes, split at once and decoded on ``get_attr`` (pyroute2's API)."""

    __slots__ = ("_layout", "_raw")

    def __init__(self, data: bytes, cls: type) -> None:
        self._layout = _Layout.of(cls)
        raw: dict[int, bytes] = {}
        off, end = 0, len(data)
        while off + 4 <= end:
            length, kind = _NLA.unpack_from(data, off)
            if length < 4:
                break
            raw.setdefault(kind & _TYPE_MASK, data[off + 4 : off + length])
            off += (length + 3) & ~3
        self._raw = raw

    def get_attr(self, name: str, default: Any = None) -> Any:
        entry = self._layout.by_name.get(name)
        if entry is None:
            return default
        raw = self._raw.get(entry[0])
        if raw is None:
            return default
        return entry[1](raw)


class Reply(Attrs):
    """One reply message of the family: its command and top-level attributes."""

    __slots__ = ("cmd",)

    def __init__(self, data: bytes, cls: type) -> None:
        self.cmd = data[0]
        super().__init__(data[4:], cls)  # after genlmsghdr: cmd, version, reserved


def decode_replies(
    data: bytes, seq: int, family: int, cls: type
) -> tuple[list[Reply], bool, int | None]:
    """The messages of one datagram that answer request ``seq``: (replies, finished,
    error). ``finished``: the ACK, the error or a dump's DONE has come; other requests'
    messages (one given up half-way) are skipped."""
    replies: list[Reply] = []
    off, end = 0, len(data)
    while off + _HDR.size <= end:
        length, kind, flags, msg_seq, _port = _HDR.unpack_from(data, off)
        if length < _HDR.size or off + length > end:
            break
        body = data[off + _HDR.size : off + length]
        off += (length + 3) & ~3
        if msg_seq != seq:
            continue
        if kind == NLMSG_ERROR:
            code = -_ERR.unpack_from(body)[0]
            return replies, True, code or None
        if kind == NLMSG_DONE:
            code = -_ERR.unpack_from(body)[0] if len(body) >= 4 else 0
            return replies, True, code or None
        if kind == family:
            replies.append(Reply(body, cls))
            if not flags & NLM_F_MULTI:
                return replies, True, None
    return replies, False, None


class Channel:
    """A generic netlink socket for one family: one request at a time (a lock keeps
    concurrent callers' replies apart), sequence numbers of its own.

    A request whose answer is already there completes without ever suspending, so a
    thousand of them (a start, a drift check's dump) would hold the loop, and every VRRP
    advert and check with it: every ``SLICE_S`` of such work the channel yields."""

    def __init__(
        self, sock: socket.socket, family: int, cls: type, slicer: Slicer | None = None
    ) -> None:
        """``sock``: a netlink socket already bound (opened in its namespace by pyroute2
        and duplicated); the channel owns it. ``slicer`` hands the loop back between
        requests and between the parts of a dump (see below)."""
        self.family = family
        self._slicer = slicer or Slicer()
        self.cls = cls
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # the default is enough for most tables
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self._sock = sock
        self._seq = 0
        self._lock = asyncio.Lock()
        #: seconds to wait for the kernel's next datagram once the socket ran dry
        self.reply_timeout = 10.0

    def close(self) -> None:
        self._sock.close()

    async def request(
        self, cmd: int, version: int, attrs: Iterable[tuple[str, Any]], flags: int
    ) -> list[Reply]:
        """Send command ``cmd`` with top-level ``attrs`` and ``flags``; its replies
        (raises GenlError)."""
        async with self._lock:
            await self._slicer.tick()
            self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
            seq = self._seq
            data = encode_request(self.cls, self.family, flags, seq, cmd, version, attrs)
            sock = self._sock
            loop = asyncio.get_running_loop()
            try:
                try:
                    sock.send(data)
                except BlockingIOError:
                    await loop.sock_sendall(sock, data)
                out: list[Reply] = []
                while True:
                    try:
                        data = sock.recv(_READ)
                    except BlockingIOError:
                        data = await self._wait(loop, seq, cmd, len(out))
                    replies, finished, error = decode_replies(data, seq, self.family, self.cls)
                    out += replies
                    if error is not None:
                        raise GenlError(error)
                    if finished:
                        return out
                    await self._slicer.tick()
            except OSError as exc:  # ENOBUFS: replies were lost; the socket closed
                raise GenlError(exc.errno or errno.EIO) from None

    async def _wait(self, loop: asyncio.AbstractEventLoop, seq: int, cmd: int, got: int) -> bytes:
        """The next datagram, within ``reply_timeout``: a reply that never comes must
        fail the request (the caller retries), not hold the channel for ever."""
        try:
            return await asyncio.wait_for(loop.sock_recv(self._sock, _READ), self.reply_timeout)
        except TimeoutError:
            log.warning(
                "netlink: no reply to request %d (command %d) within %g s after %d "
                "message(s); giving it up",
                seq, cmd, self.reply_timeout, got,
            )  # fmt: skip
            raise OSError(errno.ETIMEDOUT, "no reply") from None
