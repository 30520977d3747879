"""Raw-socket transport for VRRP: one socket per (family, interface), demultiplexed by VRID.

This module moves bytes and their metadata and nothing else. It does not parse VRRP beyond
the VRID byte (the second byte of the VRRP message), which it needs to hand each datagram
to the instance that registered for it. Validation (TTL, version, checksum, ...) belongs to
``vigil.vrrp.packet`` and the runtime.

Choices that matter on the wire, and why:

- IPv4 is sent with ``IP_HDRINCL``: the header carries TTL 255, TOS 0xc0, no DF and an
  incrementing identification, exactly what keepalived puts on the wire, and the source is
  the interface's primary address (or the configured unicast source) without depending on
  the routing table's source selection. The kernel fills in the total length and header
  checksum. Received IPv4 datagrams include the IP header and are passed on whole.
- IPv6 is sent with an ``IPV6_PKTINFO`` control message naming the source (the interface's
  link-local address by default) and the interface. The socket is deliberately *not*
  bound to an address: a bound raw socket only receives datagrams addressed to that
  address, which would filter out the ff02::12 adverts. ``IPV6_CHECKSUM`` = 6 makes the
  kernel fill the pseudo-header checksum on send and verify it on receive (a datagram with
  a bad checksum is dropped by the kernel and never reaches us).
- ``SO_BINDTODEVICE`` ties each socket to its interface and ``IP(V6)_MULTICAST_ALL`` = 0
  stops it from seeing groups joined by other sockets; the receive path also drops anything
  whose arrival interface is not ours (a datagram can slip in between ``socket()`` and the
  bind).
- An interface can disappear (veth deleted, macvlan recreated). A send that fails with
  ENODEV/ENXIO/ENETDOWN (or ENETUNREACH for the group, or a source lookup that finds the
  interface gone or down) marks the socket down, closes it and reports it once. Sends while
  down return 0 and try to reopen at most once a second, only when the interface is back
  up. ``reopen()`` (called by the runtime on a link-up event) opens a fresh socket against
  the interface's new index and joins the groups again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from vigil.log import RateLimitedLog

__all__ = [
    "VRRP_GROUP_V4",
    "VRRP_GROUP_V6",
    "VRRP_PROTO",
    "IPAddress",
    "PayloadBuilder",
    "RawReceived",
    "SocketRegistry",
    "SocketStats",
    "TransportError",
    "VrrpSocket",
    "interface_flags",
    "interface_link_local",
    "interface_primary_ipv4",
]

log = logging.getLogger("vigil.vrrp.transport")
_handler_log = RateLimitedLog(log)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PayloadBuilder = Callable[[IPAddress, IPAddress], bytes]
"""Called with (source, destination) for every datagram sent; returns the VRRP message.

