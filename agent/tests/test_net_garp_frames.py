"""Gratuitous ARP / unsolicited NA frame builders against scapy and keepalived's own frames."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap

from vigil.net.garp import (
    GarpSender,
    build_gratuitous_arp,
    build_unsolicited_na,
    icmpv6_checksum,
    parse_mac,
)

VECTORS = Path(__file__).parent / "vectors"

macs = st.binary(min_size=6, max_size=6)
ipv4s = st.ip_addresses(v=4)
ipv6s = st.ip_addresses(v=6)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def scapy_garp(mac: str, vip: str) -> bytes:
    return bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=mac)
        / ARP(op=1, hwsrc=mac, psrc=vip, hwdst="ff:ff:ff:ff:ff:ff", pdst=vip)
    )


def scapy_na(mac: str, vip: str) -> bytes:
    return bytes(
        Ether(dst="33:33:00:00:00:01", src=mac)
        / IPv6(src=vip, dst="ff02::1", hlim=255, tc=0, fl=0)
        / ICMPv6ND_NA(R=0, S=0, O=1, tgt=vip)
        / ICMPv6NDOptDstLLAddr(lladdr=mac)
    )


@given(macs, ipv4s)
def test_garp_equals_scapy(mac: bytes, vip: ipaddress.IPv4Address) -> None:
    assert build_gratuitous_arp(mac, vip) == scapy_garp(mac_text(mac), str(vip))


@given(macs, ipv6s)
def test_na_equals_scapy(mac: bytes, vip: ipaddress.IPv6Address) -> None:
    assert build_unsolicited_na(mac, vip) == scapy_na(mac_text(mac), str(vip))


def test_garp_fields() -> None:
    frame = Ether(build_gratuitous_arp("00:00:5e:00:01:33", "10.1.2.3"))
    assert frame.dst == "ff:ff:ff:ff:ff:ff"
    assert frame.src == "00:00:5e:00:01:33"
    arp = frame[ARP]
    assert (arp.op, arp.psrc, arp.pdst) == (1, "10.1.2.3", "10.1.2.3")
    assert (arp.hwsrc, arp.hwdst) == ("00:00:5e:00:01:33", "ff:ff:ff:ff:ff:ff")
    assert len(bytes(frame)) == 42


def test_na_fields_and_checksum() -> None:
    raw = build_unsolicited_na("00:00:5e:00:02:33", "fd00:1::10")
    frame = Ether(raw)
    ip6, na = frame[IPv6], frame[ICMPv6ND_NA]
    assert (ip6.src, ip6.dst, ip6.hlim, ip6.tc, ip6.fl) == ("fd00:1::10", "ff02::1", 255, 0, 0)
    assert (na.R, na.S, na.O, na.tgt) == (0, 0, 1, "fd00:1::10")
    assert frame[ICMPv6NDOptDstLLAddr].lladdr == "00:00:5e:00:02:33"
    on_wire = na.cksum
    del na.cksum
    assert Ether(bytes(frame))[ICMPv6ND_NA].cksum == on_wire


@pytest.mark.parametrize(
    ("pcap", "index", "builder", "mac", "vip"),
    [
        ("ka_v3_46.pcap", 1, build_gratuitous_arp, "02:77:00:00:00:11", "10.77.0.10"),
        ("ka_v3_46.pcap", 7, build_unsolicited_na, "02:77:00:00:00:11", "fd77::10"),
        ("ka_v2_auth.pcap", 1, build_gratuitous_arp, "02:77:00:00:00:11", "10.77.0.10"),
    ],
)
def test_frames_equal_keepalived_capture(
    pcap: str, index: int, builder: Callable[[str, str], bytes], mac: str, vip: str
) -> None:
    golden = bytes(rdpcap(str(VECTORS / pcap))[index])
    assert builder(mac, vip) == golden


def test_icmpv6_checksum_of_a_known_message() -> None:
    # The keepalived NA above carries checksum 0x5908; zero it and recompute.
    frame = bytes(rdpcap(str(VECTORS / "ka_v3_46.pcap"))[7])
    message = frame[54:56] + b"\0\0" + frame[58:]
    src, dst = ipaddress.IPv6Address("fd77::10"), ipaddress.IPv6Address("ff02::1")
    assert icmpv6_checksum(src, dst, message) == 0x5908


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("02:77:00:00:00:11", b"\x02\x77\x00\x00\x00\x11"),
        ("02-77-00-00-00-1A", b"\x02\x77\x00\x00\x00\x1a"),
        (b"\x01\x02\x03\x04\x05\x06", b"\x01\x02\x03\x04\x05\x06"),
    ],
)
def test_parse_mac(value: str | bytes, expected: bytes) -> None:
    assert parse_mac(value) == expected


@pytest.mark.parametrize("value", ["02:77:00:00:00", "02:77:00:00:00:zz", "0277.0000.0011", b"12"])
def test_parse_mac_rejects_with_the_field_and_the_fix(value: str | bytes) -> None:
    with pytest.raises(ValueError, match=r"^mac: "):
        parse_mac(value)


def test_builders_reject_the_wrong_family() -> None:
    with pytest.raises(ValueError, match=r"^vip: 'fd00::1' is not an IPv4 address"):
        build_gratuitous_arp("02:00:00:00:00:01", "fd00::1")
    with pytest.raises(ValueError, match=r"^vip: '10.0.0.1' is not an IPv6 address"):
        build_unsolicited_na("02:00:00:00:00:01", "10.0.0.1")


@pytest.mark.parametrize(
    ("count", "interval", "field"),
    [(0, 0.0, "count"), (10_001, 0.0, "count"), (5, -1.0, "interval"), (5, 61.0, "interval")],
)
def test_send_burst_is_bounded(count: int, interval: float, field: str) -> None:
    sender = GarpSender()
    with pytest.raises(ValueError, match=rf"^{field}: "):
        asyncio.run(sender.send_burst("eth0", ["10.0.0.1"], count=count, interval=interval))
    assert sender.sent == 0
