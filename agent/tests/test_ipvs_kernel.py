"""Pure parts of the IPVS adapter: value types, and messages encoded to bytes and decoded
back as the adapter does it (vigil.ipvs.genl, checked byte for byte against pyroute2 in
test_ipvs_genl.py), so the parsers see what the kernel would send. The
kernel side (a real IPVS in a VM) is in tests/vm/test_ipvs_kernel.py.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from vigil.ipvs import kernel as k
from vigil.ipvs.genl import Reply, decode_replies, encode_request
from vigil.ipvs.kernel import (
    Counters,
    Destination,
    IpvsError,
    IpvsKernel,
    Service,
    ServiceKey,
    SyncDaemon,
)
from vigil.net.netlink import NetlinkFailure


@dataclass
class Sent:
    """A request as encoded for the kernel (``data``), read back as a reply would be."""

    data: bytes
    reply: Reply

    def get_attr(self, name: str) -> Any:
        return self.reply.get_attr(name)


def roundtrip(cmd: int, attrs: dict[str, Any]) -> Sent:
    """Encode as the adapter sends it (vigil.ipvs.genl) and decode those bytes as the
    adapter decodes the kernel's replies."""
    data = encode_request(k._IpvsMsg, 0x1E, 0, 1, cmd, 1, list(attrs.items()))
    (reply,), _, _ = decode_replies(data, 1, 0x1E, k._IpvsMsg)
    return Sent(data, reply)


def raw_attr(data: bytes, nested_type: int, attr_type: int) -> bytes:
    """The payload of ``attr_type`` inside top-level attribute ``nested_type``."""

    def walk(buf: bytes, want: int) -> bytes:
        off = 0
        while off + 4 <= len(buf):
            length, typ = struct.unpack_from("=HH", buf, off)
            if typ & 0x3FFF == want:
                return buf[off + 4 : off + length]
            off += (length + 3) & ~3
        raise KeyError(want)

    genl = data[16 + 4 :]  # nlmsghdr + genlmsghdr
    return walk(walk(genl, nested_type), attr_type)


# ------------------------------------------------------------------------ values