VRRPv3 over IPv4 may checksum over the pseudo-header, which depends on both addresses, so
the runtime can hand ``send()`` a builder instead of fixed bytes (one call per unicast
peer)."""

VRRP_PROTO = 112
VRRP_GROUP_V4 = ipaddress.IPv4Address("224.0.0.18")
VRRP_GROUP_V6 = ipaddress.IPv6Address("ff02::12")

# Socket option numbers missing from Python 3.11's socket module (values from linux/in.h and
# linux/in6.h; the IPv6 ones exist in recent Pythons but are spelled out for clarity).
IP_TTL = 2
IP_PKTINFO = 8
IP_RECVTTL = 12
IP_MULTICAST_ALL = 49
IPV6_CHECKSUM = 7
IPV6_MULTICAST_ALL = 29
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_TCLASS = 67
SIOCGIFADDR = 0x8915
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1

TTL = 255
TOS = 0xC0
VRRP_CHECKSUM_OFFSET = 6
RECV_BUFSIZE = 8192
MAX_READS_PER_WAKEUP = 64
#: Sender/destination address objects a socket keeps (see VrrpSocket._address).
ADDRESS_CACHE_SIZE = 256
SOURCE_CACHE_SECONDS = 1.0
REOPEN_RETRY_SECONDS = 1.0

# Errors that mean "the interface is gone or down": mark the socket down, wait for reopen().
LINK_ERRNOS = frozenset({errno.ENODEV, errno.ENXIO, errno.ENETDOWN})
# Errors from a stale source address: refresh it and try again on the next send.
SOURCE_ERRNOS = frozenset({errno.EADDRNOTAVAIL, errno.EINVAL})

_IN_PKTINFO = struct.Struct("=i4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_IN6_PKTINFO = struct.Struct("=16sI")  # ipi6_addr, ipi6_ifindex
_INT = struct.Struct("=i")
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")

IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IPV6_SCOPE_LINK = 0x20


class TransportError(Exception):
    """A socket cannot be set up for a reason other than a missing interface (e.g. EPERM)."""


class RawReceived(NamedTuple):
    """One datagram as it arrived, before any VRRP validation.

    ``data`` is the whole IPv4 datagram (header included) for family 4, and the VRRP
    message alone for family 6 (the kernel strips IPv6 headers on raw sockets). ``ttl`` is
    the IPv4 TTL or the IPv6 hop limit seen on arrival (-1 if the kernel did not say).
    A named tuple, not a frozen dataclass: one is made per datagram, and it is made in a
    third of the time.
    """

    family: int
    ifname: str
    src: IPAddress
    dst: IPAddress
    ttl: int
    data: bytes
    ifindex: int

    @property
    def hop_limit(self) -> int:
        """The IPv6 name for ``ttl``."""
        return self.ttl

    @property
    def vrrp_offset(self) -> int:
        """Where the VRRP message starts in ``data`` (after the IPv4 header, if any)."""
        if self.family == 4:
            return (self.data[0] & 0x0F) * 4 if self.data else 0
        return 0

    @property
    def decode_key(self) -> object:
        """Everything VRRP decoding reads from this datagram, for comparing two of them.

        Two datagrams with equal keys decode to the same result. For IPv4 that is the
        datagram without the identification and header checksum fields, which change from
        packet to packet and which VRRP does not read (the kernel has checked the header
        checksum); for IPv6 the message with its addresses and hop limit.
        """
        data = self.data
        if self.family == 4:
            return data[:4] + data[6:10] + data[12:]
        return (data, self.src, self.dst, self.ttl)

    @property
    def vrid(self) -> int | None:
        """The VRID byte, or None if the datagram is too short to have one."""
        index = self.vrrp_offset + 1
        return self.data[index] if len(self.data) > index else None


@dataclass(slots=True)
class SocketStats:
    """Per-socket counters the runtime exports as metrics."""

    rx_packets: int = 0
    rx_unknown_vrid: int = 0
    rx_truncated: int = 0
    rx_wrong_interface: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    down_events: int = 0
    source_lookup_errors: int = 0


ReceiveHandler = Callable[[RawReceived], None]
UnknownVridHandler = Callable[[RawReceived, int | None], None]
StatusHandler = Callable[["VrrpSocket", bool, str], None]


# Errors that mean "no descriptor or memory to spare now", not "no such address": a
# lookup failing with one of them keeps what it knew (see VrrpSocket.default_source).
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def _ifreq_ioctl(ifname: str, request_code: int, fd: int | None) -> bytes | None:
    """An SIOCGIF* ioctl on ``fd`` (an AF_INET socket), or on a short-lived probe socket.

    None when the kernel says no (no such interface, no address). Raises OSError only
    when the probe socket cannot be opened (out of descriptors): a caller on the advert
    path passes the descriptor it already has and never gets here.
    """
    request = struct.pack("16s16x", ifname.encode()[:15])
    if fd is not None and fd >= 0:
        try:
            return bytes(fcntl.ioctl(fd, request_code, request))
        except OSError:
            return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            return bytes(fcntl.ioctl(probe.fileno(), request_code, request))
        except OSError:
            return None


def interface_primary_ipv4(ifname: str, fd: int | None = None) -> ipaddress.IPv4Address | None:
    """The interface's primary IPv4 address (the one keepalived sends from), or None.

    SIOCGIFADDR returns the first address whose label is the interface name, which is the
    primary of the first subnet configured, and costs a single syscall. ``fd`` is an
    AF_INET socket to ask through (else one is opened for the question).
    """
    reply = _ifreq_ioctl(ifname, SIOCGIFADDR, fd)
    return None if reply is None else ipaddress.IPv4Address(reply[20:24])


def interface_flags(ifname: str, fd: int | None = None) -> int:
    """The interface's flags (IFF_UP, ...) from SIOCGIFFLAGS; 0 if it does not exist."""
    reply = _ifreq_ioctl(ifname, SIOCGIFFLAGS, fd)
    return 0 if reply is None else int(struct.unpack_from("=H", reply, 16)[0])


