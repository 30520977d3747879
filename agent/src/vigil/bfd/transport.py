"""BFD over UDP (RFC 5881 single hop, RFC 5883 multihop): sockets, and the session table.

Two parts, kept apart so the logic can be tested without root:

* :class:`SessionTable` (pure): which session a received packet belongs to. By Your
  Discriminator when it is non-zero (our discriminators are unique on this host), after
  which the packet's source, destination, interface and port kind must still match that
  session; by (peer, local address, interface, single hop or multihop) when it is 0, the
  most specific configured session winning. Remote discriminators play no part in the
  lookup: two peers may well pick the same one (FRR does), and each session keeps its own.
* :class:`UdpTransport` (I/O only): one receiving socket per (family, port) in use, UDP
  3784 for single hop and 4784 for multihop, bound to the wildcard address and reporting
  the TTL / hop limit, the destination address and the arrival interface from ancillary
  data (IP_RECVTTL + IP_PKTINFO, IPV6_RECVHOPLIMIT + IPV6_RECVPKTINFO); and one sending
  socket per session (:class:`UdpSender`), bound to the session's local address (or the
  wildcard) and to a source port in 49152-65535 that stays the same for the session's
  life, sending with TTL / hop limit 255 and TOS/traffic class 0xc0, optionally tied to
  an interface with SO_BINDTODEVICE.

Every datagram carries its arrival time from the kernel (SO_TIMESTAMPNS, converted to
CLOCK_MONOTONIC), so a datagram read a few milliseconds after it arrived still restarts
the detection time from when it arrived. That lets the engine stop waking up for every
datagram when it has enough traffic (:meth:`UdpTransport.set_polling`): it reads them
all (:meth:`UdpTransport.drain`) each time its timer wakes it, at least every few ms.

TTL checks happen in userspace (IP_MINTTL does not apply to UDP here): 255 for single
hop (RFC 5881 5), at least the session's ``min_ttl`` for multihop. They belong to the
runtime, after the lookup, since the limit is per session.

Nothing on the receive path raises: a datagram that cannot be read (truncated, no
ancillary data) is counted in :class:`TransportStats` and dropped. A sender whose socket
cannot be opened (the local address is not there yet) or fails with an error that means
the interface or address went away is closed and reopened at most once per
:data:`REOPEN_RETRY_SECONDS` on the next send; sends never raise either.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from vigil.bfd.packet import ControlPacket, Rejection, RejectReason

__all__ = [
    "DEFAULT_MIN_TTL",
    "BfdDatagram",
    "Sender",
    "SessionKey",
    "SessionTable",
    "Transport",
    "TransportStats",
    "UdpSender",
    "UdpTransport",
    "interface_name",
]

log = logging.getLogger("vigil.bfd.transport")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")

# Socket option numbers Python 3.11's socket module lacks (linux/in.h, linux/in6.h).
IP_TTL = 2
IP_PKTINFO = 8
IP_RECVTTL = 12
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_TCLASS = 67
SO_TIMESTAMPNS = 35  # also the type of its control message (SCM_TIMESTAMPNS)
SO_RCVBUFFORCE = 33  # Linux; not in the socket module

TTL = 255
TOS = 0xC0  # network control, as FRR and BIRD send BFD
DEFAULT_MIN_TTL = 254  # multihop: at most one router between the peers unless configured
RECV_BUFSIZE = 2048
#: the receiving sockets' buffer: a stall of the agent under a flood of junk (thousands of
#: datagrams a second) must not make the kernel drop the peers' packets with the junk
RCVBUF_BYTES = 4 << 20
MAX_READS_PER_WAKEUP = 64
MAX_READS_PER_DRAIN = 4096
SOURCE_PORT_TRIES = 64
REOPEN_RETRY_SECONDS = 1.0
# Send errors that mean the interface or the local address went away: reopen later.
REOPEN_ERRNOS = frozenset(
    {errno.ENODEV, errno.ENXIO, errno.EADDRNOTAVAIL, errno.EINVAL, errno.EBADF}
)

_IN_PKTINFO = struct.Struct("=i4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_IN6_PKTINFO = struct.Struct("=16sI")  # ipi6_addr, ipi6_ifindex
_INT = struct.Struct("=i")
_TIMESPEC = struct.Struct("=qq")  # tv_sec, tv_nsec
# plain ints: socket's flag enums cost a microsecond for every | and &
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
_SOL_SOCKET = int(socket.SOL_SOCKET)


# ---------------------------------------------------------------------------- datagrams


class BfdDatagram(NamedTuple):
    """One received datagram before any BFD check.

    ``dst`` and ``ifindex`` come from the packet-info ancillary data (None / 0 when the
    kernel gave none), ``ttl`` is the TTL or hop limit (-1 when unknown).
    """

    data: bytes
    family: int
    src: IPAddress
    src_port: int
    dst: IPAddress | None
    ifindex: int
    ttl: int
    multihop: bool
    #: (the socket address, the ancillary data without the timestamp) as received, for
    #: the engine's short path for repeated packets (None from transports without it)
    raw: tuple[object, object] | None = None
    #: when it arrived (CLOCK_MONOTONIC seconds, from the kernel's timestamp), if known
    arrived: float | None = None


@dataclass(slots=True)
class TransportStats:
    """Counters of the receiving sockets (per-session counters live in the runtime)."""

    rx_datagrams: int = 0
    rx_truncated: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_errors: int = 0


_IFNAMES: dict[int, str] = {}


def _large_receive_buffer(sock: socket.socket) -> None:
    """RCVBUF_BYTES of receive buffer: past net.core.rmem_max with CAP_NET_ADMIN
    (SO_RCVBUFFORCE), else as much as rmem_max allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)


