"""Property tests for the VRRP codec: scapy as the oracle both ways, and decoder fuzzing.

The decoders sit on the packet path of a daemon that must not die on a hostile LAN: for
any input they return a Received or a Rejection, never raise.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.vrrp import VRRP, VRRPv3
from scapy.packet import Packet, Raw
from scapy.utils import rdpcap

from vigil.vrrp.checksum import internet_checksum
from vigil.vrrp.packet import (
    ChecksumMode,
    InstanceExpectation,
    IPAddress,
    Received,
    Rejection,
    VrrpPacket,
    build_ipv4_header,
    check_checksum_mode,
    check_for_instance,
    decode_ipv4,
    decode_payload,
)

FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ORACLE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ipv4s = st.integers(0, 2**32 - 1).map(IPv4Address)
ipv6s = st.integers(0, 2**128 - 1).map(IPv6Address)


@st.composite
def adverts(
    draw: st.DrawFn, *, min_addresses: int = 0, max_addresses: int = 12, family: int | None = None
) -> tuple[VrrpPacket, IPAddress, IPAddress]:
    """A valid advert with the source and destination it is sent between."""
    version = 3 if family == 6 else draw(st.sampled_from([2, 3]))
    if family is None:
        family = 4 if version == 2 else draw(st.sampled_from([4, 6]))
    addrs = st.lists(
        ipv4s if family == 4 else ipv6s, min_size=min_addresses, max_size=max_addresses
    )
    common = {
        "vrid": draw(st.integers(1, 255)),
        "priority": draw(st.integers(0, 255)),
        "addresses": tuple(draw(addrs)),
    }
    if version == 2:
        packet = VrrpPacket(
            version=2,
            adver_int=draw(st.integers(1, 255)),
            auth_type=draw(st.sampled_from([0, 1])),
            auth_data=draw(st.binary(max_size=8)),
            **common,  # type: ignore[arg-type]
        )
    else:
        packet = VrrpPacket(version=3, adver_int=draw(st.integers(1, 4095)), **common)  # type: ignore[arg-type]
    if family == 4:
        src: IPAddress = draw(ipv4s)
        dst: IPAddress = draw(st.sampled_from([VrrpPacket.GROUP_V4, draw(ipv4s)]))
    else:
        src = draw(ipv6s)
        dst = draw(st.sampled_from([VrrpPacket.GROUP_V6, draw(ipv6s)]))
    return packet, src, dst


def _datagram(payload: bytes, src: IPv4Address, dst: IPv4Address, ttl: int = 255) -> bytes:
    return build_ipv4_header(src=src, dst=dst, payload_len=len(payload), ttl=ttl) + payload


def _decode(payload: bytes, src: IPAddress, dst: IPAddress) -> Received | Rejection:
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return decode_ipv4(_datagram(payload, src, dst))
    return decode_payload(payload, family=6, src=src, dst=dst, hop_limit=255)


def _auth_bytes(layer: VRRP) -> bytes:
    return int(layer.auth1).to_bytes(4, "big") + int(layer.auth2).to_bytes(4, "big")


# ---------------------------------------------------------------- scapy as the oracle


@ORACLE
@given(adverts(min_addresses=1))
def test_scapy_dissects_what_we_encode(case: tuple[VrrpPacket, IPAddress, IPAddress]) -> None:
    packet, src, dst = case
    payload = packet.pack(src, dst)
    wire: Packet
    if packet.family == 4:
        wire = IP(_datagram(payload, src, dst))  # type: ignore[arg-type]
    else:
        wire = IPv6(bytes(IPv6(src=str(src), dst=str(dst), nh=112, hlim=255) / Raw(payload)))
    layer = wire[VRRPv3] if packet.version == 3 else wire[VRRP]
    assert layer.version == packet.version
    assert (layer.vrid, layer.priority, layer.adv) == (
        packet.vrid,
        packet.priority,
        packet.adver_int,
    )
    assert layer.ipcount == packet.count
    assert tuple(ip_address(a) for a in layer.addrlist) == packet.addresses
    assert layer.chksum == int.from_bytes(payload[6:8], "big")
    if packet.version == 2:
        assert layer.authtype == packet.auth_type
        assert _auth_bytes(layer) == packet.auth_data
    # scapy recomputing the checksum (with the pseudo-header for v3) gets ours.
    layer.chksum = None
    assert bytes(layer) == payload


@ORACLE
@given(adverts(min_addresses=1))
def test_we_decode_what_scapy_encodes(case: tuple[VrrpPacket, IPAddress, IPAddress]) -> None:
    packet, src, dst = case
    layer: Packet
    if packet.version == 2:
        auth = packet.auth_data
        layer = VRRP(
            vrid=packet.vrid,
            priority=packet.priority,
            adv=packet.adver_int,
            authtype=packet.auth_type,
            addrlist=[str(a) for a in packet.addresses],
            auth1=int.from_bytes(auth[:4], "big"),
            auth2=int.from_bytes(auth[4:], "big"),
        )
    else:
        layer = VRRPv3(
            vrid=packet.vrid,
            priority=packet.priority,
            adv=packet.adver_int,
            addrlist=[str(a) for a in packet.addresses],
        )
    if packet.family == 4:
        result = decode_ipv4(bytes(IP(src=str(src), dst=str(dst), ttl=255) / layer))
    else:
        built = IPv6(src=str(src), dst=str(dst), hlim=255) / layer
        result = decode_payload(bytes(built[VRRPv3]), family=6, src=src, dst=dst, hop_limit=255)
    assert isinstance(result, Received), result
    assert result.packet == replace(packet, checksum=result.packet.checksum)
    assert (result.src, result.dst) == (src, dst)
    expected_mode = ChecksumMode.MESSAGE_ONLY if packet.version == 2 else ChecksumMode.PSEUDO_HEADER
    assert result.checksum_mode is expected_mode


@ORACLE
@given(adverts())
def test_encode_decode_roundtrip(case: tuple[VrrpPacket, IPAddress, IPAddress]) -> None:
    packet, src, dst = case
    payload = packet.pack(src, dst)
    result = _decode(payload, src, dst)
    assert isinstance(result, Received), result
    assert result.packet.pack(src, dst) == payload
    assert result.packet.addresses == packet.addresses
    assert check_checksum_mode(result, pseudo_header=True) is None


# ---------------------------------------------------------------- fuzzing the decoders


def _captured() -> list[bytes]:
    datagrams = []
    for name in ("ka_v2_auth.pcap", "ka_v3_46.pcap"):
        for pkt in rdpcap(str(Path(__file__).parent / "vectors" / name)):
            if IP in pkt and pkt[IP].proto == 112:
                datagrams.append(bytes(pkt[IP])[: pkt[IP].len])
    return datagrams


CAPTURED = _captured()
EXPECT_V2 = InstanceExpectation(version=2, vrid=51, adver_int=1, auth_type=1, auth_data=b"x")
EXPECT_V3 = InstanceExpectation(
    version=3, vrid=51, adver_int=100, addresses=(IPv4Address("10.77.0.10"),)
)


def _assert_sound(result: Received | Rejection, payload: bytes) -> None:
    """A decoder result is one of the two types; a Received re-encodes to its input."""
    assert isinstance(result, Received | Rejection)
    if isinstance(result, Rejection):
        assert result.detail and result.drop
        return
    with_ph = result.checksum_mode is ChecksumMode.PSEUDO_HEADER
    again = result.packet.pack(result.src, result.dst, pseudo_header=with_ph)
    # 0x0000 and 0xFFFF are the same one's-complement checksum; we always send 0x0000.
    same_checksum = {again[6:8], payload[6:8]} <= {b"\x00\x00", b"\xff\xff"}
    assert again == payload or (again[8:] == payload[8:] and same_checksum)
    for expect in (EXPECT_V2, EXPECT_V3):
        finding = check_for_instance(result, expect)
        assert finding is None or isinstance(finding, Rejection)


@FUZZ
@given(st.binary(max_size=200))
def test_decode_ipv4_survives_arbitrary_bytes(data: bytes) -> None:
    result = decode_ipv4(data)
    ihl = (data[0] & 0x0F) * 4 if data else 0
    _assert_sound(result, data[ihl:])


@FUZZ
@given(
    st.binary(max_size=200),
    st.sampled_from([4, 6, 0]),
    st.one_of(ipv4s, ipv6s),
    st.one_of(ipv4s, ipv6s),
    st.one_of(st.none(), st.integers(0, 255)),
    st.sampled_from([None, True, False]),
)
def test_decode_payload_survives_arbitrary_bytes(
    data: bytes,
    family: int,
    src: IPAddress,
    dst: IPAddress,
    hop_limit: int | None,
    pseudo_header: bool | None,
) -> None:
    result = decode_payload(
        data, family=family, src=src, dst=dst, hop_limit=hop_limit, pseudo_header=pseudo_header
    )
    _assert_sound(result, data)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, int]:
    """A valid IPv4 VRRP datagram (captured or generated) with bytes flipped, cut or added.

    With ``fix_checksum`` the VRRP checksum is recomputed after the damage so mutations
    reach the checks behind it, and the IP total length follows the new size so they get
    past the IP layer.
    """
    if draw(st.booleans()):
        datagram = draw(st.sampled_from(CAPTURED))
    else:
        packet, src, dst = draw(adverts(family=4, max_addresses=4))
        datagram = _datagram(packet.pack(src, dst), src, dst)  # type: ignore[arg-type]
    data = bytearray(datagram)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        cut = draw(st.integers(20, len(data)))
        data = data[:cut] + bytearray(draw(st.binary(max_size=24)))
    if draw(st.booleans()):
        data[2:4] = len(data).to_bytes(2, "big")
    ihl = (data[0] & 0x0F) * 4
    if draw(st.booleans()) and 20 <= ihl <= len(data) - 8:
        body = bytes(data[ihl : ihl + 6]) + b"\x00\x00" + bytes(data[ihl + 8 :])
        pseudo = bytes(data[12:20]) + bytes([0, 112]) + len(body).to_bytes(2, "big")
        use_pseudo = draw(st.booleans())
        checksum = internet_checksum((pseudo if use_pseudo else b"") + body)
        data[ihl + 6 : ihl + 8] = checksum.to_bytes(2, "big")
    return bytes(data), ihl


@FUZZ
@given(mutated(), st.sampled_from([None, True, False]), st.booleans())
def test_decode_ipv4_survives_mutated_adverts(
    case: tuple[bytes, int], pseudo_header: bool | None, check_ttl: bool
) -> None:
    datagram, ihl = case
    result = decode_ipv4(datagram, pseudo_header=pseudo_header, check_ttl=check_ttl)
    _assert_sound(result, datagram[ihl:])


@FUZZ
@given(adverts(family=6, max_addresses=3), st.integers(0, 23), st.integers(1, 255))
def test_decode_payload_survives_mutated_ipv6_adverts(
    case: tuple[VrrpPacket, IPAddress, IPAddress], index: int, flip: int
) -> None:
    packet, src, dst = case
    payload = bytearray(packet.pack(src, dst))
    payload[index % len(payload)] ^= flip
    result = decode_payload(bytes(payload), family=6, src=src, dst=dst, hop_limit=255)
    _assert_sound(result, bytes(payload))
    # Any single flipped byte breaks either the structure or the checksum.
    assert isinstance(result, Rejection)
