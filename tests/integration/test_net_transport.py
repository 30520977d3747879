"""vigil.vrrp.transport in real namespaces: what goes on the wire, what comes back, and flaps.

The transport runs in node ``a`` inside its own process (the driver), as vigild would;
peers ``b`` and ``c`` are plain sockets owned by the test, and the wire is watched with
AF_PACKET captures on the peers' interfaces.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap
from vigil.vrrp.packet import Received, decode_raw
from vigil.vrrp.transport import RawReceived

from tests.integration.test_net_transport_wire import (
    DriverProcess,
    Wire,
    peer_vrrp_socket,
    vrrp_message,
)
from tests.lab.lab import Lab

pytestmark = pytest.mark.integration

ADDR = {
    "a": ("10.88.0.1/24", "fd00:88::1/64"),
    "b": ("10.88.0.2/24", "fd00:88::2/64"),
    "c": ("10.88.0.3/24", "fd00:88::3/64"),
}
GROUP = {4: "224.0.0.18", 6: "ff02::12"}


def build(lab: Lab, *nodes: str) -> None:
    for node in nodes:
        lab.add_namespace(node)
        lab.connect(node, "eth0", ADDR[node])


def link_local(lab: Lab, node: str) -> str:
    for address in lab.addresses(node, "eth0"):
        ip = ipaddress.ip_interface(address).ip
        if ip.version == 6 and ip.is_link_local:
            return str(ip)
    raise AssertionError(f"{node} has no link-local address: {lab.addresses(node, 'eth0')}")


def is_vrrp(frame: Ether) -> bool:
    return (IP in frame and frame[IP].proto == 112) or (IPv6 in frame and frame[IPv6].nh == 112)


def vrrp_bytes(frame: Ether) -> bytes:
    """The VRRP message of a captured frame (without the IP header)."""
    if IP in frame:
        return bytes(frame[IP].payload)[: frame[IP].len - frame[IP].ihl * 4]
    return bytes(frame[IPv6].payload)[: frame[IPv6].plen]


def v6_checksum_ok(frame: Ether) -> bool:
    """The VRRP checksum over the IPv6 pseudo-header and the whole message sums to 0xffff."""
    ip6 = frame[IPv6]
    body = vrrp_bytes(frame)
    data = (
        ipaddress.IPv6Address(ip6.src).packed
        + ipaddress.IPv6Address(ip6.dst).packed
        + struct.pack("!I3xB", len(body), 112)
        + body
        + b"\0" * (len(body) % 2)
    )
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def test_ipv4_advert_leaves_from_the_primary_with_ttl_255_and_tos_c0(lab: Lab) -> None:
    build(lab, "a", "b")
    lab.add_addr("a", "eth0", "10.88.0.100/24")  # a VIP: secondary, never the source
    wire = Wire(lab, "b")
    agent = DriverProcess(lab, "a")
    assert agent("acquire", family=4, ifname="eth0")["up"] is True
    payload = vrrp_message(7, addresses=ipaddress.IPv4Address("10.88.0.100").packed)

    assert agent("send", family=4, ifname="eth0", payload=payload.hex())["sent"] == 1

    (frame,) = wire.frames(is_vrrp)
    ip = frame[IP]
    assert frame.dst == "01:00:5e:00:00:12"
    assert (ip.src, ip.dst, ip.ttl, ip.tos) == ("10.88.0.1", "224.0.0.18", 255, 0xC0)
    assert ip.flags == 0 and ip.id != 0  # like keepalived: no DF, a counted identification
    assert vrrp_bytes(frame) == payload
    fresh = IP(bytes(ip))
    del fresh.chksum
    assert IP(bytes(fresh)).chksum == ip.chksum  # the kernel filled a valid header checksum


def test_ipv6_advert_leaves_from_the_link_local_with_kernel_checksum(lab: Lab) -> None:
    build(lab, "a", "b")
    wire = Wire(lab, "b")
    agent = DriverProcess(lab, "a")
    agent("acquire", family=6, ifname="eth0")
    vip = ipaddress.IPv6Address("fd00:88::100").packed
    payload = vrrp_message(9, priority=150, addresses=vip)

    assert agent("send", family=6, ifname="eth0", payload=payload.hex())["sent"] == 1

    (frame,) = wire.frames(is_vrrp)
    ip6 = frame[IPv6]
    assert frame.dst == "33:33:00:00:00:12"
    assert (ip6.src, ip6.dst, ip6.hlim, ip6.tc) == (
        link_local(lab, "a"),
        "ff02::12",
        255,
        0xC0,
    )
    sent = vrrp_bytes(frame)
    assert sent[:6] + sent[8:] == payload[:6] + payload[8:]
    assert sent[6:8] != b"\0\0" and v6_checksum_ok(frame)


def test_tcpdump_on_the_peer_sees_ttl_255_and_tos_c0(lab: Lab) -> None:
    """The same facts through tcpdump, as an operator would check them."""
    build(lab, "a", "b")
    pcap = lab.workdir / "b.pcap"
    tcpdump = lab.spawn(
        "b",
        ["tcpdump", "-i", "eth0", "-n", "-U", "-c", "2", "-w", str(pcap),
         "ip proto 112 or ip6 proto 112"],
        name="tcpdump",
    )  # fmt: skip
    lab.wait_for(lambda: "listening on" in tcpdump.log_text(), what="tcpdump to listen")
    agent = DriverProcess(lab, "a")
    for family in (4, 6):
        agent("acquire", family=family, ifname="eth0")
        payload = vrrp_message(3, addresses=bytes(4 if family == 4 else 16))
        assert agent("send", family=family, ifname="eth0", payload=payload.hex())["sent"] == 1
    lab.wait_for(lambda: not tcpdump.alive(), what="tcpdump to capture 2 packets and exit")

    v4, v6 = sorted(rdpcap(str(pcap)), key=lambda f: IPv6 in f)
    assert (v4[IP].src, v4[IP].ttl, v4[IP].tos) == ("10.88.0.1", 255, 0xC0)
    assert (v6[IPv6].src, v6[IPv6].hlim, v6[IPv6].tc) == (
        link_local(lab, "a"),
        255,
        0xC0,
    )


@pytest.mark.parametrize("family", [4, 6])
def test_receive_demultiplexes_by_vrid_and_reports_ttl(lab: Lab, family: int) -> None:
    build(lab, "a", "b")
    agent = DriverProcess(lab, "a")
    agent("acquire", family=family, ifname="eth0")
    for vrid in (10, 20):
        agent("register", family=family, ifname="eth0", vrid=vrid)
    ifindex = agent("status", family=family, ifname="eth0")["ifindex"]
    peer = peer_vrrp_socket(lab, "b", family)
    level = socket.IPPROTO_IP if family == 4 else socket.IPPROTO_IPV6
    hops = socket.IP_MULTICAST_TTL if family == 4 else socket.IPV6_MULTICAST_HOPS
    peer_src = "10.88.0.2" if family == 4 else link_local(lab, "b")
    addresses = bytes(4) if family == 4 else bytes(16)

    def send_from_peer(vrid: int, ttl: int) -> bytes:
        payload = vrrp_message(vrid, addresses=addresses)
        peer.setsockopt(level, hops, ttl)
        peer.sendto(payload, (GROUP[family], 0))
        return payload

    sent = {vrid: send_from_peer(vrid, 255) for vrid in (10, 20, 30)}

    def check(event: dict[str, Any], vrid: int, ttl: int) -> None:
        assert (event["src"], event["dst"], event["ttl"]) == (
            peer_src,
            GROUP[family],
            ttl,
        )
        assert (event["ifname"], event["ifindex"], event["vrid"]) == (
            "eth0",
            ifindex,
            vrid,
        )
        data = bytes.fromhex(event["data"])
        if family == 4:  # the whole datagram, IP header included
            assert data[0] >> 4 == 4 and data[9] == 112 and data[20:] == sent[vrid]
        else:  # the VRRP message; the kernel filled the checksum
            assert data[:6] + data[8:] == sent[vrid][:6] + sent[vrid][8:]

    check(agent.wait_event(lambda e: e["event"] == "rx" and e["handler"] == 10), 10, 255)
    check(agent.wait_event(lambda e: e["event"] == "rx" and e["handler"] == 20), 20, 255)
    unknown = agent.wait_event(lambda e: e["event"] == "unknown")
    check(unknown, 30, 255)
    assert unknown["reported_vrid"] == 30

    # A packet from further away still arrives: judging its TTL is the runtime's job.
    send_from_peer(10, 1)
    check(agent.wait_event(lambda e: e["event"] == "rx"), 10, 1)

    agent("unregister", family=family, ifname="eth0", vrid=20)
    send_from_peer(20, 255)
    assert agent.wait_event(lambda e: e["event"] in ("rx", "unknown"))["event"] == "unknown"
    stats = agent("status", family=family, ifname="eth0")["stats"]
    assert (stats["rx_packets"], stats["rx_unknown_vrid"]) == (5, 2)


@pytest.mark.parametrize("family", [4, 6])
def test_own_adverts_are_not_looped_back(lab: Lab, family: int) -> None:
    build(lab, "a", "b")
    agent = DriverProcess(lab, "a")
    agent("acquire", family=family, ifname="eth0")
    for vrid in (7, 8):
        agent("register", family=family, ifname="eth0", vrid=vrid)
    addresses = bytes(4 if family == 4 else 16)
    assert agent("send", family=family, ifname="eth0",
                 payload=vrrp_message(7, addresses=addresses).hex())["sent"] == 1  # fmt: skip
    # A peer's advert sent afterwards arrives after anything the send could have looped.
    peer_vrrp_socket(lab, "b", family).sendto(
        vrrp_message(8, addresses=addresses), (GROUP[family], 0)
    )
    first = agent.wait_event(lambda e: e["event"] in ("rx", "unknown"))
    assert first["vrid"] == 8, f"our own advert came back: {first}"


def joined_groups(lab: Lab, node: str) -> set[str]:
    text = lab.ip(node, "maddr", "show", "dev", "eth0")
    return {line.split()[1] for line in text.splitlines() if line.strip().startswith("inet")}


def test_sockets_are_shared_and_leave_the_group_on_last_release(lab: Lab) -> None:
    build(lab, "a", "b")
    agent = DriverProcess(lab, "a")
    assert not {"224.0.0.18", "ff02::12"} & joined_groups(lab, "a")
    for family in (4, 6):
        assert agent("acquire", family=family, ifname="eth0")["refs"] == 1
        assert agent("acquire", family=family, ifname="eth0")["refs"] == 2
    assert {"224.0.0.18", "ff02::12"} <= joined_groups(lab, "a")
    # A link event for an interface whose sockets are fine reopens nothing.
    assert agent("link_up", ifname="eth0")["up"] == []

    agent("release", family=4, ifname="eth0")
    assert "224.0.0.18" in joined_groups(lab, "a")  # one user left
    assert agent("release", family=4, ifname="eth0")["open"] == 1
    assert "224.0.0.18" not in joined_groups(lab, "a")
    assert "ff02::12" in joined_groups(lab, "a")


@pytest.mark.parametrize("family", [4, 6])
def test_unicast_goes_to_each_peer_only_from_the_configured_source(lab: Lab, family: int) -> None:
    build(lab, "a", "b", "c")
    source = "10.88.0.50" if family == 4 else "fd00:88::50"
    lab.add_addr("a", "eth0", f"{source}/{24 if family == 4 else 64}")
    peers = {node: ADDR[node][0 if family == 4 else 1].split("/")[0] for node in ("b", "c")}
    wires = {node: Wire(lab, node) for node in ("b", "c")}
    agent = DriverProcess(lab, "a")
    agent("acquire", family=family, ifname="eth0")
    payload = vrrp_message(7, addresses=bytes(4 if family == 4 else 16))

    reply = agent("send", family=family, ifname="eth0", payload=payload.hex(),
                  dst=list(peers.values()), src=source, builder=True)  # fmt: skip
    assert reply["sent"] == 2
    # A multicast marker afterwards: whatever the unicast send put on the wire for a peer
    # reaches it before the marker does.
    agent("send", family=family, ifname="eth0", payload=vrrp_message(99).hex())

    for node, wire in wires.items():
        unicast, marker = wire.frames(is_vrrp, count=2)
        if family == 4:
            ip = unicast[IP]
            assert (ip.src, ip.dst, ip.ttl, ip.tos) == (source, peers[node], 255, 0xC0)
        else:
            ip6 = unicast[IPv6]
            assert (ip6.src, ip6.dst, ip6.hlim, ip6.tc) == (
                source,
                peers[node],
                255,
                0xC0,
            )
        # The builder saw this datagram's own (src, dst).
        body = vrrp_bytes(unicast)
        tail = ipaddress.ip_address(source).packed + ipaddress.ip_address(peers[node]).packed
        assert body.endswith(tail)
        if family == 6:
            assert v6_checksum_ok(unicast)
        marker_ip = marker[IP] if family == 4 else marker[IPv6]
        assert marker_ip.dst == GROUP[family] and vrrp_bytes(marker)[1] == 99

    # Peers answer by unicast to our source: delivered like multicast, with that dst.
    agent("register", family=family, ifname="eth0", vrid=7)
    peer = peer_vrrp_socket(lab, "b", family)
    peer.sendto(payload, (source, 0))
    event = agent.wait_event(lambda e: e["event"] == "rx")
    assert (event["src"], event["dst"], event["vrid"]) == (peers["b"], source, 7)


def test_vmac_socket_sends_from_the_parent_primary_and_receives(lab: Lab) -> None:
    """A VRRP virtual MAC (macvlan) as keepalived's use_vmac: the frame carries the VMAC,
    the IP source is the parent's primary address."""
    build(lab, "a", "b")
    vmac = "00:00:5e:00:01:33"
    lab.ip("a", "link", "add", "vrrp.51", "link", "eth0", "address", vmac,
           "type", "macvlan", "mode", "private")  # fmt: skip
    lab.ip("a", "link", "set", "vrrp.51", "up")
    wire = Wire(lab, "b")
    agent = DriverProcess(lab, "a")
    agent("acquire", family=4, ifname="vrrp.51")
    agent("register", family=4, ifname="vrrp.51", vrid=51)
    agent("source_interface", family=4, ifname="vrrp.51", source="eth0")

    assert agent("send", family=4, ifname="vrrp.51", payload=vrrp_message(51).hex())["sent"] == 1
    (frame,) = wire.frames(is_vrrp)
    assert (frame.src, frame[IP].src, frame[IP].ttl) == (vmac, "10.88.0.1", 255)

    peer_vrrp_socket(lab, "b", 4).sendto(vrrp_message(51), ("224.0.0.18", 0))
    event = agent.wait_event(lambda e: e["event"] == "rx")
    assert (event["ifname"], event["src"], event["vrid"]) == (
        "vrrp.51",
        "10.88.0.2",
        51,
    )


