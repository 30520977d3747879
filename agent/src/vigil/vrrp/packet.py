"""VRRP v2/v3 advertisement codec and receive-path checks, sans I/O.

Wire formats (RFC 3768 for v2, RFC 5798/9568 for v3)::

    v2: |ver|type| vrid | prio | count | auth type | adver int (s) | checksum |
        | count x IPv4 address | 8 bytes authentication data |
    v3: |ver|type| vrid | prio | count | rsvd(4) adver int (12, cs) | checksum |
        | count x IPv4 or IPv6 address |

Nothing here touches a socket: the transport hands in bytes (plus the addresses and hop
limit it learned from ancillary data) and gets back either a :class:`Received` or a typed
:class:`Rejection` whose ``detail`` is written for an operator reading the log. Nothing
raises on bad input from the network; exceptions are kept for programming errors (a
packet we are asked to build that cannot exist on the wire).

Checks are split in two layers, as keepalived does:

* :func:`decode_ipv4` / :func:`decode_payload` check what makes a packet VRRP at all
  (length, TTL/hop limit 255, version, type, checksum, VRID 0, interval 0). They need no
  configuration, so the shared per-interface socket runs them once before the VRID demux.
* :func:`check_for_instance` checks one instance's expectations (version, auth, v2
  interval, address list, our own packets) after the demux.

Address list mismatches: RFC 3768/5798 say a receiver MAY verify the address list and
MAY drop on mismatch. keepalived 2.2.7 ignores such an advert unless
``skip_check_adv_addr`` is set and the sender is the known master; that leaves the backup
without a master and both nodes end up MASTER, which turns a VIP typo into a split brain
(seen in the lab: each node logs "ip address associated with VRID 77 not present in MASTER
advert" once a second and both hold their VIPs).
vigil instead reports it as a non-dropping :class:`Rejection` (``drop`` is False): the
caller logs and counts it and still processes the advert, so mastership stays single and
the mismatch is visible. ``InstanceExpectation(strict_addresses=True)`` restores the
dropping behaviour for those who want keepalived's.
"""

from __future__ import annotations

import enum
import hmac
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import ClassVar, Protocol

from vigil.vrrp.checksum import (
    checksum_ok,
    internet_checksum,
    ipv4_pseudo_header,
    ipv6_pseudo_header,
)

IPAddress = IPv4Address | IPv6Address

_HEADER = struct.Struct("!BBBBBBH")  # ver/type, vrid, prio, count, b4, b5, checksum
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_ADDR_LEN = {4: 4, 6: 16}
_ADDR_CLASS: dict[int, type[IPv4Address] | type[IPv6Address]] = {4: IPv4Address, 6: IPv6Address}
_AUTH_NAMES = {0: "none", 1: "PASS", 2: "AH"}


class ChecksumMode(enum.Enum):
    """What a VRRP checksum covers.

    VRRPv2 always covers the message only. VRRPv3 covers an IP pseudo-header as well (the
    RFC, keepalived's and FRR's default); over IPv4 some peers are configured to leave it
    out (keepalived 2.2.8+ ``v3_checksum_as_v2``; later FRR releases with
    ``no checksum-with-ipv4-pseudoheader``; keepalived 2.2.7 and FRR 8.4.4 always include it).
    """

    PSEUDO_HEADER = "pseudo-header"
    MESSAGE_ONLY = "message-only"


class RejectReason(enum.Enum):
    """Why an advert was not accepted; the value is the metric/log label.

    OWN is routine (our multicast looped back) and is best counted without logging.
    """

    TRUNCATED = "truncated"
    FAMILY = "family"
    LENGTH = "length"
    PROTOCOL = "protocol"
    TTL = "ttl"
    VERSION = "version"
    TYPE = "type"
    CHECKSUM = "checksum"
    VRID = "vrid"
    AUTH = "auth"
    INTERVAL = "interval"
    ADDRESSES = "addresses"
    OWN = "own"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A received packet that failed a check: the typed reason and an operator message.

    ``drop`` is False only for findings that are logged and counted while the advert is
    still processed (an address list mismatch, see the module docstring).
    """

    reason: RejectReason
    detail: str
    drop: bool = True

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


class MalformedPacket(ValueError):
    """Raised by :meth:`VrrpPacket.unpack` for bytes that are not a VRRP message."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