def interface_name(ifindex: int) -> str | None:
    """The name of interface ``ifindex`` in this namespace (cached; None if unknown)."""
    if ifindex <= 0:
        return None
    name = _IFNAMES.get(ifindex)
    if name is None:
        try:
            name = socket.if_indextoname(ifindex)
        except OSError:
            return None
        if len(_IFNAMES) > 1024:
            _IFNAMES.clear()
        _IFNAMES[ifindex] = name
    return name


def forget_interface_names() -> None:
    """Drop the index -> name cache (an interface was renamed or re-created)."""
    _IFNAMES.clear()


# ---------------------------------------------------------------------------- session table


@dataclass(frozen=True, slots=True)
class SessionKey:
    """What identifies a session: peer, local address, interface, single hop or multihop.

    ``local`` None takes packets to any of our addresses (and lets the kernel choose the
    source); ``interface`` None takes packets from any interface.
    """

    peer: IPAddress
    local: IPAddress | None = None
    interface: str | None = None
    multihop: bool = False

    def __post_init__(self) -> None:
        if self.local is not None and self.local.version != self.peer.version:
            raise ValueError(
                f"local: {self.local} is IPv{self.local.version} but peer {self.peer} is "
                f"IPv{self.peer.version}"
            )
        if self.peer.version == 6 and self.peer.is_link_local and not self.interface:
            raise ValueError(f"interface: link-local peer {self.peer} needs an interface")
        if self.multihop and self.local is None:
            raise ValueError(f"local: a multihop session to {self.peer} needs a local address")

    @property
    def family(self) -> int:
        return self.peer.version

    @property
    def port(self) -> int:
        return ControlPacket.PORT_MULTIHOP if self.multihop else ControlPacket.PORT

    def __str__(self) -> str:
        text = str(self.peer)
        if self.interface:
            text += f"%{self.interface}"
        if self.local is not None:
            text += f" from {self.local}"
        if self.multihop:
            text += " multihop"
        return text


@dataclass
class _Entry(Generic[T]):
    key: SessionKey
    discr: int
    item: T