def recreate_eth0(lab: Lab, node: str) -> None:
    link = lab.link(node)
    lab.ip(link.switch, "link", "add", link.port, "type", "veth",
           "peer", "name", "eth0", "netns", lab.node(node).ns)  # fmt: skip
    lab.ip(link.switch, "link", "set", link.port, "master", "br0", "up")
    lab.ip(node, "link", "set", "eth0", "up")
    for address in ADDR[node]:
        lab.add_addr(node, "eth0", address)


def test_socket_survives_the_interface_being_deleted_and_recreated(lab: Lab) -> None:
    build(lab, "a", "b")
    agent = DriverProcess(lab, "a")
    before = {}
    for family in (4, 6):
        agent("acquire", family=family, ifname="eth0")
        agent("register", family=family, ifname="eth0", vrid=10)
        before[family] = agent("status", family=family, ifname="eth0")["ifindex"]
    payloads = {4: vrrp_message(10), 6: vrrp_message(10, addresses=bytes(16))}

    lab.ip("a", "link", "del", "eth0")
    for family in (4, 6):
        sent = agent("send", family=family, ifname="eth0", payload=payloads[family].hex())
        assert sent["sent"] == 0
        down = agent.wait_event(lambda e, f=family: e["event"] == "status" and e["family"] == f)
        assert down["up"] is False and "eth0" in down["reason"]
        # Sending again while down: nothing sent, nothing reported again, no busy retry.
        assert agent("send", family=family, ifname="eth0", payload="00")["sent"] == 0
        status = agent("status", family=family, ifname="eth0")
        assert status["up"] is False
        assert status["stats"]["down_events"] == 1 and status["stats"]["tx_errors"] == 1
    assert not [e for e in agent.drain() if e["event"] == "status"]

    recreate_eth0(lab, "a")
    assert len(agent("link_up", ifname="eth0")["up"]) == 2
    for _ in (4, 6):
        assert agent.wait_event(lambda e: e["event"] == "status")["up"] is True

    wire = Wire(lab, "b")
    peer = {family: peer_vrrp_socket(lab, "b", family) for family in (4, 6)}
    for family in (4, 6):
        status = agent("status", family=family, ifname="eth0")
        assert status["up"] is True and status["ifindex"] != before[family]
        assert agent("send", family=family, ifname="eth0",
                     payload=payloads[family].hex())["sent"] == 1  # fmt: skip
        (frame,) = wire.frames(lambda f, fam=family: is_vrrp(f) and (IP in f) == (fam == 4))
        assert vrrp_bytes(frame)[1] == 10
        # ... and receives again, with the group joined on the new interface.
        peer[family].sendto(payloads[family], (GROUP[family], 0))
        event = agent.wait_event(lambda e, fam=family: e["event"] == "rx" and e["family"] == fam)
        assert event["ifindex"] == status["ifindex"]