def _check_byte(name: str, value: int, low: int = 0, high: int = 0xFF) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name}: must be an integer from {low} to {high}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class VrrpPacket:
    """One VRRP message, v2 or v3, as it is on the wire.

    ``adver_int`` is in wire units: seconds for v2, centiseconds for v3 (see
    :attr:`interval_seconds`). ``checksum`` is the value read from the wire (0 for a packet
    built locally); :meth:`pack` always computes a fresh one. ``reserved`` keeps the four
    v3 reserved bits so that decoding and re-encoding is byte-exact. ``count`` is derived
    from ``addresses``.
    """

    PROTOCOL: ClassVar[int] = 112
    TTL: ClassVar[int] = 255
    VERSION_2: ClassVar[int] = 2
    VERSION_3: ClassVar[int] = 3
    TYPE_ADVERTISEMENT: ClassVar[int] = 1
    AUTH_NONE: ClassVar[int] = 0
    AUTH_PASS: ClassVar[int] = 1
    AUTH_AH: ClassVar[int] = 2
    AUTH_DATA_LEN: ClassVar[int] = 8
    HEADER_LEN: ClassVar[int] = 8
    MAX_ADDRESSES: ClassVar[int] = 255
    MAX_V2_INTERVAL: ClassVar[int] = 0xFF
    MAX_V3_INTERVAL: ClassVar[int] = 0x0FFF
    PRIORITY_STOP: ClassVar[int] = 0
    PRIORITY_OWNER: ClassVar[int] = 255
    GROUP_V4: ClassVar[IPv4Address] = IPv4Address("224.0.0.18")
    GROUP_V6: ClassVar[IPv6Address] = IPv6Address("ff02::12")
    TOS: ClassVar[int] = 0xC0  # internetwork control, as keepalived and FRR send

    version: int
    vrid: int
    priority: int
    adver_int: int
    addresses: tuple[IPAddress, ...] = ()
    type: int = 1
    auth_type: int = 0
    auth_data: bytes = b""
    checksum: int = 0
    reserved: int = 0

    def __post_init__(self) -> None:
        if self.version not in (2, 3):
            raise ValueError(f"version: must be 2 or 3, got {self.version!r}")
        _check_byte("type", self.type, 0, 0x0F)
        _check_byte("vrid", self.vrid)
        _check_byte("priority", self.priority)
        _check_byte("checksum", self.checksum, 0, 0xFFFF)
        addresses = tuple(self.addresses)
        object.__setattr__(self, "addresses", addresses)
        if len(addresses) > self.MAX_ADDRESSES:
            raise ValueError(
                f"addresses: at most {self.MAX_ADDRESSES} fit in one advert, got {len(addresses)}"
            )
        families = {getattr(a, "version", None) for a in addresses}
        if None in families or len(families) > 1:
            raise ValueError(
                "addresses: must all be IPv4Address or all IPv6Address objects, "
                f"got {[str(a) for a in addresses]}"
            )
        if self.version == 2:
            _check_byte("adver_int", self.adver_int, 0, self.MAX_V2_INTERVAL)
            _check_byte("auth_type", self.auth_type)
            if families - {4}:
                raise ValueError("addresses: VRRPv2 carries IPv4 addresses only; use version 3")
            if self.reserved:
                raise ValueError("reserved: VRRPv2 has no reserved bits, must be 0")
            data = bytes(self.auth_data)
            if len(data) > self.AUTH_DATA_LEN:
                raise ValueError(f"auth_data: at most {self.AUTH_DATA_LEN} bytes, got {len(data)}")
            object.__setattr__(self, "auth_data", data.ljust(self.AUTH_DATA_LEN, b"\x00"))
        else:
            _check_byte("adver_int", self.adver_int, 0, self.MAX_V3_INTERVAL)
            _check_byte("reserved", self.reserved, 0, 0x0F)
            if self.auth_type or self.auth_data:
                raise ValueError(
                    "auth_type/auth_data: VRRPv3 has no authentication; leave them unset"
                )

    @property
    def count(self) -> int:
        """Number of addresses (the wire's "Count IP Addrs")."""
        return len(self.addresses)

    @property
    def family(self) -> int | None:
        """4 or 6 from the addresses; None for an advert that lists none."""
        return self.addresses[0].version if self.addresses else None

    @property
    def interval_seconds(self) -> float:
        """The advertisement interval in seconds, whatever the version's wire unit."""
        return float(self.adver_int) if self.version == 2 else self.adver_int / 100

    @staticmethod
    def message_length(version: int, family: int, count: int) -> int:
        """Length of a VRRP message with ``count`` addresses of ``family``."""
        auth = VrrpPacket.AUTH_DATA_LEN if version == 2 else 0
        return VrrpPacket.HEADER_LEN + count * _ADDR_LEN[family] + auth

    def _body(self, checksum: int) -> bytes:
        if self.version == 2:
            b4, b5 = self.auth_type, self.adver_int
        else:
            word = (self.reserved << 12) | self.adver_int
            b4, b5 = word >> 8, word & 0xFF
        head = _HEADER.pack(
            (self.version << 4) | self.type, self.vrid, self.priority, self.count, b4, b5, checksum
        )
        return b"".join((head, *(a.packed for a in self.addresses), self.auth_data))

    def pack(
        self,
        src: IPAddress | None = None,
        dst: IPAddress | None = None,
        *,
        pseudo_header: bool = True,
    ) -> bytes:
        """Encode with a freshly computed checksum.

        v2: the checksum covers the message only; ``src``/``dst`` are ignored. v3 over
        IPv4: with the pseudo-header (``src``/``dst`` required) unless ``pseudo_header`` is
        False. v3 over IPv6: always the pseudo-header; without ``src``/``dst`` the checksum
        is left 0 for the kernel to fill (IPV6_CHECKSUM=6 on the socket).
        """
        body = self._body(0)
        if self.version == 2:
            checksum = internet_checksum(body)
        else:
            family = self._family_for(src, dst)
            if family == 4 and not pseudo_header:
                checksum = internet_checksum(body)
            elif src is None or dst is None:
                if family == 4:
                    raise ValueError(
                        "src/dst: a VRRPv3 IPv4 checksum with the pseudo-header needs the "
                        "source and destination addresses (or pass pseudo_header=False)"
                    )
                return body
            else:
                checksum = internet_checksum(_pseudo_header(src, dst, len(body)) + body)
        return body[:6] + checksum.to_bytes(2, "big") + body[8:]

    def _family_for(self, src: IPAddress | None, dst: IPAddress | None) -> int:
        versions = {a.version for a in (src, dst) if a is not None}
        if len(versions) > 1:
            raise ValueError(f"src/dst: {src} and {dst} are of different address families")
        family = versions.pop() if versions else self.family
        if family is None:
            raise ValueError("src/dst: give them to tell IPv4 from IPv6 (no addresses listed)")
        if self.family is not None and self.family != family:
            raise ValueError(
                f"addresses: IPv{self.family} addresses cannot be sent from IPv{family} "
                f"{src or dst}"
            )
        return family

    @classmethod
    def unpack(cls, payload: bytes, *, family: int) -> VrrpPacket:
        """Decode the structure of a VRRP message; checksum and semantics are not checked.

        Raises :class:`MalformedPacket` (a ValueError carrying the :class:`Rejection`) when
        the bytes cannot be a VRRP message of ``family``. The receive path uses
        :func:`decode_payload` instead, which never raises.
        """
        result = _parse(payload, family)
        if isinstance(result, Rejection):
            raise MalformedPacket(result)
        return result