def interface_link_local(
    ifname: str,
    exclude: frozenset[ipaddress.IPv6Address] | set[ipaddress.IPv6Address] = frozenset(),
) -> ipaddress.IPv6Address | None:
    """The interface's usable (not tentative, not DAD-failed) link-local address, or None.

    Read from /proc/net/if_inet6, which shows the addresses of the reader's network
    namespace; the kernel refuses a tentative address as a source, so those are skipped.
    ``exclude`` names addresses that must never be the source: a link-local VIP (RFC 5798
    5.2.9 wants one first in an IPv6 VIP list) is on the interface while we are master, and
    the table's order would otherwise make it our advert source about half of the time.
    """
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            lines = table.read().splitlines()
    except OSError as exc:
        if exc.errno in RESOURCE_ERRNOS:
            raise  # "cannot look now", not "no address": the caller keeps what it knew
        return None
    for line in lines:
        fields = line.split()
        if len(fields) != 6 or fields[5] != ifname:
            continue
        scope, flags = int(fields[3], 16), int(fields[4], 16)
        if scope == IPV6_SCOPE_LINK and not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            if address not in exclude:
                return address
    return None


def _check_family(family: int) -> int:
    if family not in (4, 6):
        raise ValueError(f"family: must be 4 or 6, got {family!r}")
    return family


def _check_ifname(ifname: str) -> str:
    if not ifname or len(ifname.encode()) > 15 or "/" in ifname or " " in ifname:
        raise ValueError(f"interface: {ifname!r} is not a valid Linux interface name")
    return ifname