class SessionTable(Generic[T]):
    """Sessions by local discriminator and by key (pure; see the module docstring)."""

    def __init__(self) -> None:
        self._by_discr: dict[int, _Entry[T]] = {}
        self._by_key: dict[SessionKey, _Entry[T]] = {}
        self._by_peer: dict[tuple[IPAddress, bool], list[_Entry[T]]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def add(self, key: SessionKey, discr: int, item: T) -> None:
        if key in self._by_key:
            raise ValueError(f"session {key} exists already")
        if discr in self._by_discr:
            raise ValueError(f"discriminator {discr} is in use by {self._by_discr[discr].key}")
        entry = _Entry(key, discr, item)
        self._by_key[key] = entry
        self._by_discr[discr] = entry
        self._by_peer.setdefault((key.peer, key.multihop), []).append(entry)

    def remove(self, key: SessionKey) -> T | None:
        entry = self._by_key.pop(key, None)
        if entry is None:
            return None
        del self._by_discr[entry.discr]
        peers = self._by_peer[(key.peer, key.multihop)]
        peers.remove(entry)
        if not peers:
            del self._by_peer[(key.peer, key.multihop)]
        return entry.item

    def items(self) -> list[tuple[SessionKey, T]]:
        """Every (key, session), in the order they were added."""
        return [(key, entry.item) for key, entry in self._by_key.items()]

    def get(self, key: SessionKey) -> T | None:
        entry = self._by_key.get(key)
        return None if entry is None else entry.item

    def discriminator_in_use(self, discr: int) -> bool:
        return discr in self._by_discr

    def lookup(
        self,
        *,
        your_discr: int,
        src: IPAddress,
        dst: IPAddress | None,
        ifname: str | None,
        multihop: bool,
    ) -> tuple[SessionKey, T] | Rejection:
        """The session a packet belongs to, or why none does (RFC 5880 6.8.6, 5881 3)."""
        if your_discr:
            entry = self._by_discr.get(your_discr)
            if entry is None:
                return Rejection(
                    RejectReason.NO_SESSION,
                    f"Your Discriminator {your_discr} from {src} names no session here",
                )
            if not self._matches(entry.key, src, dst, ifname, multihop):
                return Rejection(
                    RejectReason.ADDRESS,
                    f"packet from {src} to {dst} on {ifname or '?'} "
                    f"({'multihop' if multihop else 'single hop'}) carries the "
                    f"discriminator of session {entry.key}",
                )
            return entry.key, entry.item
        best: _Entry[T] | None = None
        best_score = -1
        for entry in self._by_peer.get((src, multihop), ()):
            if not self._matches(entry.key, src, dst, ifname, multihop):
                continue
            score = (entry.key.local is not None) + (entry.key.interface is not None)
            if score > best_score:
                best, best_score = entry, score
        if best is None:
            where = f" on {ifname}" if ifname else ""
            return Rejection(
                RejectReason.NO_SESSION,
                f"{'multihop' if multihop else 'single hop'} packet from {src} to {dst}"
                f"{where} with Your Discriminator 0 matches no configured session",
            )
        return best.key, best.item

    @staticmethod
    def _matches(
        key: SessionKey,
        src: IPAddress,
        dst: IPAddress | None,
        ifname: str | None,
        multihop: bool,
    ) -> bool:
        return (
            key.peer == src
            and key.multihop == multihop
            and (key.local is None or key.local == dst)
            and (key.interface is None or key.interface == ifname)
        )


def check_ttl(ttl: int, key: SessionKey, min_ttl: int) -> Rejection | None:
    """RFC 5881 5: single hop needs TTL/hop limit 255; multihop at least ``min_ttl``."""
    word = "TTL" if key.family == 4 else "hop limit"
    if ttl < 0:
        return Rejection(RejectReason.TTL, f"no {word} reported for a packet from {key.peer}")
    if key.multihop:
        if ttl < min_ttl:
            return Rejection(
                RejectReason.TTL,
                f"{word} {ttl} from {key.peer} is below the multihop minimum {min_ttl}",
            )
        return None
    if ttl != TTL:
        return Rejection(
            RejectReason.TTL,
            f"{word} {ttl} from {key.peer}, single-hop BFD requires {TTL}: the packet crossed "
            "a router or was forged (configure the session as multihop if it is one)",
        )
    return None


# ---------------------------------------------------------------------------- interfaces


class Sender(Protocol):
    """Sends one session's packets to its peer."""

    @property
    def port(self) -> int: ...

    def send(self, data: bytes) -> bool: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """What the engine needs from the network; :class:`UdpTransport` is the real one."""

    def listen(self, family: int, multihop: bool) -> None: ...

    def unlisten(self, family: int, multihop: bool) -> None: ...

    def sender(self, key: SessionKey) -> Sender: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- UDP


def _sockaddr(
    address: IPAddress, port: int, scope: int
) -> tuple[str, int] | tuple[str, int, int, int]:
    if address.version == 4:
        return (str(address), port)
    return (str(address), port, 0, scope if address.is_link_local else 0)


class UdpSender:
    """The sending socket of one session (see the module docstring).

    ``rng`` picks the source port; ``clock`` paces reopening (monotonic seconds).
    """

    def __init__(
        self,
        key: SessionKey,
        stats: TransportStats,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self._stats = stats
        self._rng = rng or random.Random()
        self._clock = clock
        self._sock: socket.socket | None = None
        self._port = 0
        self._dest: tuple[str, int] | tuple[str, int, int, int] | None = None
        self._last_try = -1e9
        self._last_error: str | None = None
        self.down_reason: str | None = "not opened"
        self._open()

    @property
    def port(self) -> int:
        """The source port (0 while no socket is open)."""
        return self._port

    @property
    def up(self) -> bool:
        return self._sock is not None

    def send(self, data: bytes) -> bool:
        """Send one packet to the peer; False (counted, logged once) when it cannot go."""
        if self._sock is None and not self._retry():
            self._stats.tx_errors += 1
            return False
        assert self._sock is not None and self._dest is not None
        key = self.key
        try:
            self._sock.sendto(data, self._dest)
        except OSError as exc:
            self._stats.tx_errors += 1
            self._failed(f"send to {key.peer} failed: {exc.strerror}", exc.errno)
            return False
        self._stats.tx_packets += 1
        self._last_error = None
        return True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self.down_reason = "closed"

    def _scope(self) -> int:
        if self.key.interface is None:
            return 0
        try:
            return socket.if_nametoindex(self.key.interface)
        except OSError:
            return 0

    def _retry(self) -> bool:
        now = self._clock()
        if self.down_reason == "closed" or now - self._last_try < REOPEN_RETRY_SECONDS:
            return False
        return self._open()

    def _open(self) -> bool:
        self._last_try = self._clock()
        key = self.key
        family = socket.AF_INET if key.family == 4 else socket.AF_INET6
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            self._failed(f"cannot create a socket: {exc.strerror}", exc.errno)
            return False
        try:
            sock.setblocking(False)
            if key.interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, key.interface.encode())
            if key.family == 4:
                sock.setsockopt(socket.IPPROTO_IP, IP_TTL, TTL)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, TOS)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, TOS)
            self._port = self._bind(sock)
        except OSError as exc:
            sock.close()
            self._port = 0
            self._failed(f"cannot open the BFD socket to {key}: {exc.strerror}", exc.errno)
            return False
        # The destination with its scope, once per socket: a re-created interface gets
        # a new index, and a send on the old one fails and reopens (ENODEV, ENXIO).
        self._dest = _sockaddr(key.peer, key.port, self._scope())
        self._sock = sock
        self.down_reason = None
        return True

    def _bind(self, sock: socket.socket) -> int:
        """Bind to the local address and a free port in 49152-65535 (RFC 5881 4)."""
        key = self.key
        if key.local is not None:
            host = key.local
        else:
            host = ipaddress.ip_address("0.0.0.0" if key.family == 4 else "::")
        low, high = ControlPacket.SOURCE_PORT_MIN, ControlPacket.SOURCE_PORT_MAX
        # Keep the port across reopens when it is still free; else draw a new one.
        candidates = [self._port] if self._port else []
        candidates += [self._rng.randint(low, high) for _ in range(SOURCE_PORT_TRIES)]
        error: OSError | None = None
        for port in candidates:
            try:
                sock.bind(_sockaddr(host, port, self._scope()))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                error = exc
                continue
            return port
        raise error or OSError(errno.EADDRINUSE, "no free source port")

    def _failed(self, message: str, code: int | None) -> None:
        if code in REOPEN_ERRNOS and self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._sock is None:
            self.down_reason = message
        if message != self._last_error:
            self._last_error = message
            log.warning("BFD %s: %s", self.key, message)