def _pseudo_header(src: IPAddress, dst: IPAddress, length: int) -> bytes:
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return ipv4_pseudo_header(src, dst, VrrpPacket.PROTOCOL, length)
    if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
        return ipv6_pseudo_header(src, dst, VrrpPacket.PROTOCOL, length)
    raise ValueError(f"src/dst: {src} and {dst} are of different address families")


def _parse(payload: bytes, family: int) -> VrrpPacket | Rejection:
    """Structural decode shared by :meth:`VrrpPacket.unpack` and the receive path."""
    size = len(payload)
    if size < VrrpPacket.HEADER_LEN:
        return Rejection(
            RejectReason.TRUNCATED,
            f"VRRP message is {size} bytes, shorter than the {VrrpPacket.HEADER_LEN}-byte header",
        )
    ver_type, vrid, priority, count, b4, b5, checksum = _HEADER.unpack_from(payload)
    version = ver_type >> 4
    if version not in (2, 3):
        return Rejection(
            RejectReason.VERSION, f"VRRP version {version} is not supported (only 2 and 3 are)"
        )
    if version == 2 and family == 6:
        return Rejection(
            RejectReason.VERSION,
            "VRRPv2 advert received over IPv6; VRRPv2 is IPv4-only, IPv6 needs version 3",
        )
    expected = VrrpPacket.message_length(version, family, count)
    if size != expected:
        return Rejection(
            RejectReason.LENGTH,
            f"VRRPv{version} message is {size} bytes but its count of {count} IPv{family} "
            f"address(es) means {expected} bytes ({'too long' if size > expected else 'short'})",
        )
    addr_len = _ADDR_LEN[family]
    make = _ADDR_CLASS[family]
    end = VrrpPacket.HEADER_LEN + count * addr_len
    addresses = tuple(
        make(payload[i : i + addr_len]) for i in range(VrrpPacket.HEADER_LEN, end, addr_len)
    )
    if version == 2:
        return VrrpPacket(
            version=2,
            type=ver_type & 0x0F,
            vrid=vrid,
            priority=priority,
            auth_type=b4,
            adver_int=b5,
            checksum=checksum,
            addresses=addresses,
            auth_data=bytes(payload[end:]),
        )
    word = (b4 << 8) | b5
    return VrrpPacket(
        version=3,
        type=ver_type & 0x0F,
        vrid=vrid,
        priority=priority,
        adver_int=word & 0x0FFF,
        reserved=word >> 12,
        checksum=checksum,
        addresses=addresses,
    )