def _as_address(family: int, value: IPAddress | str, what: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {value!r} is not an IP address") from exc
    if address.version != family:
        raise ValueError(
            f"{what}: {address} is IPv{address.version} but this socket is IPv{family}"
        )
    return address


@dataclass(slots=True)
class _SourceCache:
    """The default source address, re-read at most once per SOURCE_CACHE_SECONDS."""

    address: IPAddress | None = None
    read_at: float = field(default=-1e9)

    def invalidate(self) -> None:
        self.read_at = -1e9


class VrrpSocket:
    """The VRRP raw socket of one (family, interface), shared by every instance on it.

    Instances ``register(vrid, handler)`` to receive their datagrams and call ``send()``;
    the registry owns opening and closing. The socket object outlives the file descriptor:
    while the interface is missing it stays registered but ``up`` is False.
    """

    def __init__(
        self,
        family: int,
        ifname: str,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_unknown_vrid: UnknownVridHandler | None = None,
        on_status: StatusHandler | None = None,
    ) -> None:
        self.family = _check_family(family)
        self.ifname = _check_ifname(ifname)
        self.source_interface = self.ifname
        # Addresses never to send from (the VIPs of the instances on this socket).
        self.not_sources: set[IPAddress] = set()
        """Where ``default_source()`` looks: set it to the parent for a VMAC socket, since
        keepalived sends from the parent's primary address, not from an address (a VIP,
        or nothing) on the macvlan."""
        self.ifindex = 0
        self.stats = SocketStats()
        self.down_reason: str | None = "not opened"
        self.on_unknown_vrid = on_unknown_vrid
        self.on_status = on_status
        self._loop = loop
        # Address objects by their wire form: a socket hears the same few senders over
        # and over, and building an ip_address costs more than the rest of the receive.
        self._addresses: dict[object, IPAddress] = {}
        self._sock: socket.socket | None = None
        self._handlers: dict[int, ReceiveHandler] = {}
        self._source = _SourceCache()
        self._ident = 0
        self._down_reported = False
        self._last_retry = -1e9
        self._last_tx_error: str | None = None

    def __repr__(self) -> str:
        state = "up" if self.up else f"down ({self.down_reason})"
        return f"<VrrpSocket IPv{self.family} {self.ifname} {state}>"

    @property
    def up(self) -> bool:
        return self._sock is not None

    @property
    def last_tx_error(self) -> str | None:
        """The last send failure logged, until a send succeeds."""
        return self._last_tx_error

    @property
    def group(self) -> IPAddress:
        return VRRP_GROUP_V4 if self.family == 4 else VRRP_GROUP_V6

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    # -- demultiplexing -------------------------------------------------------------------

    def register(self, vrid: int, handler: ReceiveHandler) -> None:
        """Deliver datagrams carrying ``vrid`` to ``handler`` (one handler per VRID)."""
        if not isinstance(vrid, int) or not 1 <= vrid <= 255:
            raise ValueError(f"vrid: must be an integer from 1 to 255, got {vrid!r}")
        if vrid in self._handlers:
            raise ValueError(
                f"vrid: {vrid} is already registered on IPv{self.family} {self.ifname}; "
                "each VRID may be used by one instance per interface and family"
            )
        self._handlers[vrid] = handler

    def unregister(self, vrid: int) -> None:
        self._handlers.pop(vrid, None)

    @property
    def vrids(self) -> frozenset[int]:
        return frozenset(self._handlers)

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> bool:
        """Open and configure the socket; False (and down) if the interface is missing.

        Raises TransportError for anything that is not about the interface (no privilege,
        protocol not supported): those will not fix themselves.
        """
        if self._sock is not None:
            return True
        try:
            sock = self._make_socket()
        except OSError as exc:
            if exc.errno in LINK_ERRNOS:
                self._set_down(f"cannot open on {self.ifname}: {exc.strerror}")
                return False
            raise TransportError(
                f"cannot open the IPv{self.family} VRRP socket on {self.ifname}: {exc}"
                + (" (vigild needs CAP_NET_RAW)" if exc.errno == errno.EPERM else "")
            ) from exc
        self._sock = sock
        self._source.invalidate()
        self._get_loop().add_reader(sock.fileno(), self._on_readable)
        self.down_reason = None
        log.debug(
            "IPv%d VRRP socket open on %s (ifindex %d)", self.family, self.ifname, self.ifindex
        )
        if self._down_reported:
            self._down_reported = False
            self._report(True, "interface is back")
        return True

    def reopen(self) -> bool:
        """Close and open again (the interface came back, maybe with a new index).

        Never raises: from here on a failure to open is a down socket, reported once.
        """
        self._close_fd()
        try:
            return self.open()
        except TransportError as exc:
            self._set_down(str(exc))
            return False

    def is_current(self) -> bool:
        """Up, and on the index the interface has now (not a deleted and re-created one)."""
        if self._sock is None:
            return False
        try:
            return socket.if_nametoindex(self.ifname) == self.ifindex
        except OSError:
            return False

    def mark_down(self, reason: str) -> None:
        """Close the descriptor and report the socket down (once per transition)."""
        self._close_fd()
        self._set_down(reason)

    def close(self) -> None:
        self._close_fd()
        self._handlers.clear()
        self.down_reason = "closed"

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _close_fd(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(Exception):
            self._get_loop().remove_reader(sock.fileno())
        sock.close()

    def _set_down(self, reason: str) -> None:
        self.down_reason = reason
        if not self._down_reported:
            self._down_reported = True
            self.stats.down_events += 1
            log.warning("IPv%d VRRP socket on %s is down: %s", self.family, self.ifname, reason)
            self._report(False, reason)

    def _report(self, up: bool, reason: str) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(self, up, reason)
        except Exception:
            log.exception("status handler for %s failed", self.ifname)

    def _make_socket(self) -> socket.socket:
        family = socket.AF_INET if self.family == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_RAW, VRRP_PROTO)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            self.ifindex = socket.if_nametoindex(self.ifname)
            if self.family == 4:
                self._configure_v4(sock)
            else:
                self._configure_v6(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def _configure_v4(self, sock: socket.socket) -> None:
        ip = socket.IPPROTO_IP
        sock.setsockopt(ip, socket.IP_HDRINCL, 1)
        sock.setsockopt(ip, IP_TTL, TTL)
        sock.setsockopt(ip, socket.IP_MULTICAST_TTL, TTL)
        sock.setsockopt(ip, socket.IP_TOS, TOS)
        sock.setsockopt(ip, socket.IP_MULTICAST_LOOP, 0)
        sock.setsockopt(ip, IP_MULTICAST_ALL, 0)
        sock.setsockopt(ip, IP_PKTINFO, 1)
        sock.setsockopt(ip, IP_RECVTTL, 1)
        mreqn = struct.pack("=4s4si", VRRP_GROUP_V4.packed, bytes(4), self.ifindex)
        sock.setsockopt(ip, socket.IP_MULTICAST_IF, mreqn)
        sock.setsockopt(ip, socket.IP_ADD_MEMBERSHIP, mreqn)

    def _configure_v6(self, sock: socket.socket) -> None:
        ip6 = socket.IPPROTO_IPV6
        sock.setsockopt(ip6, IPV6_CHECKSUM, VRRP_CHECKSUM_OFFSET)
        sock.setsockopt(ip6, socket.IPV6_MULTICAST_HOPS, TTL)
        sock.setsockopt(ip6, socket.IPV6_UNICAST_HOPS, TTL)
        sock.setsockopt(ip6, IPV6_TCLASS, TOS)
        sock.setsockopt(ip6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(ip6, IPV6_MULTICAST_ALL, 0)
        sock.setsockopt(ip6, IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(ip6, IPV6_RECVPKTINFO, 1)
        sock.setsockopt(ip6, socket.IPV6_MULTICAST_IF, self.ifindex)
        mreq = struct.pack("=16sI", VRRP_GROUP_V6.packed, self.ifindex)
        sock.setsockopt(ip6, socket.IPV6_JOIN_GROUP, mreq)

    # -- sending --------------------------------------------------------------------------

    def default_source(self) -> IPAddress | None:
        """Primary IPv4 address or usable link-local IPv6 address of ``source_interface``.

        Cached for SOURCE_CACHE_SECONDS so a busy sender does not re-read it for every
        advert, and refreshed at once after a send fails because of it. The refresh opens
        no socket (IPv4 asks through this socket's own descriptor) and never raises: when
        the process is out of descriptors or memory (the IPv6 table is a file to open) the
        address known before stays in use and the lookup is tried again a period later.
        Never raises.
        """
        now = time.monotonic()
        if now - self._source.read_at >= SOURCE_CACHE_SECONDS:
            try:
                if self.family == 4:
                    self._source.address = interface_primary_ipv4(
                        self.source_interface, self._inet_fd()
                    )
                else:
                    self._source.address = interface_link_local(
                        self.source_interface,
                        {a for a in self.not_sources if isinstance(a, ipaddress.IPv6Address)},
                    )
            except OSError as exc:
                self.stats.source_lookup_errors += 1
                self._log_tx_error(
                    f"cannot look up the VRRP source address on {self.source_interface}: "
                    f"{exc.strerror}; keeping {self._source.address}"
                )
            self._source.read_at = now
        return self._source.address

    def _inet_fd(self) -> int | None:
        """This socket's descriptor if it is an AF_INET one (for SIOCGIF* ioctls)."""
        if self.family == 4 and self._sock is not None:
            return self._sock.fileno()
        return None

    def refresh_source(self) -> None:
        """Forget the cached default source (the runtime calls this on address events)."""
        self._source.invalidate()

    def send(
        self,
        payload: bytes | PayloadBuilder,
        dst: IPAddress | str | Iterable[IPAddress | str] | None = None,
        src: IPAddress | str | None = None,
    ) -> int:
        """Send one VRRP message; return how many datagrams left (0 if none could).

        ``dst`` None means the VRRP multicast group; otherwise one address or a list of
        unicast peers, each sent its own datagram. ``src`` None means the interface's
        primary (IPv4) or link-local (IPv6) address; unicast instances pass their
        configured source. ``payload`` is the VRRP message or a builder called with
        (src, dst) per datagram. Failures never raise: they are counted, logged and, for
        a vanished interface, reported through ``on_status``.
        """
        if self._sock is None and not self._retry_open():
            return 0
        destinations = self._destinations(dst)
        source = self._source_address(src)
        if source is None:
            return 0
        sent = 0
        for target in destinations:
            data = payload(source, target) if callable(payload) else payload
            if self._send_one(data, source, target):
                sent += 1
            elif self._sock is None:
                break
        return sent

    def prepare(
        self,
        payload: PayloadBuilder,
        dst: IPAddress | str | Iterable[IPAddress | str] | None = None,
        src: IPAddress | str | None = None,
    ) -> None:
        """Do what :meth:`send` with these arguments would do before sending, send nothing.

        That reads the default source if the cached one is old, and calls ``payload``
        for each datagram, so a builder that caches has them ready: the runtime calls
        this shortly before a backup's Master_Down deadline. Problems are left for the
        send itself to find and report.
        """
        if self._sock is None:
            return
        try:
            source = self._source_address(src) if src is not None else self.default_source()
            targets = self._destinations(dst)
        except ValueError:
            return
        if source is not None:
            for target in targets:
                payload(source, target)

    def link_problem(self) -> str | None:
        """Why the interface cannot carry VRRP now (gone, re-created, down), or None."""
        try:
            ifindex = socket.if_nametoindex(self.ifname)
        except OSError:
            return f"interface {self.ifname} does not exist"
        if self.ifindex and ifindex != self.ifindex:
            return f"interface {self.ifname} was re-created (index {ifindex})"
        try:
            flags = interface_flags(self.ifname, self._inet_fd())
        except OSError:
            return None  # out of descriptors: cannot tell, so do not call the link down
        if not flags & IFF_UP:
            return f"interface {self.ifname} is down"
        return None

    def _retry_open(self) -> bool:
        """While down, try to reopen at most once per REOPEN_RETRY_SECONDS.

        The runtime normally reopens on a link-up event; this keeps a sender working even
        if such an event was missed, without turning a dead interface into a busy loop.
        """
        now = time.monotonic()
        if self.down_reason == "closed" or now - self._last_retry < REOPEN_RETRY_SECONDS:
            return False
        self._last_retry = now
        self.ifindex = 0  # the interface may come back with a new index
        if self.link_problem() is not None:
            return False
        return self.reopen()

    def _destinations(
        self, dst: IPAddress | str | Iterable[IPAddress | str] | None
    ) -> list[IPAddress]:
        if dst is None:
            return [self.group]
        if isinstance(dst, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            return [_as_address(self.family, dst, "dst")]
        return [_as_address(self.family, peer, "unicast.peers") for peer in dst]

    def _source_address(self, src: IPAddress | str | None) -> IPAddress | None:
        if src is not None:
            return _as_address(self.family, src, "unicast.source")
        source = self.default_source()
        if source is None:
            self.stats.tx_errors += 1
            problem = self.link_problem()
            if problem is not None:
                self.mark_down(problem)
            else:
                kind = "IPv4 address" if self.family == 4 else "usable link-local address"
                self._log_tx_error(
                    f"cannot send VRRP on {self.ifname}: {self.source_interface} has no {kind}"
                )
        return source

    def _log_tx_error(self, message: str) -> None:
        """Log a send failure once per episode (until a send succeeds or it changes)."""
        if message != self._last_tx_error:
            self._last_tx_error = message
            log.warning("%s", message)

    def _send_one(self, data: bytes, source: IPAddress, target: IPAddress) -> bool:
        assert self._sock is not None
        try:
            if self.family == 4:
                self._ident = self._ident % 0xFFFF + 1
                header = _IPV4_HEADER.pack(
                    0x45, TOS, 20 + len(data), self._ident, 0, TTL, VRRP_PROTO, 0,
                    source.packed, target.packed,
                )  # fmt: skip
                self._sock.sendto(header + data, (str(target), 0))
            else:
                pktinfo = _IN6_PKTINFO.pack(source.packed, self.ifindex)
                scope = self.ifindex if target.is_link_local or target.is_multicast else 0
                self._sock.sendmsg(
                    [data],
                    [(socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo)],
                    0,
                    (str(target), 0, 0, scope),
                )
        except OSError as exc:
            self.stats.tx_errors += 1
            self._send_failed(exc, source, target)
            return False
        self.stats.tx_packets += 1
        self._last_tx_error = None
        return True

    def _send_failed(self, exc: OSError, source: IPAddress, target: IPAddress) -> None:
        code = exc.errno or 0
        problem = None
        if code in LINK_ERRNOS:
            problem = f"send on {self.ifname} failed: {exc.strerror}"
        elif code == errno.ENETUNREACH and target.is_multicast:
            # The group is always on-link: unreachable means the link itself is down.
            problem = self.link_problem() or f"send on {self.ifname} failed: {exc.strerror}"
        if problem is not None:
            self.mark_down(problem)
            return
        if code in SOURCE_ERRNOS:
            self.refresh_source()
        self._log_tx_error(
            f"VRRP send {source} -> {target} on {self.ifname} failed: {exc.strerror}"
        )

    # -- receiving ------------------------------------------------------------------------

    def _on_readable(self) -> None:
        for _ in range(MAX_READS_PER_WAKEUP):
            sock = self._sock
            if sock is None:
                return
            try:
                data, ancdata, flags, address = sock.recvmsg(RECV_BUFSIZE, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.stats.rx_errors += 1
                if exc.errno in LINK_ERRNOS:
                    self.mark_down(f"receive on {self.ifname} failed: {exc.strerror}")
                else:
                    log.warning("VRRP receive on %s failed: %s", self.ifname, exc.strerror)
                return
            if flags & socket.MSG_TRUNC:
                self.stats.rx_truncated += 1
                continue
            packet = self._decode(data, ancdata, address)
            if packet is None:
                continue
            self._dispatch(packet)

    def _decode(
        self, data: bytes, ancdata: list[tuple[int, int, bytes]], address: tuple[object, ...]
    ) -> RawReceived | None:
        ttl, ifindex = -1, self.ifindex
        dst: IPAddress | None = None
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
                ifindex = _IN_PKTINFO.unpack_from(value)[0]
            elif level == socket.IPPROTO_IP and kind == IP_TTL and len(value) >= 4:
                ttl = _INT.unpack_from(value)[0]
            elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= 20:
                raw_dst, ifindex = _IN6_PKTINFO.unpack_from(value)
                dst = self._address(raw_dst)
            elif level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(value) >= 4:
                ttl = _INT.unpack_from(value)[0]
        if ifindex != self.ifindex:
            self.stats.rx_wrong_interface += 1
            return None
        if self.family == 4:
            if len(data) < 20:
                self.stats.rx_truncated += 1
                return None
            src = self._address(data[12:16])
            dst = self._address(data[16:20])
            if ttl < 0:
                ttl = data[8]
        else:
            src = self._address(str(address[0]))
            if dst is None:
                dst = VRRP_GROUP_V6
        return RawReceived(self.family, self.ifname, src, dst, ttl, data, ifindex)

    def _address(self, wire: bytes | str) -> IPAddress:
        """The address for 4 or 16 packed bytes or a recvmsg sender string, from a cache."""
        addr = self._addresses.get(wire)
        if addr is None:
            if len(self._addresses) >= ADDRESS_CACHE_SIZE:
                self._addresses.clear()  # many senders (a scan?): start over, stay small
            if isinstance(wire, str):
                addr = ipaddress.ip_address(wire.split("%", 1)[0])
            elif len(wire) == 4:
                addr = ipaddress.IPv4Address(wire)
            else:
                addr = ipaddress.IPv6Address(wire)
            self._addresses[wire] = addr
        return addr

    def _dispatch(self, packet: RawReceived) -> None:
        self.stats.rx_packets += 1
        vrid = packet.vrid
        handler = self._handlers.get(vrid) if vrid is not None else None
        try:
            if handler is not None:
                handler(packet)
                return
            self.stats.rx_unknown_vrid += 1
            if self.on_unknown_vrid is not None:
                self.on_unknown_vrid(packet, vrid)
        except Exception:
            # Whoever sends us datagrams could repeat one that hits a bug: once per burst.
            _handler_log.error(
                f"{self.ifname}/{vrid}",
                "VRRP handler for VRID %s on %s failed",
                vrid,
                self.ifname,
                exc_info=True,
            )


class SocketRegistry:
    """Shares one VrrpSocket per (family, interface) among instances, with a refcount.

    ``acquire()`` never fails because an interface is missing: the socket comes back down
    (``up`` False, reported through ``on_status``) and ``link_up(ifname)`` reopens it when
    the runtime sees the link again.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_unknown_vrid: UnknownVridHandler | None = None,
        on_status: StatusHandler | None = None,
    ) -> None:
        self._loop = loop
        self.on_unknown_vrid = on_unknown_vrid
        self.on_status = on_status
        self._sockets: dict[tuple[int, str], VrrpSocket] = {}
        self._refs: dict[tuple[int, str], int] = {}

    def __iter__(self) -> Iterator[VrrpSocket]:
        return iter(list(self._sockets.values()))

    def __len__(self) -> int:
        return len(self._sockets)

    def get(self, family: int, ifname: str) -> VrrpSocket | None:
        return self._sockets.get((family, ifname))

    def refcount(self, family: int, ifname: str) -> int:
        return self._refs.get((family, ifname), 0)

    def acquire(self, family: int, ifname: str) -> VrrpSocket:
        """Return the shared socket for (family, ifname), opening it on first use."""
        key = (_check_family(family), _check_ifname(ifname))
        sock = self._sockets.get(key)
        if sock is None:
            sock = VrrpSocket(
                family,
                ifname,
                loop=self._loop,
                on_unknown_vrid=self.on_unknown_vrid,
                on_status=self.on_status,
            )
            sock.open()
            self._sockets[key] = sock
            self._refs[key] = 0
        self._refs[key] += 1
        return sock

    def release(self, sock: VrrpSocket) -> None:
        """Drop one reference; the last one closes the socket."""
        key = (sock.family, sock.ifname)
        if self._sockets.get(key) is not sock:
            return
        self._refs[key] -= 1
        if self._refs[key] <= 0:
            del self._sockets[key], self._refs[key]
            sock.close()

    def link_down(self, ifname: str, reason: str = "link down") -> None:
        """The runtime saw the interface go away or down: close its sockets."""
        for sock in self:
            if sock.ifname == ifname:
                sock.mark_down(reason)

    def link_up(self, ifname: str) -> list[VrrpSocket]:
        """The runtime saw the interface (re)appear: reopen what needs it, return those.

        Safe to call on every link event: a socket that is up on the interface's current
        index is left alone (reopening would drop datagrams queued on it) and not returned.
        """
        return [s for s in self if s.ifname == ifname and not s.is_current() and s.reopen()]

    def close(self) -> None:
        for sock in self:
            sock.close()
        self._sockets.clear()
        self._refs.clear()