def test_a_sender_heals_by_itself_when_the_link_event_is_missed(lab: Lab) -> None:
    build(lab, "a", "b")
    agent = DriverProcess(lab, "a")
    agent("acquire", family=4, ifname="eth0")
    lab.ip("a", "link", "del", "eth0")
    assert agent("send", family=4, ifname="eth0", payload=vrrp_message(5).hex())["sent"] == 0
    assert agent.wait_event(lambda e: e["event"] == "status")["up"] is False
    recreate_eth0(lab, "a")
    wire = Wire(lab, "b")

    # No link_up from the runtime: the next sends reopen it (at most one try a second).
    lab.wait_for(
        lambda: agent("send", family=4, ifname="eth0", payload=vrrp_message(5).hex())["sent"],
        what="a send to go out on the re-created eth0",
    )
    assert agent.wait_event(lambda e: e["event"] == "status")["up"] is True
    assert wire.frames(is_vrrp)[0][IP].src == "10.88.0.1"


def test_link_down_closes_and_link_up_reopens(lab: Lab) -> None:
    build(lab, "a", "b")
    agent = DriverProcess(lab, "a")
    agent("acquire", family=4, ifname="eth0")
    lab.link_down("a")
    # The runtime would also hear this from netlink; the send finds out by itself.
    assert agent("send", family=4, ifname="eth0", payload=vrrp_message(5).hex())["sent"] == 0
    down = agent.wait_event(lambda e: e["event"] == "status")
    assert down["up"] is False and down["reason"] == "interface eth0 is down"

    lab.link_up("a")
    agent("link_up", ifname="eth0")
    assert agent.wait_event(lambda e: e["event"] == "status")["up"] is True
    wire = Wire(lab, "b")
    assert agent("send", family=4, ifname="eth0", payload=vrrp_message(5).hex())["sent"] == 1
    assert wire.frames(is_vrrp)[0][IP].src == "10.88.0.1"