@dataclass(frozen=True, slots=True)
class Received:
    """An advert that passed the protocol-level checks, with what the IP layer told us.

    ``ttl`` is the IPv4 TTL or IPv6 hop limit (None when the transport could not learn
    it); ``checksum_mode`` says what the valid checksum covered.
    """

    packet: VrrpPacket
    src: IPAddress
    dst: IPAddress
    ttl: int | None
    checksum_mode: ChecksumMode

    @property
    def family(self) -> int:
        return self.src.version


def _as_address(value: IPAddress | str) -> IPAddress:
    return value if isinstance(value, IPv4Address | IPv6Address) else ip_address(value)


class RawDatagram(Protocol):
    """What a raw socket read yields (``vigil.vrrp.transport.RawReceived`` has this shape).

    ``data`` is the whole IPv4 datagram, or the VRRP message alone for IPv6; ``ttl`` is
    the TTL / hop limit from ancillary data, negative when the kernel gave none.
    """

    @property
    def family(self) -> int: ...
    @property
    def src(self) -> IPAddress: ...
    @property
    def dst(self) -> IPAddress: ...
    @property
    def ttl(self) -> int: ...
    @property
    def data(self) -> bytes: ...


def decode_raw(
    raw: RawDatagram, *, pseudo_header: bool | None = None, check_ttl: bool = True
) -> Received | Rejection:
    """Decode a transport datagram of either family: the one call the runtime needs.

    IPv4 goes through :func:`decode_ipv4` (the IP header is authoritative for addresses
    and TTL); IPv6 through :func:`decode_payload` with the ancillary-data facts.
    """
    if raw.family == 4:
        return decode_ipv4(raw.data, pseudo_header=pseudo_header, check_ttl=check_ttl)
    return decode_payload(
        raw.data,
        family=raw.family,
        src=raw.src,
        dst=raw.dst,
        hop_limit=raw.ttl if raw.ttl >= 0 else None,
        pseudo_header=pseudo_header,
        check_ttl=check_ttl,
    )


