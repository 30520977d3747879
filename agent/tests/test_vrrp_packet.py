"""VRRP codec against real keepalived 2.2.7 / FRR 8.4.4 traffic, and every rejection.

The captures in vectors/ were taken on a lab bridge; each VRRP packet in them must decode
and re-encode byte for byte (checksum included), and the IPv4 header builder must
reproduce the captured header given the same IP ID and DF flag.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.vrrp import VRRPv3
from scapy.utils import rdpcap

from vigil.vrrp.checksum import internet_checksum, ones_complement_sum
from vigil.vrrp.packet import (
    ChecksumMode,
    InstanceExpectation,
    MalformedPacket,
    Received,
    Rejection,
    RejectReason,
    VrrpPacket,
    build_advert,
    build_ipv4_header,
    check_checksum_mode,
    check_for_instance,
    decode_ipv4,
    decode_payload,
    decode_raw,
    interval_to_wire,
    pass_auth_data,
)
from vigil.vrrp.transport import RawReceived

VECTORS = Path(__file__).parent / "vectors"
GROUP4 = IPv4Address("224.0.0.18")
GROUP6 = IPv6Address("ff02::12")
SRC4 = IPv4Address("10.77.0.11")
SRC6 = IPv6Address("fe80::77:ff:fe00:11")
VIP4 = IPv4Address("10.77.0.10")
VIP6 = IPv6Address("fd77::10")


def _vrrp_frames(name: str) -> list[tuple[str, bytes, dict[str, object]]]:
    """(family, bytes as a raw socket gives them, IP facts) for each VRRP packet in a pcap.

    IPv4: the datagram cut to its total length (the kernel trims Ethernet padding).
    IPv6: the payload cut to the payload length, with src/dst/hop limit alongside, as
    recvmsg and its ancillary data deliver them.
    """
    frames = []
    for pkt in rdpcap(str(VECTORS / name)):
        if IP in pkt and pkt[IP].proto == VrrpPacket.PROTOCOL:
            ip = pkt[IP]
            raw = bytes(ip)[: ip.len]
            facts = {"id": ip.id, "df": bool(ip.flags.DF), "ihl": ip.ihl * 4}
            frames.append(("4", raw, facts))
        elif IPv6 in pkt and pkt[IPv6].nh == VrrpPacket.PROTOCOL:
            ip6 = pkt[IPv6]
            raw = bytes(ip6.payload)[: ip6.plen]
            facts = {"src": ip6.src, "dst": ip6.dst, "hlim": ip6.hlim}
            frames.append(("6", raw, facts))
    return frames


def _decode_frame(family: str, raw: bytes, facts: dict[str, object]) -> Received:
    if family == "4":
        result = decode_ipv4(raw)
    else:
        result = decode_payload(
            raw,
            family=6,
            src=str(facts["src"]),
            dst=str(facts["dst"]),
            hop_limit=int(str(facts["hlim"])),
        )
    assert isinstance(result, Received), f"rejected a real packet: {result}"
    return result


@pytest.mark.parametrize("name", ["ka_v2_auth.pcap", "ka_v3_46.pcap", "frr1_ka2_v3_46.pcap"])
def test_every_captured_packet_decodes_and_reencodes_byte_for_byte(name: str) -> None:
    checked = Counter[str]()
    for family, raw, facts in _vrrp_frames(name):
        rx = _decode_frame(family, raw, facts)
        if family == "4":
            ihl = int(str(facts["ihl"]))
            payload = raw[ihl:]
            header = build_ipv4_header(
                src=IPv4Address(rx.src),
                dst=IPv4Address(rx.dst),
                payload_len=len(payload),
                ident=int(str(facts["id"])),
                dont_fragment=bool(facts["df"]),
            )
            assert header == raw[:ihl]
        else:
            payload = raw
        with_ph = rx.checksum_mode is ChecksumMode.PSEUDO_HEADER
        assert rx.packet.pack(rx.src, rx.dst, pseudo_header=with_ph) == payload
        assert int.from_bytes(payload[6:8], "big") == rx.packet.checksum
        assert VrrpPacket.unpack(payload, family=rx.family) == rx.packet
        assert rx.ttl == 255
        checked[family] += 1
    assert sum(checked.values()) > 0
    if "46" in name:
        assert checked["4"] > 0 and checked["6"] > 0


def _received(name: str) -> list[Received]:
    return [_decode_frame(*frame) for frame in _vrrp_frames(name)]


def test_keepalived_v2_pass_auth_fields() -> None:
    received = _received("ka_v2_auth.pcap")
    assert len(received) == 28
    by_src = Counter((str(r.src), r.packet.priority) for r in received)
    assert by_src == {
        ("10.77.0.11", 150): 12,
        ("10.77.0.11", 0): 2,
        ("10.77.0.12", 100): 13,
        ("10.77.0.12", 0): 1,
    }
    for rx in received:
        pkt = rx.packet
        assert (pkt.version, pkt.type, pkt.vrid, pkt.count) == (2, 1, 51, 1)
        assert pkt.auth_type == VrrpPacket.AUTH_PASS
        assert pkt.auth_data == b"s3cret\x00\x00" == pass_auth_data("s3cret")
        assert pkt.adver_int == 1 and pkt.interval_seconds == 1.0
        assert pkt.addresses == (VIP4,)
        assert rx.dst == GROUP4
        assert rx.checksum_mode is ChecksumMode.MESSAGE_ONLY


def test_keepalived_v3_both_families_fields() -> None:
    received = _received("ka_v3_46.pcap")
    v4 = [r for r in received if r.family == 4]
    v6 = [r for r in received if r.family == 6]
    assert len(v4) == 28 and len(v6) == 28
    for rx in received:
        assert (rx.packet.version, rx.packet.vrid, rx.packet.adver_int) == (3, 51, 100)
        assert rx.packet.interval_seconds == 1.0
        assert rx.checksum_mode is ChecksumMode.PSEUDO_HEADER
    assert {r.packet.addresses for r in v4} == {(VIP4,)}
    assert {r.packet.addresses for r in v6} == {(VIP6,)}
    assert {r.dst for r in v6} == {GROUP6}
    assert all(r.src.is_link_local for r in v6)
    assert {r.packet.priority for r in received} == {150, 100, 0}


def test_frr_and_keepalived_v3_fields() -> None:
    received = _received("frr1_ka2_v3_46.pcap")
    prios = Counter((str(r.src), r.packet.priority) for r in received)
    assert prios == {
        ("10.77.0.11", 150): 12,
        ("10.77.0.11", 0): 2,
        ("10.77.0.12", 100): 11,
        ("fe80::2298:af28:ff41:c0ea", 150): 10,
        ("fe80::2298:af28:ff41:c0ea", 0): 2,
        ("fe80::77:ff:fe00:12", 100): 13,
    }
    # FRR 8.4.4 and keepalived 2.2.7 both include the IPv4 pseudo-header by default.
    assert {r.checksum_mode for r in received} == {ChecksumMode.PSEUDO_HEADER}


def test_decode_raw_takes_transport_datagrams() -> None:
    """The runtime hands transport.RawReceived straight to decode_raw, both families."""
    frames = _vrrp_frames("ka_v3_46.pcap")
    v4 = next(raw for family, raw, _ in frames if family == "4")
    _, v6, facts = next(frame for frame in frames if frame[0] == "6")
    src6, dst6 = IPv6Address(str(facts["src"])), IPv6Address(str(facts["dst"]))
    rx4 = decode_raw(RawReceived(4, "eth0", SRC4, GROUP4, 255, v4, 2), pseudo_header=True)
    assert isinstance(rx4, Received) and rx4.packet.addresses == (VIP4,)
    rx6 = decode_raw(RawReceived(6, "eth0", src6, dst6, -1, v6, 2))
    assert isinstance(rx6, Received) and rx6.ttl is None and rx6.src == src6
    low = decode_raw(RawReceived(6, "eth0", src6, dst6, 64, v6, 2))
    assert isinstance(low, Rejection) and low.reason is RejectReason.TTL
    unicast = decode_raw(RawReceived(6, "eth0", src6, dst6, 64, v6, 2), check_ttl=False)
    assert isinstance(unicast, Received) and unicast.ttl == 64


def test_decode_key_leaves_out_only_what_decoding_never_reads() -> None:
    """The runtime skips decoding an advert whose decode_key equals the last accepted one.

    For every captured IPv4 advert: a new IP ID and header checksum keep the key and the
    decoded result; a change to any other byte changes the key. For IPv6 the addresses
    and the hop limit are part of the key.
    """
    v4 = [
        raw
        for name in ("ka_v2_auth.pcap", "ka_v3_46.pcap")
        for family, raw, _ in _vrrp_frames(name)
        if family == "4"
    ]
    assert len(v4) > 10
    for data in v4:
        raw = RawReceived(4, "eth0", SRC4, GROUP4, 255, data, 2)
        other = bytearray(data)
        other[4:6] = bytes([data[4] ^ 0x5A, data[5] ^ 0xA5])
        other[10:12] = bytes([data[10] ^ 0xFF, data[11] ^ 0x01])
        again = RawReceived(4, "eth0", SRC4, GROUP4, 255, bytes(other), 2)
        assert again.decode_key == raw.decode_key
        assert decode_raw(again) == decode_raw(raw)
        for i in (*range(0, 4), *range(6, 10), *range(12, len(data))):
            changed = bytearray(data)
            changed[i] ^= 0x01
            assert RawReceived(4, "eth0", SRC4, GROUP4, 255, bytes(changed), 2).decode_key != (
                raw.decode_key
            ), f"byte {i}"
        assert RawReceived(4, "eth0", SRC4, GROUP4, 255, data[:-1], 2).decode_key != raw.decode_key
    _, v6, facts = next(frame for frame in _vrrp_frames("ka_v3_46.pcap") if frame[0] == "6")
    src6, dst6 = IPv6Address(str(facts["src"])), IPv6Address(str(facts["dst"]))
    key6 = RawReceived(6, "eth0", src6, dst6, 255, v6, 2).decode_key
    assert RawReceived(6, "eth1", src6, dst6, 255, v6, 3).decode_key == key6
    assert RawReceived(6, "eth0", src6, dst6, 64, v6, 2).decode_key != key6
    assert RawReceived(6, "eth0", IPv6Address("fe80::1"), dst6, 255, v6, 2).decode_key != key6
    assert RawReceived(6, "eth0", src6, IPv6Address("fe80::2"), 255, v6, 2).decode_key != key6


def test_build_advert_matches_keepalived_bytes() -> None:
    rx = _received("ka_v2_auth.pcap")[0]
    sent = build_advert(
        version=2,
        vrid=51,
        priority=150,
        adver_int=interval_to_wire(2, 1.0),
        addresses=[VIP4],
        auth_type=VrrpPacket.AUTH_PASS,
        auth_data=pass_auth_data("s3cret"),
    )
    assert sent == rx.packet.pack()
    v3 = _received("ka_v3_46.pcap")
    for rx in v3[:2]:
        sent = build_advert(
            version=3,
            vrid=51,
            priority=150,
            adver_int=interval_to_wire(3, 1.0),
            addresses=rx.packet.addresses,
            src=rx.src,
            dst=rx.dst,
        )
        assert rx.packet.priority == 150
        assert sent == rx.packet.pack(rx.src, rx.dst)


# ---------------------------------------------------------------- crafted rejections


def _v4(payload: bytes, *, ttl: int = 255, proto: int = 112, src: IPv4Address = SRC4) -> bytes:
    header = build_ipv4_header(
        src=src, dst=GROUP4, payload_len=len(payload), ttl=ttl, protocol=proto
    )
    return header + payload


def _v3_payload(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "version": 3,
        "vrid": 51,
        "priority": 100,
        "adver_int": 100,
        "addresses": (VIP4,),
    }
    fields.update(changes)
    return VrrpPacket(**fields).pack(SRC4, GROUP4)  # type: ignore[arg-type]


def _v2_payload(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "version": 2,
        "vrid": 51,
        "priority": 100,
        "adver_int": 1,
        "addresses": (VIP4,),
        "auth_type": 1,
        "auth_data": b"s3cret",
    }
    fields.update(changes)
    return VrrpPacket(**fields).pack()  # type: ignore[arg-type]


def _with_checksum_fixed(payload: bytes, *, pseudo: bool = True) -> bytes:
    """Recompute the v3 IPv4 checksum after a raw edit of ``payload``."""
    body = payload[:6] + b"\x00\x00" + payload[8:]
    ph = SRC4.packed + GROUP4.packed + bytes([0, 112]) + len(body).to_bytes(2, "big")
    checksum = internet_checksum((ph if pseudo else b"") + body)
    return body[:6] + checksum.to_bytes(2, "big") + body[8:]


def _flip_checksum(payload: bytes) -> bytes:
    return payload[:6] + bytes([payload[6] ^ 0x5A]) + payload[7:]


def _v3_no_pseudo() -> bytes:
    return VrrpPacket(version=3, vrid=51, priority=100, adver_int=100, addresses=(VIP4,)).pack(
        pseudo_header=False
    )


DECODE_CASES: list[tuple[str, bytes, dict[str, object], RejectReason, tuple[str, ...]]] = [
    ("short ip", b"\x45\x00\x00", {}, RejectReason.TRUNCATED, ("3 bytes",)),
    ("short vrrp", _v4(b"\x31\x33\x64"), {}, RejectReason.TRUNCATED, ("3 bytes",)),
    (
        "ipv6 on v4 socket",
        b"\x60" + _v4(_v3_payload())[1:],
        {},
        RejectReason.FAMILY,
        ("IP version 6",),
    ),
    ("ihl too big", b"\x4f" + _v4(_v3_payload())[1:], {}, RejectReason.LENGTH, ("60",)),
    ("total length", _v4(_v3_payload()) + b"\x00\x00", {}, RejectReason.LENGTH, ("34 were",)),
    (
        "fragment",
        _v4(_v3_payload())[:6] + b"\x20\x00" + _v4(_v3_payload())[8:],
        {},
        RejectReason.LENGTH,
        ("fragment",),
    ),
    ("protocol", _v4(_v3_payload(), proto=17), {}, RejectReason.PROTOCOL, ("17", "112")),
    ("AH", _v4(_v2_payload(), proto=51), {}, RejectReason.PROTOCOL, ("AH",)),
    ("ttl", _v4(_v3_payload(), ttl=64), {}, RejectReason.TTL, ("TTL 64", "255")),
    ("version", _v4(b"\x41" + _v3_payload()[1:]), {}, RejectReason.VERSION, ("version 4",)),
    (
        "count vs length",
        _v4(_v3_payload()[:3] + b"\x02" + _v3_payload()[4:]),
        {},
        RejectReason.LENGTH,
        ("12 bytes", "16 bytes"),
    ),
    (
        "type",
        _v4(_with_checksum_fixed(b"\x32" + _v3_payload()[1:])),
        {},
        RejectReason.TYPE,
        ("type 2",),
    ),
    ("checksum v3", _v4(_flip_checksum(_v3_payload())), {}, RejectReason.CHECKSUM, ("VRRPv3",)),
    ("checksum v2", _v4(_flip_checksum(_v2_payload())), {}, RejectReason.CHECKSUM, ("VRRPv2",)),
    (
        "v3 without pseudo-header, instance wants it",
        _v4(_v3_no_pseudo()),
        {"pseudo_header": True},
        RejectReason.CHECKSUM,
        ("v3_checksum_pseudo_header: false",),
    ),
    (
        "v3 with pseudo-header, instance wants without",
        _v4(_v3_payload()),
        {"pseudo_header": False},
        RejectReason.CHECKSUM,
        ("v3_checksum_pseudo_header: true",),
    ),
    ("vrid 0", _v4(_v3_payload(vrid=0)), {}, RejectReason.VRID, ("VRID 0",)),
    ("interval 0", _v4(_v3_payload(adver_int=0)), {}, RejectReason.INTERVAL, ("interval 0",)),
    (
        "unknown auth type",
        _v4(_v2_payload(auth_type=7, auth_data=b"")),
        {},
        RejectReason.AUTH,
        ("type 7",),
    ),
]


@pytest.mark.parametrize(
    ("datagram", "kwargs", "reason", "words"),
    [case[1:] for case in DECODE_CASES],
    ids=[case[0] for case in DECODE_CASES],
)
def test_decode_ipv4_rejections(
    datagram: bytes, kwargs: dict[str, object], reason: RejectReason, words: tuple[str, ...]
) -> None:
    result = decode_ipv4(datagram, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Rejection), result
    assert result.reason is reason, result
    assert result.drop
    for word in words:
        assert word in result.detail, result.detail


def _v6_payload(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "version": 3,
        "vrid": 51,
        "priority": 100,
        "adver_int": 100,
        "addresses": (VIP6,),
    }
    fields.update(changes)
    return VrrpPacket(**fields).pack(SRC6, GROUP6)  # type: ignore[arg-type]


def _v6_without_pseudo() -> bytes:
    body = _v6_payload()[:6] + b"\x00\x00" + _v6_payload()[8:]
    return body[:6] + internet_checksum(body).to_bytes(2, "big") + body[8:]


@pytest.mark.parametrize(
    ("payload", "kwargs", "reason", "word"),
    [
        (_v6_payload(), {"hop_limit": 1}, RejectReason.TTL, "hop limit 1"),
        (_v6_payload(), {"family": 5}, RejectReason.FAMILY, "5"),
        (_v6_payload(), {"src": SRC4}, RejectReason.FAMILY, "not both IPv6"),
        (_v6_payload(), {"src": "not-an-address"}, RejectReason.FAMILY, "not-an-address"),
        (_v2_payload(), {}, RejectReason.VERSION, "IPv4-only"),
        (_flip_checksum(_v6_payload()), {}, RejectReason.CHECKSUM, "corrupted"),
        # A v3 IPv6 checksum computed without the pseudo-header is simply wrong.
        (_v6_without_pseudo(), {}, RejectReason.CHECKSUM, "checksum"),
        (_v6_payload()[:-1], {}, RejectReason.LENGTH, "23 bytes"),
        (_v6_payload()[:5], {}, RejectReason.TRUNCATED, "5 bytes"),
    ],
)
def test_decode_payload_rejections(
    payload: bytes, kwargs: dict[str, object], reason: RejectReason, word: str
) -> None:
    args: dict[str, object] = {"family": 6, "src": SRC6, "dst": GROUP6, "hop_limit": 255}
    args.update(kwargs)
    result = decode_payload(payload, **args)  # type: ignore[arg-type]
    assert isinstance(result, Rejection), result
    assert result.reason is reason
    assert word in result.detail, result.detail


def test_ttl_check_skipped_for_unicast_and_unknown_hop_limit() -> None:
    rx = decode_ipv4(_v4(_v3_payload(), ttl=62), check_ttl=False)
    assert isinstance(rx, Received) and rx.ttl == 62
    rx6 = decode_payload(_v6_payload(), family=6, src=SRC6, dst=GROUP6, hop_limit=None)
    assert isinstance(rx6, Received) and rx6.ttl is None


def test_ipv4_header_options_are_skipped() -> None:
    """A datagram with IP options (here Router Alert, IHL 6) still yields its advert."""
    payload = _v2_payload()
    plain = _v4(payload)
    with_option = bytes([0x46]) + plain[1:2] + (len(plain) + 4).to_bytes(2, "big")
    with_option += plain[4:20] + b"\x94\x04\x00\x00" + payload
    rx = decode_ipv4(with_option)
    assert isinstance(rx, Received), rx
    assert rx.packet.pack() == payload and rx.src == SRC4


def test_v3_ipv4_accepts_either_checksum_mode_and_reports_it() -> None:
    with_ph = decode_ipv4(_v4(_v3_payload()))
    without = decode_ipv4(_v4(_v3_no_pseudo()))
    assert isinstance(with_ph, Received) and isinstance(without, Received)
    assert with_ph.checksum_mode is ChecksumMode.PSEUDO_HEADER
    assert without.checksum_mode is ChecksumMode.MESSAGE_ONLY
    assert check_checksum_mode(with_ph, pseudo_header=True) is None
    assert check_checksum_mode(without, pseudo_header=False) is None
    wrong = check_checksum_mode(without, pseudo_header=True)
    assert wrong is not None and wrong.reason is RejectReason.CHECKSUM
    assert "v3_checksum_as_v2" in wrong.detail
    wrong = check_checksum_mode(with_ph, pseudo_header=False)
    assert wrong is not None and "v3_checksum_pseudo_header: true" in wrong.detail
    v2 = decode_ipv4(_v4(_v2_payload()))
    assert isinstance(v2, Received)
    assert check_checksum_mode(v2, pseudo_header=True) is None


# ---------------------------------------------------------------- per-instance checks


def _expect(**changes: object) -> InstanceExpectation:
    fields: dict[str, object] = {
        "version": 2,
        "vrid": 51,
        "adver_int": 1,
        "auth_type": 1,
        "auth_data": b"s3cret",
        "addresses": (VIP4,),
        "own_addresses": frozenset({IPv4Address("10.77.0.12")}),
    }
    fields.update(changes)
    return InstanceExpectation(**fields)  # type: ignore[arg-type]


def _rx(payload: bytes) -> Received:
    rx = decode_ipv4(_v4(payload))
    assert isinstance(rx, Received), rx
    return rx


def test_real_advert_passes_its_instance() -> None:
    rx = _received("ka_v2_auth.pcap")[0]
    assert check_for_instance(rx, _expect()) is None


@pytest.mark.parametrize(
    ("payload", "expect", "reason", "word"),
    [
        (_v2_payload(), _expect(own_addresses={SRC4}), RejectReason.OWN, "our own"),
        (_v3_payload(), _expect(), RejectReason.VERSION, "VRRPv3 advert"),
        (_v2_payload(vrid=52), _expect(), RejectReason.VRID, "VRID 52"),
        (_v2_payload(auth_type=0, auth_data=b""), _expect(), RejectReason.AUTH, "type none"),
        (_v2_payload(auth_data=b"wrong"), _expect(), RejectReason.AUTH, "password"),
        (_v2_payload(adver_int=3), _expect(), RejectReason.INTERVAL, "interval 3s"),
        (
            _v2_payload(addresses=(IPv4Address("10.77.0.99"),)),
            _expect(strict_addresses=True),
            RejectReason.ADDRESSES,
            "missing 10.77.0.10; extra 10.77.0.99",
        ),
    ],
)
def test_instance_rejections(
    payload: bytes, expect: InstanceExpectation, reason: RejectReason, word: str
) -> None:
    rejection = check_for_instance(_rx(payload), expect)
    assert rejection is not None
    assert rejection.reason is reason
    assert rejection.drop
    assert word in rejection.detail, rejection.detail
    assert "s3cret" not in rejection.detail and "wrong" not in rejection.detail


def test_address_mismatch_is_reported_but_not_dropped_by_default() -> None:
    two = (VIP4, IPv4Address("10.77.0.20"))
    rejection = check_for_instance(_rx(_v2_payload()), _expect(addresses=two))
    assert rejection is not None
    assert rejection.reason is RejectReason.ADDRESSES
    assert rejection.drop is False
    assert "lists 1 address(es), this instance has 2" in rejection.detail
    assert "missing 10.77.0.20" in rejection.detail
    # The same addresses in another order are the same list.
    rx = _rx(_v2_payload(addresses=(two[1], two[0])))
    assert check_for_instance(rx, _expect(addresses=two)) is None
    # A duplicate in the advert is still a different list.
    dup = check_for_instance(_rx(_v2_payload(addresses=(VIP4, VIP4))), _expect())
    assert dup is not None and "duplicates" in dup.detail


def test_v3_interval_difference_is_learned_not_rejected() -> None:
    rx = _rx(_v3_payload(adver_int=250))
    expect = InstanceExpectation(version=3, vrid=51, adver_int=100, addresses=(VIP4,))
    assert check_for_instance(rx, expect) is None


def test_every_reject_reason_has_a_crafted_case() -> None:
    covered = {case[3] for case in DECODE_CASES} | {
        RejectReason.OWN,
        RejectReason.ADDRESSES,
        RejectReason.FAMILY,
    }
    assert covered == set(RejectReason)


# ---------------------------------------------------------------- encoder guard rails


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"version": 4}, "version"),
        ({"vrid": 256}, "vrid"),
        ({"priority": -1}, "priority"),
        ({"adver_int": 256}, "adver_int"),
        ({"version": 3, "adver_int": 4096, "auth_data": b""}, "adver_int"),
        ({"addresses": (VIP6,)}, "VRRPv2 carries IPv4"),
        ({"addresses": (VIP4, VIP6)}, "addresses"),
        ({"addresses": ("10.0.0.1",)}, "addresses"),
        ({"auth_data": b"123456789"}, "auth_data"),
        ({"version": 3}, "VRRPv3 has no authentication"),
        ({"reserved": 1}, "reserved"),
    ],
)
def test_invalid_packets_cannot_be_built(kwargs: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {
        "version": 2,
        "vrid": 1,
        "priority": 100,
        "adver_int": 1,
        "addresses": (VIP4,),
        "auth_data": b"x",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=field):
        VrrpPacket(**fields)  # type: ignore[arg-type]


def test_pack_needs_addresses_for_v3_ipv4_pseudo_header() -> None:
    pkt = VrrpPacket(version=3, vrid=1, priority=100, adver_int=100, addresses=(VIP4,))
    with pytest.raises(ValueError, match="src/dst"):
        pkt.pack()
    with pytest.raises(ValueError, match="different address families"):
        pkt.pack(SRC4, GROUP6)
    with pytest.raises(ValueError, match="IPv4 addresses cannot be sent from IPv6"):
        pkt.pack(SRC6, GROUP6)
    empty = VrrpPacket(version=3, vrid=1, priority=100, adver_int=100)
    with pytest.raises(ValueError, match="src/dst"):
        empty.pack()
    # IPv6 without addresses: the kernel fills the checksum (IPV6_CHECKSUM=6).
    v6 = replace(pkt, addresses=(VIP6,))
    assert v6.pack()[6:8] == b"\x00\x00"
    assert v6.pack(SRC6, GROUP6)[6:8] != b"\x00\x00"


def test_build_helpers_validate() -> None:
    with pytest.raises(ValueError, match="vrid"):
        build_advert(version=3, vrid=0, priority=1, adver_int=100, addresses=[VIP6])
    with pytest.raises(ValueError, match="adver_int"):
        build_advert(version=3, vrid=1, priority=1, adver_int=0, addresses=[VIP6])
    with pytest.raises(ValueError, match=r"authentication\.password"):
        pass_auth_data("longer than eight")
    with pytest.raises(ValueError, match="whole seconds"):
        interval_to_wire(2, 0.5)
    with pytest.raises(ValueError, match=r"steps of 0\.01"):
        interval_to_wire(3, 0.005)
    assert interval_to_wire(3, 0.1) == 10
    assert interval_to_wire(3, 40.95) == 4095
    with pytest.raises(ValueError, match="payload_len"):
        build_ipv4_header(src=SRC4, dst=GROUP4, payload_len=70000)


def test_v3_reserved_bits_survive_a_roundtrip() -> None:
    """Receivers ignore the reserved bits, but re-encoding must not lose them."""
    payload = bytearray(_v3_payload())
    payload[4] |= 0xA0
    rx = decode_ipv4(_v4(_with_checksum_fixed(bytes(payload))))
    assert isinstance(rx, Received), rx
    assert rx.packet.reserved == 0xA and rx.packet.adver_int == 100
    assert rx.packet.pack(SRC4, GROUP4) == _with_checksum_fixed(bytes(payload))


def test_unpack_raises_typed_error() -> None:
    with pytest.raises(MalformedPacket) as info:
        VrrpPacket.unpack(b"\x31\x01", family=4)
    assert info.value.rejection.reason is RejectReason.TRUNCATED


def test_checksum_arithmetic_edge_cases() -> None:
    assert ones_complement_sum(b"") == 0
    assert ones_complement_sum(b"\xff\xff") == 0xFFFF
    assert ones_complement_sum(b"\xff\xff\x00\x01") == 0x0001  # end-around carry
    assert ones_complement_sum(b"\x01") == 0x0100  # odd length pads a zero byte
    assert internet_checksum(b"\x00\x00") == 0xFFFF


def test_scapy_builds_the_captured_advert_like_we_do() -> None:
    """The oracle itself agrees with the capture, so cross-checks against it mean something."""
    rx = _received("ka_v3_46.pcap")[0]
    assert rx.src == SRC4
    built = IP(src=str(rx.src), dst=str(rx.dst), proto=112, ttl=255) / VRRPv3(
        vrid=51, priority=150, adv=100, addrlist=[str(VIP4)]
    )
    assert bytes(built)[20:] == rx.packet.pack(rx.src, rx.dst)
