"""The family-neutral part of the socket fuzzer: plan, plug-ins, batches, framing.

Reproducibility: packet ``k`` of a run with seed ``s`` comes from batch ``k // batch``,
whose generator is ``random.Random(f"{s}:{family}:{batch}")``-driven; the same seed, plan
and code give the same bytes on every machine (``python -m bench.fuzz_vrrp --dump K``
prints one packet and how it was made).

Framing (:class:`Draft` -> bytes) and the Internet checksum are written here from the
RFCs, not imported from the agent: the fuzzer's idea of a valid packet must not share a
bug with the code under test.
"""

from __future__ import annotations

import importlib
import ipaddress
import random
import struct
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = [
    "FAMILIES",
    "Draft",
    "FrameGenerator",
    "FuzzPlan",
    "InstanceInfo",
    "Mutant",
    "PacketFamily",
    "TargetInfo",
    "checksum",
    "family",
    "generate_batch",
    "ipv4_multicast_mac",
    "ipv6_multicast_mac",
    "mac_bytes",
    "register_family",
]

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of ``data`` (odd length padded with a zero byte)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def ipv4_multicast_mac(group: str) -> bytes:
    raw = ipaddress.IPv4Address(group).packed
    return bytes([0x01, 0x00, 0x5E, raw[1] & 0x7F, raw[2], raw[3]])


def ipv6_multicast_mac(group: str) -> bytes:
    return b"\x33\x33" + ipaddress.IPv6Address(group).packed[-4:]


@dataclass(frozen=True)
class TargetInfo:
    """One agent node the fuzzer aims at: its MAC and addresses on the shared segment."""

    name: str
    mac: str
    ipv4: str
    ipv6: str
    ipv6_ll: str


@dataclass(frozen=True)
class InstanceInfo:
    """One VRRP instance the agents run (same on both nodes except the priority)."""

    name: str
    vrid: int
    version: int
    family: int
    adver_int: int  # wire units: v2 seconds, v3 centiseconds
    vips: tuple[str, ...]
    auth_password: str | None = None


@dataclass(frozen=True)
class FuzzPlan:
    """Everything a sender needs, as JSON-able data (it runs in another process)."""

    seed: int
    count: int
    rate: float  # packets per second; 0: as fast as the socket takes them
    max_seconds: float
    ifname: str
    src_mac: str
    src_ipv4: str
    src_ipv6_ll: str
    targets: tuple[TargetInfo, ...]
    instances: tuple[InstanceInfo, ...]
    #: priorities at or above this (and 0) could legitimately move mastership: never sent
    #: in a packet a receiver might accept
    safe_priority_below: int
    families: tuple[tuple[str, float], ...] = (("vrrp", 1.0),)
    batch: int = 1000
    multicast_share: float = 0.7
    #: BFD sessions the agents run, as the ``bfd`` family needs them (JSON-able mappings:
    #: target, name, family, local, peer, local_discr, remote_discr, auth; see
    #: bench.fuzz.bfd.SessionInfo)
    bfd_sessions: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FuzzPlan:
        data = dict(data)
        data["targets"] = tuple(TargetInfo(**t) for t in data["targets"])
        data["instances"] = tuple(
            InstanceInfo(**{**i, "vips": tuple(i["vips"])}) for i in data["instances"]
        )
        data["families"] = tuple((str(n), float(w)) for n, w in data["families"])
        data["bfd_sessions"] = tuple(dict(x) for x in data.get("bfd_sessions", ()))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Mutant:
    """One generated frame: the bytes, the malformation kind and a note for people."""

    frame: bytes
    kind: str
    family: str
    note: str = ""


class FrameGenerator(Protocol):
    """Makes frames for one plan (templates are built once, in ``PacketFamily.generator``)."""

    def frame(self, rng: random.Random) -> Mutant: ...


class PacketFamily(Protocol):
    """A plug-in: one protocol's templates and mutations."""

    name: str
    kinds: Sequence[str]

    def generator(self, plan: FuzzPlan) -> FrameGenerator: ...


#: name -> "module:ATTRIBUTE" of a PacketFamily
FAMILIES: dict[str, str] = {"vrrp": "bench.fuzz.vrrp:FAMILY", "bfd": "bench.fuzz.bfd:FAMILY"}


def register_family(name: str, ref: str) -> None:
    """Add a packet family (``"pkg.module:FAMILY"``); the name is what plans refer to."""
    if name in FAMILIES and FAMILIES[name] != ref:
        raise ValueError(f"packet family {name!r} is registered already ({FAMILIES[name]})")
    FAMILIES[name] = ref