def decode_ipv4(
    datagram: bytes, *, pseudo_header: bool | None = None, check_ttl: bool = True
) -> Received | Rejection:
    """Decode what a raw IPv4 socket delivers: the IP header followed by the VRRP message.

    ``pseudo_header`` as for :func:`decode_payload`. ``check_ttl=False`` is for unicast
    peers, which may legitimately be routed (keepalived skips the TTL check there too).
    """
    size = len(datagram)
    if size < 20:
        return Rejection(
            RejectReason.TRUNCATED, f"IPv4 datagram is {size} bytes, shorter than an IP header"
        )
    ver_ihl, _tos, total, _ident, frag, ttl, proto, _hcs, src_b, dst_b = _IPV4_HEADER.unpack_from(
        datagram
    )
    if ver_ihl >> 4 != 4:
        return Rejection(
            RejectReason.FAMILY, f"IP version {ver_ihl >> 4} on the IPv4 socket, expected 4"
        )
    ihl = (ver_ihl & 0x0F) * 4
    if ihl < 20 or ihl > size:
        return Rejection(
            RejectReason.LENGTH,
            f"IPv4 header length {ihl} bytes is impossible for a {size}-byte datagram",
        )
    if total != size:
        return Rejection(
            RejectReason.LENGTH,
            f"IPv4 total length says {total} bytes but {size} were received",
        )
    if frag & 0x3FFF:
        return Rejection(
            RejectReason.LENGTH, "IPv4 fragment received; VRRP adverts are never fragmented"
        )
    if proto != VrrpPacket.PROTOCOL:
        name = "IPsec AH (VRRPv2 AH authentication is not supported)" if proto == 51 else proto
        return Rejection(
            RejectReason.PROTOCOL,
            f"IP protocol {name} on the VRRP socket, expected {VrrpPacket.PROTOCOL}",
        )
    return decode_payload(
        datagram[ihl:],
        family=4,
        src=IPv4Address(src_b),
        dst=IPv4Address(dst_b),
        hop_limit=ttl,
        pseudo_header=pseudo_header,
        check_ttl=check_ttl,
    )


def decode_payload(
    payload: bytes,
    *,
    family: int,
    src: IPAddress | str,
    dst: IPAddress | str,
    hop_limit: int | None,
    pseudo_header: bool | None = None,
    check_ttl: bool = True,
) -> Received | Rejection:
    """Decode and check a VRRP message whose IP header was already taken off.

    IPv6 raw sockets deliver only the payload: ``src`` from recvmsg's address, ``dst`` and
    ``hop_limit`` from IPV6_PKTINFO / IPV6_HOPLIMIT ancillary data (None skips the hop
    limit check, as does ``check_ttl=False`` for unicast peers). ``pseudo_header``
    applies to v3 over IPv4: None accepts a checksum either with or without the
    pseudo-header and reports which one matched; True/False accepts only that one.
    """
    if family not in (4, 6):
        return Rejection(RejectReason.FAMILY, f"address family {family!r} is neither 4 nor 6")
    try:
        src_a, dst_a = _as_address(src), _as_address(dst)
    except ValueError as exc:
        return Rejection(RejectReason.FAMILY, f"unusable source/destination address: {exc}")
    if src_a.version != family or dst_a.version != family:
        return Rejection(
            RejectReason.FAMILY,
            f"source {src_a} / destination {dst_a} are not both IPv{family}",
        )
    if check_ttl and hop_limit is not None and hop_limit != VrrpPacket.TTL:
        word = "TTL" if family == 4 else "hop limit"
        return Rejection(
            RejectReason.TTL,
            f"{word} {hop_limit} from {src_a}, VRRP requires {VrrpPacket.TTL}: the advert "
            "crossed a router or was not sent by a VRRP speaker on this link",
        )
    parsed = _parse(payload, family)
    if isinstance(parsed, Rejection):
        return parsed
    if parsed.type != VrrpPacket.TYPE_ADVERTISEMENT:
        return Rejection(
            RejectReason.TYPE,
            f"VRRP packet type {parsed.type} from {src_a}; only {VrrpPacket.TYPE_ADVERTISEMENT} "
            "(ADVERTISEMENT) exists",
        )
    mode = _verify_checksum(payload, parsed, src_a, dst_a, pseudo_header)
    if isinstance(mode, Rejection):
        return mode
    if parsed.vrid == 0:
        return Rejection(RejectReason.VRID, f"VRID 0 from {src_a} is invalid (VRIDs are 1-255)")
    if parsed.adver_int == 0:
        return Rejection(
            RejectReason.INTERVAL,
            f"advertisement interval 0 from {src_a} (VRID {parsed.vrid}) is invalid",
        )
    if parsed.version == 2 and parsed.auth_type not in _AUTH_NAMES:
        return Rejection(
            RejectReason.AUTH,
            f"unknown VRRPv2 authentication type {parsed.auth_type} from {src_a} "
            "(known: 0 none, 1 PASS, 2 AH)",
        )
    return Received(parsed, src_a, dst_a, hop_limit, mode)