KEEPALIVED_CONF = """\
global_defs {
    router_id KA_%(node)s
}
vrrp_instance V4 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.1
    version 3
    virtual_ipaddress {
        10.88.0.100/24
    }
}
vrrp_instance V6 {
    state BACKUP
    interface eth0
    virtual_router_id 52
    priority 150
    advert_int 0.1
    virtual_ipaddress {
        fd00:88::100/64
    }
}
"""


def start_keepalived(lab: Lab, node: str) -> None:
    directory = lab.node_dir(node, short=True)
    conf = directory / "keepalived.conf"
    conf.write_text(KEEPALIVED_CONF % {"node": node})
    pids = [str(directory / f"{kind}.pid") for kind in ("main", "vrrp", "chk", "bfd")]
    lab.spawn(node, ["keepalived", "-n", "-l", "-D", "-f", str(conf),
                     "-p", pids[0], "-r", pids[1], "-c", pids[2], "-b", pids[3]],
              name="keepalived")  # fmt: skip


def as_raw(event: dict[str, Any]) -> RawReceived:
    """Rebuild the RawReceived the driver saw (to hand it to the codec here)."""
    return RawReceived(
        event["family"], event["ifname"], ipaddress.ip_address(event["src"]),
        ipaddress.ip_address(event["dst"]), event["ttl"], bytes.fromhex(event["data"]),
        event["ifindex"],
    )  # fmt: skip