class UdpTransport:
    """The receiving sockets and the senders of a BFD engine (see the module docstring).

    ``on_datagram`` is called for every datagram read, on the event loop; it must not
    raise (an exception is logged and the next datagram is read). ``on_raw(data, ancdata,
    address, multihop, arrived)``, if given, sees each datagram first, undecoded (the
    ancillary data without the timestamp); when it returns True the datagram was handled
    (a repeat of an accepted one) and is not decoded.
    """

    def __init__(
        self,
        on_datagram: Callable[[BfdDatagram], None],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        rng: random.Random | None = None,
        on_raw: Callable[[bytes, Any, Any, bool, float | None], bool] | None = None,
    ) -> None:
        self._on_datagram = on_datagram
        self._on_raw = on_raw
        self.polling = False
        self._loop = loop
        self._rng = rng or random.Random()
        self.stats = TransportStats()
        self._listeners: dict[tuple[int, bool], socket.socket] = {}
        self._refs: dict[tuple[int, bool], int] = {}
        self._addresses: dict[bytes | str, IPAddress] = {}

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- listening ----------------------------------------------------------------------

    def listen(self, family: int, multihop: bool) -> None:
        """Open (or share) the receiving socket for ``family`` single hop / multihop.

        Raises OSError when the port cannot be bound (another BFD daemon holds it).
        """
        key = (family, multihop)
        if key not in self._listeners:
            sock = self._open_listener(family, multihop)
            self._listeners[key] = sock
            self._refs[key] = 0
            if not self.polling:
                self._watch(sock, family, multihop)
        self._refs[key] += 1

    def _watch(self, sock: socket.socket, family: int, multihop: bool) -> None:
        self._get_loop().add_reader(sock.fileno(), self._on_readable, sock, family, multihop)

    def set_polling(self, polling: bool) -> None:
        """Stop (True) or start again (False) waking the loop for each datagram; while
        polling, the owner calls :meth:`drain` often enough."""
        if polling == self.polling:
            return
        self.polling = polling
        loop = self._get_loop()
        for (family, multihop), sock in self._listeners.items():
            if polling:
                loop.remove_reader(sock.fileno())
            else:
                self._watch(sock, family, multihop)

    def drain(self) -> None:
        """Read every datagram waiting on every receiving socket now."""
        for (family, multihop), sock in list(self._listeners.items()):
            self._on_readable(sock, family, multihop, MAX_READS_PER_DRAIN)

    def unlisten(self, family: int, multihop: bool) -> None:
        key = (family, multihop)
        if key not in self._listeners:
            return
        self._refs[key] -= 1
        if self._refs[key] <= 0:
            sock = self._listeners.pop(key)
            del self._refs[key]
            self._close_listener(sock)

    def listening(self) -> list[tuple[int, bool]]:
        return sorted(self._listeners)

    def _open_listener(self, family: int, multihop: bool) -> socket.socket:
        port = ControlPacket.PORT_MULTIHOP if multihop else ControlPacket.PORT
        if family == 4:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _large_receive_buffer(sock)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if family == 4:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
                sock.bind(("0.0.0.0", port))
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
                sock.bind(("::", port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _close_listener(self, sock: socket.socket) -> None:
        with contextlib.suppress(Exception):
            self._get_loop().remove_reader(sock.fileno())
        sock.close()

    # -- sending ------------------------------------------------------------------------

    def sender(self, key: SessionKey) -> UdpSender:
        return UdpSender(key, self.stats, rng=self._rng)

    def close(self) -> None:
        for sock in self._listeners.values():
            self._close_listener(sock)
        self._listeners.clear()
        self._refs.clear()

    # -- receiving ----------------------------------------------------------------------

    def _on_readable(
        self,
        sock: socket.socket,
        family: int,
        multihop: bool,
        limit: int = MAX_READS_PER_WAKEUP,
    ) -> None:
        # the kernel stamps arrivals with CLOCK_REALTIME: one offset per batch to monotonic
        offset = time.monotonic() - time.time()
        for _ in range(limit):
            try:
                data, ancdata, flags, address = sock.recvmsg(RECV_BUFSIZE, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.stats.rx_errors += 1
                log.warning("BFD receive failed: %s", exc.strerror)
                return
            if flags & _TRUNCATED:
                self.stats.rx_truncated += 1
                continue
            arrived: float | None = None
            if ancdata and ancdata[0][0] == _SOL_SOCKET:
                stamp = ancdata[0]
                ancdata = ancdata[1:]
                if stamp[1] == SO_TIMESTAMPNS and len(stamp[2]) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(stamp[2])
                    arrived = sec + nsec * 1e-9 + offset
            on_raw = self._on_raw
            if on_raw is not None:
                try:
                    if on_raw(data, ancdata, address, multihop, arrived):
                        self.stats.rx_datagrams += 1
                        continue
                except Exception:
                    log.exception("BFD datagram handler failed")
                    continue
            datagram = self._decode(data, ancdata, address, family, multihop, arrived)
            if datagram is None:
                self.stats.rx_errors += 1
                continue
            self.stats.rx_datagrams += 1
            try:
                self._on_datagram(datagram)
            except Exception:
                log.exception("BFD datagram handler failed")

    def _decode(
        self,
        data: bytes,
        ancdata: list[tuple[int, int, bytes]],
        address: tuple[object, ...],
        family: int,
        multihop: bool,
        arrived: float | None = None,
    ) -> BfdDatagram | None:
        ttl, ifindex = -1, 0
        dst: IPAddress | None = None
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IP:
                if kind == IP_PKTINFO and len(value) >= _IN_PKTINFO.size:
                    ifindex, _spec, raw = _IN_PKTINFO.unpack_from(value)
                    dst = self._address(raw)
                elif kind == IP_TTL and len(value) >= _INT.size:
                    ttl = _INT.unpack_from(value)[0]
            elif level == socket.IPPROTO_IPV6:
                if kind == IPV6_PKTINFO and len(value) >= _IN6_PKTINFO.size:
                    raw, ifindex = _IN6_PKTINFO.unpack_from(value)
                    dst = self._address(raw)
                elif kind == IPV6_HOPLIMIT and len(value) >= _INT.size:
                    ttl = _INT.unpack_from(value)[0]
        try:
            host, port = str(address[0]), int(address[1])  # type: ignore[call-overload]
            src = self._address(host)
        except (IndexError, TypeError, ValueError):
            return None
        return BfdDatagram(
            data, family, src, port, dst, ifindex, ttl, multihop, (address, ancdata), arrived
        )

    def _address(self, wire: bytes | str) -> IPAddress:
        """Address objects from a small cache: the same few peers talk all the time."""
        addr = self._addresses.get(wire)
        if addr is None:
            if len(self._addresses) >= 256:
                self._addresses.clear()
            if isinstance(wire, str):
                addr = ipaddress.ip_address(wire.split("%", 1)[0])
            else:
                addr = ipaddress.ip_address(wire)
            self._addresses[wire] = addr
        return addr