def _verify_checksum(
    payload: bytes,
    packet: VrrpPacket,
    src: IPAddress,
    dst: IPAddress,
    pseudo_header: bool | None,
) -> ChecksumMode | Rejection:
    if packet.version == 2:
        if checksum_ok(payload):
            return ChecksumMode.MESSAGE_ONLY
        return _bad_checksum(packet, src, internet_checksum(_zero_checksum(payload)))
    with_ph = _pseudo_header(src, dst, len(payload))
    if checksum_ok(with_ph + payload):
        if pseudo_header is False and src.version == 4:
            return Rejection(
                RejectReason.CHECKSUM,
                f"VRRPv3 checksum from {src} includes the IPv4 pseudo-header but this "
                "instance expects it without: set v3_checksum_pseudo_header: true (or "
                "configure the peer to leave the pseudo-header out)",
            )
        return ChecksumMode.PSEUDO_HEADER
    if src.version == 4 and checksum_ok(payload):
        if pseudo_header is True:
            return Rejection(
                RejectReason.CHECKSUM,
                f"VRRPv3 checksum from {src} leaves out the IPv4 pseudo-header (the peer "
                "runs keepalived v3_checksum_as_v2 or FRR without "
                "checksum-with-ipv4-pseudoheader): set v3_checksum_pseudo_header: false, or "
                "make the peer include it",
            )
        return ChecksumMode.MESSAGE_ONLY
    return _bad_checksum(packet, src, internet_checksum(with_ph + _zero_checksum(payload)))


def _zero_checksum(payload: bytes) -> bytes:
    return payload[:6] + b"\x00\x00" + payload[8:]


def _bad_checksum(packet: VrrpPacket, src: IPAddress, expected: int) -> Rejection:
    return Rejection(
        RejectReason.CHECKSUM,
        f"bad VRRPv{packet.version} checksum 0x{packet.checksum:04x} from {src} "
        f"(VRID {packet.vrid}), expected 0x{expected:04x}: the packet was corrupted",
    )


def check_checksum_mode(received: Received, *, pseudo_header: bool) -> Rejection | None:
    """Check a received v3/IPv4 advert's checksum mode against the instance's setting.

    :func:`decode_ipv4` accepts both modes by default so one shared socket can serve
    instances configured either way; each instance then calls this. v2 and IPv6 adverts
    have only one mode and always pass.
    """
    if received.packet.version != 3 or received.family != 4:
        return None
    want = ChecksumMode.PSEUDO_HEADER if pseudo_header else ChecksumMode.MESSAGE_ONLY
    if received.checksum_mode is want:
        return None
    if pseudo_header:
        detail = (
            f"VRRPv3 checksum from {received.src} leaves out the IPv4 pseudo-header while this "
            "instance includes it: set v3_checksum_pseudo_header: false, or configure the "
            "peer to include it (keepalived: no v3_checksum_as_v2)"
        )
    else:
        detail = (
            f"VRRPv3 checksum from {received.src} includes the IPv4 pseudo-header while this "
            "instance leaves it out: set v3_checksum_pseudo_header: true, or configure the "
            "peer to leave it out"
        )
    return Rejection(RejectReason.CHECKSUM, detail)