def test_keepalived_adverts_are_delivered_and_decode(lab: Lab) -> None:
    build(lab, "a", "c")
    agent = DriverProcess(lab, "a")
    for family, vrid in ((4, 51), (6, 52)):
        agent("acquire", family=family, ifname="eth0")
        agent("register", family=family, ifname="eth0", vrid=vrid)

    start_keepalived(lab, "c")

    v4 = agent.wait_event(lambda e: e["event"] == "rx" and e["family"] == 4, timeout=10)
    assert (v4["src"], v4["dst"], v4["ttl"], v4["vrid"]) == (
        "10.88.0.3",
        "224.0.0.18",
        255,
        51,
    )
    assert bytes.fromhex(v4["data"])[1] == 0xC0  # TOS, in the IP header passed on whole
    v6 = agent.wait_event(lambda e: e["event"] == "rx" and e["family"] == 6, timeout=10)
    assert (v6["src"], v6["dst"], v6["ttl"]) == (link_local(lab, "c"), "ff02::12", 255)

    # The transport's datagrams are what the codec expects (the runtime's one call).
    for event, vrid, vip in ((v4, 51, "10.88.0.100"), (v6, 52, "fd00:88::100")):
        received = decode_raw(as_raw(event))
        assert isinstance(received, Received), received
        packet = received.packet
        assert (packet.version, packet.vrid, packet.priority) == (3, vrid, 150)
        assert packet.addresses == (ipaddress.ip_address(vip),)