def test_service_key_forms_and_text() -> None:
    v4 = ServiceKey.inet("tcp", "10.0.0.100", 80)
    v6 = ServiceKey.inet("udp", "fd00::100", 53)
    mark = ServiceKey.mark(7, family=6)
    assert (v4.family, v6.family, mark.family) == (4, 6, 6)
    assert str(v4) == "tcp 10.0.0.100:80"
    assert str(v6) == "udp [fd00::100]:53"
    assert str(mark) == "fwmark 7 (IPv6)"
    assert ServiceKey.inet("tcp", "10.0.0.100", 80) == v4
    assert isinstance(v4.addr, IPv4Address)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"protocol": "tcp", "addr": IPv4Address("10.0.0.1")}, "needs protocol, addr and port"),
        ({"fwmark": 1, "protocol": "tcp"}, "or by fwmark"),
        ({"fwmark": 0}, "fwmark 0"),
        ({"protocol": "icmp", "addr": IPv4Address("10.0.0.1"), "port": 1}, "protocol 'icmp'"),
        ({"protocol": "tcp", "addr": IPv4Address("10.0.0.1"), "port": 70000}, "port 70000"),
    ],
)
def test_service_key_rejects(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ServiceKey(**kwargs)


def test_service_checks_flags_against_the_scheduler() -> None:
    key = ServiceKey.inet("tcp", "10.0.0.1", 80)
    Service(key, "sh", sched_flags=frozenset({"sh-port", "sh-fallback"}))
    Service(key, "rr", sched_flags=frozenset({"flag-1"}))
    with pytest.raises(ValueError, match=r"\['sh-port'\] do not apply to 'mh'"):
        Service(key, "mh", sched_flags=frozenset({"sh-port"}))
    with pytest.raises(ValueError, match="persistence_prefix 64"):
        Service(key, "rr", persistence_timeout=60, persistence_prefix=64)
    Service(ServiceKey.inet("tcp", "fd00::1", 80), "rr", persistence_prefix=64)


def test_destination_checks() -> None:
    d = Destination(IPv6Address("fd00::5"), 80)
    assert (d.family, str(d), d.forward, d.weight) == (6, "[fd00::5]:80", "nat", 1)
    with pytest.raises(ValueError, match="weight -1"):
        Destination(IPv4Address("10.0.0.1"), 80, weight=-1)
    with pytest.raises(ValueError, match="forward 'masq'"):
        Destination(IPv4Address("10.0.0.1"), 80, forward="masq")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tunnel_type 'vxlan'"):
        Destination(IPv4Address("10.0.0.1"), 80, tunnel_type="vxlan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="set by the kernel"):
        k.dest_attrs(Destination(IPv4Address("10.0.0.1"), 80, forward="local"))


def test_sync_daemon_checks() -> None:
    assert str(SyncDaemon("master", "eth0", 7)) == "master sync daemon on eth0 (syncid 7)"
    with pytest.raises(ValueError, match="syncid 256"):
        SyncDaemon("backup", "eth0", 256)
    with pytest.raises(ValueError, match="interface"):
        SyncDaemon("backup", "a-very-long-ifname0")
    with pytest.raises(ValueError, match="state 'slave'"):
        SyncDaemon("slave", "eth0")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ wire


def test_service_roundtrip_ipv4_persistent_with_flags() -> None:
    svc = Service(
        ServiceKey.inet("tcp", "10.0.0.100", 443),
        "mh",
        sched_flags=frozenset({"mh-port"}),
        one_packet=True,
        persistence_timeout=300,
        persistence_prefix=24,
    )
    msg = roundtrip(k.IPVS_CMD_NEW_SERVICE, {"IPVS_CMD_ATTR_SERVICE": k.service_attrs(svc)})
    assert raw_attr(msg.data, 1, 9) == bytes([255, 255, 255, 0])  # NETMASK, network order
    assert raw_attr(msg.data, 1, 4) == struct.pack("!H", 443)  # PORT, big-endian
    flags, mask = struct.unpack("=II", raw_attr(msg.data, 1, 7))
    assert flags == 0x1 | 0x4 | 0x10 and mask == 0xFFFFFFFF  # persistent, one-packet, SCHED2
    parsed, counters = k.parse_service(msg.get_attr("IPVS_CMD_ATTR_SERVICE"))
    assert parsed == svc and counters == Counters()


def test_service_roundtrip_ipv6_prefix_is_a_host_order_u32() -> None:
    svc = Service(ServiceKey.inet("udp", "fd00::100", 53), "sh",
                  sched_flags=frozenset({"sh-fallback"}), persistence_timeout=60,
                  persistence_prefix=64)  # fmt: skip
    msg = roundtrip(k.IPVS_CMD_NEW_SERVICE, {"IPVS_CMD_ATTR_SERVICE": k.service_attrs(svc)})
    assert raw_attr(msg.data, 1, 9) == struct.pack("=I", 64)
    assert raw_attr(msg.data, 1, 3) == IPv6Address("fd00::100").packed
    assert k.parse_service(msg.get_attr("IPVS_CMD_ATTR_SERVICE"))[0] == svc


def test_fwmark_service_and_the_kernels_hashed_flag() -> None:
    svc = Service(ServiceKey.mark(7), "rr")
    attrs = k.service_attrs(svc)
    assert [a for a, _ in attrs][:2] == ["IPVS_SVC_ATTR_AF", "IPVS_SVC_ATTR_FWMARK"]
    # As dumped: the kernel adds IP_VS_SVC_F_HASHED, a flag-1 bit set by ipvsadm -b, and
    # 16 address bytes even for IPv4.
    dumped = [
        ("IPVS_SVC_ATTR_AF", socket.AF_INET),
        ("IPVS_SVC_ATTR_PROTOCOL", 0),
        ("IPVS_SVC_ATTR_ADDR", b"\0" * 16),
        ("IPVS_SVC_ATTR_PORT", 0),
        ("IPVS_SVC_ATTR_FWMARK", 7),
        ("IPVS_SVC_ATTR_SCHED_NAME", "rr"),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": 0x2 | 0x8, "mask": 0xFFFFFFFF}),
        ("IPVS_SVC_ATTR_TIMEOUT", 0),
        ("IPVS_SVC_ATTR_NETMASK", b"\xff\xff\xff\xff"),
        ("IPVS_SVC_ATTR_STATS64", {"attrs": [("IPVS_STATS_ATTR_CONNS", 5),
                                             ("IPVS_STATS_ATTR_INBYTES", 1 << 40)]}),
    ]  # fmt: skip
    msg = roundtrip(k.IPVS_CMD_NEW_SERVICE, {"IPVS_CMD_ATTR_SERVICE": dumped})
    parsed, counters = k.parse_service(msg.get_attr("IPVS_CMD_ATTR_SERVICE"))
    assert parsed == Service(ServiceKey.mark(7), "rr", sched_flags=frozenset({"flag-1"}))
    assert (counters.conns, counters.bytes_in) == (5, 1 << 40)


def test_destination_roundtrip_with_gue_tunnel_port_big_endian() -> None:
    key = ServiceKey.inet("tcp", "10.0.0.100", 80)
    dest = Destination(IPv4Address("10.0.1.11"), 80, weight=5, forward="tun",
                       tunnel_type="gue", tunnel_port=6080, tunnel_csum="remcsum",
                       upper_threshold=100, lower_threshold=10)  # fmt: skip
    msg = roundtrip(k.IPVS_CMD_NEW_DEST, {
        "IPVS_CMD_ATTR_SERVICE": k.service_key_attrs(key),
        "IPVS_CMD_ATTR_DEST": k.dest_attrs(dest),
    })  # fmt: skip
    assert raw_attr(msg.data, 2, 14) == struct.pack("!H", 6080)  # TUN_PORT
    assert raw_attr(msg.data, 2, 3) == struct.pack("=I", 2)  # FWD_METHOD: tunnel
    state = k.parse_destination(msg.get_attr("IPVS_CMD_ATTR_DEST"), 4)
    assert state.destination == dest


@pytest.mark.parametrize("forward", ["nat", "dr"])
def test_destination_without_tunnel_sends_no_tunnel_attributes(forward: str) -> None:
    dest = Destination(IPv6Address("fd00::11"), 8080, forward=forward)  # type: ignore[arg-type]
    names = [a for a, _ in k.dest_attrs(dest)]
    assert not [n for n in names if "TUN" in n]
    msg = roundtrip(k.IPVS_CMD_NEW_DEST, {"IPVS_CMD_ATTR_DEST": k.dest_attrs(dest)})
    assert k.parse_destination(msg.get_attr("IPVS_CMD_ATTR_DEST"), 6).destination == dest
    assert [a for a, _ in k.dest_attrs(dest, full=False)] == [
        "IPVS_DEST_ATTR_ADDR", "IPVS_DEST_ATTR_PORT", "IPVS_DEST_ATTR_ADDR_FAMILY",
    ]  # fmt: skip


def test_destination_as_dumped_reads_the_real_forwarding_method() -> None:
    """pyroute2's IPVSDest.from_message reports its default (DR); we read the attribute."""
    dumped = [
        ("IPVS_DEST_ATTR_ADDR", IPv4Address("10.0.1.12").packed + b"\0" * 12),
        ("IPVS_DEST_ATTR_PORT", 80),
        ("IPVS_DEST_ATTR_FWD_METHOD", 0),
        ("IPVS_DEST_ATTR_WEIGHT", 3),
        ("IPVS_DEST_ATTR_U_THRESH", 0),
        ("IPVS_DEST_ATTR_L_THRESH", 0),
        ("IPVS_DEST_ATTR_ACTIVE_CONNS", 2),
        ("IPVS_DEST_ATTR_INACT_CONNS", 9),
        ("IPVS_DEST_ATTR_PERSIST_CONNS", 1),
        ("IPVS_DEST_ATTR_ADDR_FAMILY", socket.AF_INET),
        ("IPVS_DEST_ATTR_STATS", {"attrs": [("IPVS_STATS_ATTR_INPKTS", 40),
                                            ("IPVS_STATS_ATTR_OUTPKTS", 30)]}),
        ("IPVS_DEST_ATTR_TUN_TYPE", 0),
        ("IPVS_DEST_ATTR_TUN_PORT", 0),
        ("IPVS_DEST_ATTR_TUN_FLAGS", 0),
    ]  # fmt: skip
    msg = roundtrip(k.IPVS_CMD_GET_DEST, {"IPVS_CMD_ATTR_DEST": dumped})
    state = k.parse_destination(msg.get_attr("IPVS_CMD_ATTR_DEST"), 4)
    assert state.destination == Destination(IPv4Address("10.0.1.12"), 80, weight=3)
    assert (state.active_conns, state.inactive_conns, state.persistent_conns) == (2, 9, 1)
    assert (state.counters.packets_in, state.counters.packets_out) == (40, 30)


def test_sync_daemon_roundtrip() -> None:
    daemon = SyncDaemon("backup", "eth1", 9, maxlen=1400, group=IPv4Address("239.1.2.3"),
                        port=8849, ttl=2)  # fmt: skip
    msg = roundtrip(k.IPVS_CMD_NEW_DAEMON, {"IPVS_CMD_ATTR_DAEMON": k.daemon_attrs(daemon)})
    assert k.parse_daemon(msg.get_attr("IPVS_CMD_ATTR_DAEMON")) == daemon
    v6 = SyncDaemon("master", "eth1", 1, group=IPv6Address("ff02::8:1"))
    msg = roundtrip(k.IPVS_CMD_NEW_DAEMON, {"IPVS_CMD_ATTR_DAEMON": k.daemon_attrs(v6)})
    assert k.parse_daemon(msg.get_attr("IPVS_CMD_ATTR_DAEMON")) == v6


# ------------------------------------------------------------------------ errors


def test_errors_name_operation_target_and_reason() -> None:
    err = IpvsError("add service", "tcp 10.0.0.1:80", errno.EEXIST, k._reason("service", 17))
    assert isinstance(err, NetlinkFailure)
    assert str(err) == "cannot add service tcp 10.0.0.1:80: already exists"
    assert k._reason("destination", errno.ENOENT) == "no such destination"
    assert k._reason("service", errno.ENOENT).startswith("unknown scheduler")
    assert k._reason("daemon", errno.ESRCH) == "no sync daemon in this state is running"
    assert k._reason("service", errno.EPERM).startswith("operation not permitted")
    assert k._reason("service", errno.EMLINK) == "too many links"


def test_a_fresh_adapter_has_sent_nothing() -> None:
    kernel = IpvsKernel(netns="vgl-none")
    assert kernel.requests == 0 and kernel.netns == "vgl-none"


# ---------------------------------------------------------------------------- /proc/net/ip_vs

#: as the kernel prints it (ip_vs_ctl.c, ip_vs_info_seq_show): an IPv4 service with two
#: destinations, a persistent IPv6 one, a fwmark one, and a service without destinations
PROC_TEXT = "\n".join(
    [
        "IP Virtual Server version 1.2.1 (size=4096)",
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn",
        "TCP  0A3E0064:0050 wlc ",
        "  -> 0A3E010C:0050      Masq    1      3          12        ",
        "  -> 0A3E010B:0050      Route   2      0          0         ",
        "TCP  [fd00:0062:0000:0000:0000:0000:0000:0064]:01BB sh persistent 300 00000080",
        "  -> [fd00:0062:0000:0000:0000:0000:0000:000b]:01BB      Tunnel  0      1"
        "          0         ",
        "FWM  00000007 rr ",
        "UDP  0A3E0064:0035 rr ",
        "  -> 0A3E010B:0035      Masq    5      0          0         ",
        "",
    ]
)


def test_proc_view_matches_what_the_kernel_prints() -> None:
    from vigil.ipvs.kernel import parse_proc_table, proc_service_id, proc_view

    shown = parse_proc_table(PROC_TEXT)
    web = ServiceKey.inet("tcp", "10.62.0.100", 80)
    dests = [
        Destination(addr=ipaddress.ip_address("10.62.1.11"), port=80, weight=2, forward="dr"),
        Destination(addr=ipaddress.ip_address("10.62.1.12"), port=80, weight=1),
    ]
    ident, want = proc_view(web, Service(web, "wlc"), dests)
    assert shown[ident] == want
    v6 = ServiceKey.inet("tcp", "fd00:62::64", 443)
    tun = Destination(addr=ipaddress.ip_address("fd00:62::b"), port=443, weight=0, forward="tun")
    ident6, want6 = proc_view(v6, Service(v6, "sh", persistence_timeout=300), [tun])
    assert shown[ident6] == want6
    mark = ServiceKey.mark(7)
    assert shown[proc_service_id(mark)] == proc_view(mark, Service(mark, "rr"), [])[1]
    dns = ServiceKey.inet("udp", "10.62.0.100", 53)
    five = Destination(addr=ipaddress.ip_address("10.62.1.11"), port=53, weight=5)
    assert shown[proc_service_id(dns)] == proc_view(dns, Service(dns, "rr"), [five])[1]
    # what differs is seen: a weight, a forwarding method, a scheduler, a missing server
    assert (
        proc_view(dns, Service(dns, "rr"), [replace(five, weight=1)])[1]
        != shown[proc_service_id(dns)]
    )
    assert (
        proc_view(dns, Service(dns, "rr"), [replace(five, forward="dr")])[1]
        != shown[proc_service_id(dns)]
    )
    assert proc_view(dns, Service(dns, "wrr"), [five])[1] != shown[proc_service_id(dns)]
    assert proc_view(web, Service(web, "wlc"), dests[:1])[1] != want


def test_proc_lists_a_fwmark_of_both_families_as_unknown() -> None:
    from vigil.ipvs.kernel import parse_proc_table

    text = "\n".join([*PROC_TEXT.splitlines()[:3], "FWM  00000007 rr ", "FWM  00000007 wlc "])
    assert parse_proc_table(text) == {"FWM 00000007": None}