def pass_auth_data(password: str | bytes) -> bytes:
    """The 8 bytes VRRPv2 PASS authentication carries: the password NUL-padded."""
    data = password.encode() if isinstance(password, str) else bytes(password)
    if len(data) > VrrpPacket.AUTH_DATA_LEN:
        raise ValueError(
            f"authentication.password: at most {VrrpPacket.AUTH_DATA_LEN} bytes for PASS, "
            f"got {len(data)}; shorten it"
        )
    return data.ljust(VrrpPacket.AUTH_DATA_LEN, b"\x00")


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceExpectation:
    """What one VRRP instance expects of adverts for its VRID.

    ``adver_int`` is in wire units (v2 seconds, v3 centiseconds). ``auth_data`` is the
    PASS password (NUL-padded to 8 bytes here). ``own_addresses`` are this node's
    addresses on the interface, to recognise our own multicast looped back.
    """

    version: int
    vrid: int
    adver_int: int
    auth_type: int = 0
    auth_data: bytes = b""
    addresses: tuple[IPAddress, ...] = ()
    own_addresses: frozenset[IPAddress] = field(default_factory=frozenset)
    strict_addresses: bool = False

    def __post_init__(self) -> None:
        if self.version == 2:
            object.__setattr__(self, "auth_data", pass_auth_data(self.auth_data))
        object.__setattr__(self, "own_addresses", frozenset(self.own_addresses))


def check_for_instance(received: Received, expect: InstanceExpectation) -> Rejection | None:
    """Check a decoded advert against one instance; None when it is acceptable.

    A returned Rejection with ``drop`` False (address list mismatch) is to be logged and
    counted while the advert is still processed. v3 interval differences are not checked:
    a backup learns the master's interval (RFC 5798 section 6.4.2).
    """
    pkt, src = received.packet, received.src
    if src in expect.own_addresses:
        return Rejection(
            RejectReason.OWN, f"advert from {src} is our own (multicast loopback); ignored"
        )
    if pkt.version != expect.version:
        return Rejection(
            RejectReason.VERSION,
            f"VRRPv{pkt.version} advert from {src} for VRID {pkt.vrid}, this instance runs "
            f"VRRPv{expect.version}: set the same version on every node of the VRID",
        )
    if pkt.vrid != expect.vrid:
        return Rejection(
            RejectReason.VRID,
            f"advert from {src} is for VRID {pkt.vrid}, this instance is VRID {expect.vrid}",
        )
    if pkt.version == 2:
        rejection = _check_v2(pkt, src, expect)
        if rejection is not None:
            return rejection
    return _check_addresses(pkt, src, expect)


def _check_v2(pkt: VrrpPacket, src: IPAddress, expect: InstanceExpectation) -> Rejection | None:
    if pkt.auth_type != expect.auth_type:
        got = _AUTH_NAMES.get(pkt.auth_type, str(pkt.auth_type))
        want = _AUTH_NAMES.get(expect.auth_type, str(expect.auth_type))
        return Rejection(
            RejectReason.AUTH,
            f"advert from {src} uses authentication type {got}, this instance uses {want}: "
            "configure the same authentication on every node of the VRID",
        )
    if pkt.auth_type == VrrpPacket.AUTH_PASS and not hmac.compare_digest(
        pkt.auth_data, expect.auth_data
    ):
        return Rejection(
            RejectReason.AUTH,
            f"advert from {src} carries a different PASS password: set the same "
            "authentication password on every node of the VRID",
        )
    if pkt.adver_int != expect.adver_int:
        return Rejection(
            RejectReason.INTERVAL,
            f"advert from {src} has interval {pkt.adver_int}s, this instance uses "
            f"{expect.adver_int}s: VRRPv2 needs the same advert_interval on every node",
        )
    return None