def test_keepalived_accepts_our_adverts_and_backs_off(lab: Lab) -> None:
    """keepalived (priority 150, master) hears priority 200 from us and gives up its VIPs.

    This checks the send path end to end against a real peer: source, TTL, checksum with
    the IPv4 pseudo-header, IPv6 from the link-local.
    """
    build(lab, "a", "c")
    start_keepalived(lab, "c")
    for vip in ("10.88.0.100", "fd00:88::100"):
        lab.wait_address("c", vip, timeout=10)
    agent = DriverProcess(lab, "a")
    for family, vrid, vip in ((4, 51, "10.88.0.100"), (6, 52, "fd00:88::100")):
        agent("acquire", family=family, ifname="eth0")
        agent("advertise", family=family, ifname="eth0", vrid=vrid, priority=200,
              adver_int=10, addresses=[vip], count=200, every=0.1)  # fmt: skip

    for vip in ("10.88.0.100", "fd00:88::100"):
        lab.wait_address("c", vip, present=False, timeout=10)

    agent("stop_advertising")
    for vip in ("10.88.0.100", "fd00:88::100"):
        lab.wait_address("c", vip, timeout=10)  # master again once we went quiet


@pytest.mark.parametrize("family", [4, 6])
def test_prepare_builds_what_send_would_and_sends_nothing(lab: Lab, family: int) -> None:
    """The runtime prepares a backup's first advert at the Master_Down timer's lead."""
    build(lab, "a", "b", "c")
    wire = Wire(lab, "b")
    agent = DriverProcess(lab, "a")
    agent("acquire", family=family, ifname="eth0")
    own = ADDR["a"][0].split("/")[0] if family == 4 else link_local(lab, "a")
    peers = [ADDR[n][0 if family == 4 else 1].split("/")[0] for n in ("b", "c")]
    source = "10.88.0.1" if family == 4 else "fd00:88::1"

    multicast = agent("prepare", family=family, ifname="eth0")
    unicast = agent("prepare", family=family, ifname="eth0", dst=peers, src=source)
    wrong = agent("prepare", family=family, ifname="eth0", dst=["not-an-address"])

    assert multicast["built"] == [[own, GROUP[family]]]
    assert unicast["built"] == [[source, peer] for peer in peers]
    assert wrong["built"] == []  # left for send() to report
    assert wrong["tx_packets"] == 0
    agent("send", family=family, ifname="eth0", payload=vrrp_message(99).hex())
    (first,) = wire.frames(is_vrrp)  # the marker is the first VRRP frame on the wire
    assert vrrp_bytes(first)[1] == 99