def family(name: str) -> PacketFamily:
    try:
        ref = FAMILIES[name]
    except KeyError:
        raise KeyError(f"no packet family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None
    module, _sep, attr = ref.partition(":")
    fam: PacketFamily = getattr(importlib.import_module(module), attr)
    return fam


def generate_batch(
    plan: FuzzPlan, generators: dict[str, FrameGenerator], index: int
) -> Iterator[Mutant]:
    """The frames of batch ``index`` (``plan.batch`` of them, fewer for the last one)."""
    start = index * plan.batch
    n = max(0, min(plan.batch, plan.count - start))
    names = [name for name, _ in plan.families]
    weights = [w for _, w in plan.families]
    picker = random.Random(f"{plan.seed}:pick:{index}")
    rngs = {name: random.Random(f"{plan.seed}:{name}:{index}") for name in names}
    for _ in range(n):
        name = names[0] if len(names) == 1 else picker.choices(names, weights)[0]
        yield generators[name].frame(rngs[name])


# ------------------------------------------------------------------------------ framing


@dataclass
class Draft:
    """An IP packet on Ethernet, field by field, before it is made into bytes.

    The derived fields (lengths, header checksum) are computed by :meth:`build` unless a
    mutation overrides them: ``ip_len`` (IPv4 total / IPv6 payload length),
    ``ip_checksum``, ``ip_version``, ``ihl``. ``ext`` are IPv6 extension headers put
    before the payload (each ``(next_header_of_this_one_unused, bytes)`` chained by
    :meth:`build`), ``trailer`` bytes after the IP packet in the frame.
    """

    family: int
    dst_mac: bytes
    src_mac: bytes
    src: bytes
    dst: bytes
    proto: int
    payload: bytes
    ttl: int = 255
    tos: int = 0xC0
    ident: int = 0
    frag: int = 0  # IPv4 flags and fragment offset
    options: bytes = b""  # IPv4 options (padded by the mutation)
    ext: tuple[tuple[int, bytes], ...] = ()  # IPv6: (type, body incl. its length byte)
    ip_len: int | None = None
    ip_checksum: int | None = None
    ip_version: int | None = None
    ihl: int | None = None
    trailer: bytes = b""
    flow: int = 0

    def copy(self, **changes: Any) -> Draft:
        """A shallow copy with ``changes`` (faster than dataclasses.replace, which
        re-runs __init__: this is on the per-packet path)."""
        new = object.__new__(Draft)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def pseudo_header(self, length: int | None = None) -> bytes:
        """The upper-layer pseudo-header for this packet's addresses and payload."""
        size = len(self.payload) if length is None else length
        if self.family == 4:
            return struct.pack("!4s4sBBH", self.src, self.dst, 0, self.proto, size)
        return struct.pack("!16s16sI3xB", self.src, self.dst, size, self.proto)

    def build(self) -> bytes:
        if self.family == 4:
            ihl = self.ihl if self.ihl is not None else 5 + len(self.options) // 4
            total = (
                self.ip_len
                if self.ip_len is not None
                else 20 + len(self.options) + len(self.payload)
            )
            version = self.ip_version if self.ip_version is not None else 4
            header = (
                _IPV4.pack(
                    (version << 4) | (ihl & 0x0F),
                    self.tos,
                    total & 0xFFFF,
                    self.ident,
                    self.frag,
                    self.ttl,
                    self.proto,
                    0,
                    self.src,
                    self.dst,
                )
                + self.options
            )
            csum = self.ip_checksum if self.ip_checksum is not None else checksum(header)
            header = header[:10] + struct.pack("!H", csum) + header[12:]
            return (
                _ETH.pack(self.dst_mac, self.src_mac, ETH_IPV4)
                + header
                + self.payload
                + (self.trailer)
            )
        chain = b""
        next_header = self.proto
        for ext_type, body in reversed(self.ext):
            chain = bytes([next_header]) + body + chain
            next_header = ext_type
        plen = self.ip_len if self.ip_len is not None else len(chain) + len(self.payload)
        version = self.ip_version if self.ip_version is not None else 6
        header = _IPV6.pack(
            (version << 28) | (self.tos << 20) | (self.flow & 0xFFFFF),
            plen & 0xFFFF,
            next_header,
            self.ttl,
            self.src,
            self.dst,
        )
        return (
            _ETH.pack(self.dst_mac, self.src_mac, ETH_IPV6)
            + header
            + chain
            + self.payload
            + (self.trailer)
        )

    @classmethod
    def parse(cls, frame: bytes) -> Draft:
        """The draft of a plain frame (no options or extension headers): for templates."""
        dst_mac, src_mac, ethertype = _ETH.unpack_from(frame)
        ip = frame[_ETH.size :]
        if ethertype == ETH_IPV4:
            ver_ihl, tos, total, ident, frag, ttl, proto, _c, src, dst = _IPV4.unpack_from(ip)
            if ver_ihl != 0x45:
                raise ValueError("template with IPv4 options")
            return cls(
                4, dst_mac, src_mac, src, dst, proto, bytes(ip[20:total]), ttl, tos, ident, frag
            )
        if ethertype == ETH_IPV6:
            vtf, plen, nh, hlim, src, dst = _IPV6.unpack_from(ip)
            return cls(
                6,
                dst_mac,
                src_mac,
                src,
                dst,
                nh,
                bytes(ip[40 : 40 + plen]),
                hlim,
                (vtf >> 20) & 0xFF,
                flow=vtf & 0xFFFFF,
            )
        raise ValueError(f"template with ethertype 0x{ethertype:04x}")