def _check_addresses(
    pkt: VrrpPacket, src: IPAddress, expect: InstanceExpectation
) -> Rejection | None:
    if pkt.addresses == expect.addresses:
        return None
    got, want = set(pkt.addresses), set(expect.addresses)
    if got == want and pkt.count == len(expect.addresses):
        return None  # same list in another order
    parts = []
    missing = sorted(want - got, key=_addr_key)
    extra = sorted(got - want, key=_addr_key)
    if missing:
        parts.append("missing " + ", ".join(map(str, missing)))
    if extra:
        parts.append("extra " + ", ".join(map(str, extra)))
    if not parts:
        parts.append("duplicates in the list")
    return Rejection(
        RejectReason.ADDRESSES,
        f"advert from {src} lists {pkt.count} address(es), this instance has "
        f"{len(expect.addresses)} ({'; '.join(parts)}): make the virtual addresses match "
        "on every node of the VRID",
        drop=expect.strict_addresses,
    )


def _addr_key(addr: IPAddress) -> tuple[int, int]:
    return addr.version, int(addr)


def interval_to_wire(version: int, seconds: float) -> int:
    """Convert a configured interval in seconds to the advert field (v2 s, v3 cs)."""
    if version == 2:
        if seconds != int(seconds) or not 1 <= seconds <= VrrpPacket.MAX_V2_INTERVAL:
            raise ValueError(
                f"advert_interval: VRRPv2 needs whole seconds from 1 to "
                f"{VrrpPacket.MAX_V2_INTERVAL}, got {seconds}; use version 3 for sub-second"
            )
        return int(seconds)
    centis = round(seconds * 100)
    if not 1 <= centis <= VrrpPacket.MAX_V3_INTERVAL or abs(centis - seconds * 100) > 1e-6:
        raise ValueError(
            f"advert_interval: VRRPv3 needs 0.01 to {VrrpPacket.MAX_V3_INTERVAL / 100} s in "
            f"steps of 0.01 s, got {seconds}"
        )
    return centis


def build_advert(
    *,
    version: int,
    vrid: int,
    priority: int,
    adver_int: int,
    addresses: tuple[IPAddress, ...] | list[IPAddress],
    src: IPAddress | None = None,
    dst: IPAddress | None = None,
    auth_type: int = 0,
    auth_data: bytes = b"",
    pseudo_header: bool = True,
) -> bytes:
    """Encode an ADVERTISEMENT (the VRRP payload, no IP header) for the sender.

    ``adver_int`` in wire units (see :func:`interval_to_wire`); ``auth_data`` the PASS
    password for v2 (see :func:`pass_auth_data`). ``src``/``dst`` as for
    :meth:`VrrpPacket.pack`.
    """
    if not 1 <= vrid <= 255:
        raise ValueError(f"vrid: must be from 1 to 255, got {vrid}")
    if adver_int < 1:
        raise ValueError(f"adver_int: must be at least 1, got {adver_int}")
    packet = VrrpPacket(
        version=version,
        vrid=vrid,
        priority=priority,
        adver_int=adver_int,
        addresses=tuple(addresses),
        auth_type=auth_type,
        auth_data=auth_data,
    )
    return packet.pack(src, dst, pseudo_header=pseudo_header)


def build_ipv4_header(
    *,
    src: IPv4Address,
    dst: IPv4Address,
    payload_len: int,
    ident: int = 0,
    ttl: int = VrrpPacket.TTL,
    tos: int = VrrpPacket.TOS,
    dont_fragment: bool = False,
    protocol: int = VrrpPacket.PROTOCOL,
) -> bytes:
    """A 20-byte IPv4 header (no options, header checksum filled) for IP_HDRINCL senders.

    Defaults match keepalived: TTL 255, TOS 0xc0, DF clear, protocol 112. With ident 0
    the Linux kernel picks an IP ID when the packet is sent.
    """
    total = 20 + payload_len
    if total > 0xFFFF:
        raise ValueError(f"payload_len: {payload_len} bytes does not fit in an IPv4 datagram")
    _check_byte("ident", ident, 0, 0xFFFF)
    _check_byte("ttl", ttl)
    _check_byte("tos", tos)
    frag = 0x4000 if dont_fragment else 0
    header = _IPV4_HEADER.pack(
        0x45, tos, total, ident, frag, ttl, protocol, 0, src.packed, dst.packed
    )
    checksum = internet_checksum(header)
    return header[:10] + checksum.to_bytes(2, "big") + header[12:]
