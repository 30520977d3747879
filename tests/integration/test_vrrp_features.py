"""VRRP runtime features of vigild, end to end in namespaces.

Each test runs real agents on a lab bridge and observes the result where an operator
would: the kernel of a node (``ip -j addr/route/link``), frames on the client's wire (an
AF_PACKET capture with kernel receive timestamps), the client's neighbour table, and the
agent's API. Waits are on observed conditions with deadlines; where a test checks that
something does *not* happen, it waits for a positive condition that proves enough time
passed (so many adverts received) and then asserts the absence.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vrrp import VRRPv3

from tests.lab.agents import AgentHandle
from tests.lab.capture import Capture as LabCapture
from tests.lab.capture import Frame
from tests.lab.lab import BRIDGE, Lab, Node
from tests.lab.waiting import wait_for

pytestmark = pytest.mark.integration

VIP4 = "10.99.0.100"
VIP6 = "fd00:99::100"
N1_ADDRS = ["10.99.0.11/24", "fd00:99::11/64"]
N2_ADDRS = ["10.99.0.12/24", "fd00:99::12/64"]
CLIENT_ADDRS = ["10.99.0.20/24", "fd00:99::20/64"]
VRRP_PROTO = 112


# ---------------------------------------------------------------------------- helpers


def vi4(priority: int, **extra: Any) -> dict[str, Any]:
    """An IPv4 VRRPv3 instance at 0.1 s adverts (keeps each test short)."""
    inst: dict[str, Any] = {
        "name": "VI_4",
        "interface": "eth0",
        "vrid": 51,
        "priority": priority,
        "version": 3,
        "advert_interval": 0.1,
        "virtual_ipaddresses": [f"{VIP4}/24"],
    }
    inst.update(copy.deepcopy(extra))
    return inst


def vi6(priority: int, **extra: Any) -> dict[str, Any]:
    inst: dict[str, Any] = {
        "name": "VI_6",
        "interface": "eth0",
        "vrid": 52,
        "priority": priority,
        "version": 3,
        "advert_interval": 0.1,
        "virtual_ipaddresses": [f"{VIP6}/64"],
    }
    inst.update(copy.deepcopy(extra))
    return inst


def config(router_id: str, *instances: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"global": {"router_id": router_id}, "vrrp_instances": list(instances), **top}


def build(lab: Lab, *, client: bool = True, n2: bool = True) -> dict[str, Node]:
    """n1 (.11), n2 (.12) and a client (.20) on one bridge."""
    nodes = {"n1": lab.add_namespace("n1")}
    lab.connect(nodes["n1"], addrs=N1_ADDRS)
    if n2:
        nodes["n2"] = lab.add_namespace("n2")
        lab.connect(nodes["n2"], addrs=N2_ADDRS)
    if client:
        nodes["client"] = lab.add_namespace("client")
        lab.connect(nodes["client"], addrs=CLIENT_ADDRS)
    return nodes


def instance(agent: AgentHandle, name: str = "VI_4") -> dict[str, Any]:
    status, body = agent.client.get(f"/v1/vrrp/instances/{name}")
    assert status == 200, body
    return dict(body)


def state(agent: AgentHandle, name: str = "VI_4") -> str:
    return str(instance(agent, name)["state"])


def wait_state(
    lab: Lab, agent: AgentHandle, want: str, name: str = "VI_4", timeout: float = 5.0
) -> None:
    lab.wait_for(
        lambda: state(agent, name) == want,
        timeout=timeout,
        what=f"{name} on {agent.node.name} to be {want}",
    )


def wait_received(lab: Lab, agent: AgentHandle, more: int, name: str = "VI_4") -> None:
    """Wait until the instance has accepted ``more`` further adverts (time passing, observed)."""
    start = instance(agent, name)["counters"]["adverts_received"]
    lab.wait_for(
        lambda: instance(agent, name)["counters"]["adverts_received"] >= start + more,
        timeout=max(5.0, more * 1.5),
        what=f"{more} more adverts received by {name} on {agent.node.name}",
    )


def events(agent: AgentHandle, kind: str, name: str = "VI_4") -> list[dict[str, Any]]:
    status, body = agent.client.get("/v1/events?since=0")
    assert status == 200, body
    # The event's own fields plus its data (old/new/reason/...) in one flat mapping.
    return [{**e["data"], **e} for e in body if e["kind"] == kind and e.get("instance") == name]


def rejected(agent: AgentHandle, reason: str, name: str = "VI_4") -> int:
    return int(instance(agent, name)["counters"]["rejected"].get(reason, 0))


def addr_info(lab: Lab, node: Node, address: str) -> dict[str, Any] | None:
    """The ``ip -j addr`` entry for ``address`` (plus ``dev``), or None."""
    for link in lab.ip_json(node, "addr", "show"):
        for info in link.get("addr_info", []):
            if info.get("local") == address:
                return {**info, "dev": link["ifname"]}
    return None


def routes(lab: Lab, node: Node, family: int = 4) -> list[dict[str, Any]]:
    return list(lab.ip_json(node, f"-{family}", "route", "show"))


def has_route(lab: Lab, node: Node, dst: str, family: int = 4) -> bool:
    return any(r.get("dst") == dst for r in routes(lab, node, family))


class Capture(LabCapture):
    """The lab's capture, matched on scapy-decoded frames (decoded once per frame)."""

    def __init__(self, lab: Lab, node: Node, ifname: str = "eth0") -> None:
        super().__init__(lab, node, ifname)
        self._decoded: dict[int, Ether] = {}

    def ether(self, frame: Frame) -> Ether:
        key = id(frame)
        if key not in self._decoded:
            self._decoded[key] = frame.scapy()
        return self._decoded[key]

    def matching(self, match: Callable[[Ether], bool]) -> list[Frame]:
        self.read()
        return [f for f in self.frames if match(self.ether(f))]

    def wait_for(
        self, match: Callable[[Ether], bool], count: int, timeout: float = 5.0
    ) -> list[Frame]:
        return self.wait(lambda f: match(self.ether(f)), count=count, timeout=timeout)


def is_garp(vip: str) -> Callable[[Ether], bool]:
    def match(frame: Ether) -> bool:
        return (
            ARP in frame
            and frame[ARP].op == 1
            and frame[ARP].psrc == vip
            and frame[ARP].pdst == vip
            and frame.dst == "ff:ff:ff:ff:ff:ff"
        )

    return match


def is_na(vip: str) -> Callable[[Ether], bool]:
    def match(frame: Ether) -> bool:
        return ICMPv6ND_NA in frame and frame[ICMPv6ND_NA].tgt == vip

    return match


def is_advert(src: str, vrid: int) -> Callable[[Ether], bool]:
    def match(frame: Ether) -> bool:
        return (
            IP in frame
            and frame[IP].proto == VRRP_PROTO
            and frame[IP].src == src
            and VRRPv3 in frame
            and frame[VRRPv3].vrid == vrid
        )

    return match


def bursts(frames: list[Frame], gap: float = 0.5) -> list[list[Frame]]:
    """Split frames into bursts separated by more than ``gap`` seconds."""
    out: list[list[Frame]] = []
    for frame in frames:
        if out and frame.time - out[-1][-1].time <= gap:
            out[-1].append(frame)
        else:
            out.append([frame])
    return out


# ---------------------------------------------------------------------------- tests


def test_excluded_vips_and_routes_follow_mastership(lab: Lab) -> None:
    """Excluded VIPs and virtual routes exist only on the master; adverts list only VIPs."""
    nodes = build(lab)
    n1, n2, client = nodes["n1"], nodes["n2"], nodes["client"]
    extra = {
        "virtual_ipaddresses_excluded": ["10.99.5.100/24", "fd00:99:5::100/64"],
        "virtual_routes": [
            {"to": "10.98.0.0/16", "via": "10.99.0.254"},
            {"to": "10.97.0.0/16", "dev": "eth0", "scope": "link"},
        ],
    }
    capture = Capture(lab, client)
    # n1 alone first (low priority): master, with everything.
    a1 = lab.start_vigild(n1, config("n1", vi4(100, **extra)))
    wait_state(lab, a1, "MASTER")
    for addr in (VIP4, "10.99.5.100", "fd00:99:5::100"):
        lab.wait_address(n1, addr)
    lab.wait_for(lambda: has_route(lab, n1, "10.98.0.0/16"), what="route 10.98/16 on n1")
    route = next(r for r in routes(lab, n1) if r["dst"] == "10.98.0.0/16")
    assert route["gateway"] == "10.99.0.254" and route["dev"] == "eth0"
    link_route = next(r for r in routes(lab, n1) if r["dst"] == "10.97.0.0/16")
    assert link_route["scope"] == "link"
    view = instance(a1)
    assert [v["present"] for v in view["excluded_vips"]] == [True, True]

    # The advert carries the one advertised VIP, not the excluded ones.
    adverts = capture.wait_for(is_advert("10.99.0.11", 51), count=3)
    for frame in adverts:
        vrrp = capture.ether(frame)[VRRPv3]
        assert vrrp.ipcount == 1, vrrp.show(dump=True)
        assert list(vrrp.addrlist) == [VIP4]

    # n2 joins with a higher priority and the same lists: n1 must hand everything over.
    a2 = lab.start_vigild(n2, config("n2", vi4(150, **extra)))
    wait_state(lab, a2, "MASTER")
    wait_state(lab, a1, "BACKUP")
    for addr in (VIP4, "10.99.5.100", "fd00:99:5::100"):
        lab.wait_address(n1, addr, present=False)
        lab.wait_address(n2, addr)
    lab.wait_for(lambda: not has_route(lab, n1, "10.98.0.0/16"), what="route gone from n1")
    assert not has_route(lab, n1, "10.97.0.0/16")
    assert has_route(lab, n2, "10.98.0.0/16") and has_route(lab, n2, "10.97.0.0/16")
    # Same advertised list on both sides: n1 accepts n2's adverts without an address finding.
    wait_received(lab, a1, 5)
    assert rejected(a1, "addresses") == 0, instance(a1)["counters"]


def test_advertised_list_mismatch_is_counted_but_accepted(lab: Lab) -> None:
    """A different VIP list is counted as `addresses` and still yields one master."""
    nodes = build(lab, client=False)
    a1 = lab.start_vigild(nodes["n1"], config("n1", vi4(150)))
    wait_state(lab, a1, "MASTER")
    other = vi4(100, virtual_ipaddresses=[f"{VIP4}/24", "10.99.0.101/24"])
    a2 = lab.start_vigild(nodes["n2"], config("n2", other))
    lab.wait_for(lambda: rejected(a2, "addresses") > 0, what="n2 to count `addresses`")
    wait_received(lab, a2, 5)
    assert state(a2) == "BACKUP" and state(a1) == "MASTER"
    assert not lab.has_address(nodes["n2"], VIP4)


def test_vip_label_scope_and_dev(lab: Lab) -> None:
    """A VIP's label, scope and dev (a second interface) are applied as configured."""
    nodes = build(lab, n2=False, client=False)
    n1 = nodes["n1"]
    lab.connect(n1, "eth1", addrs=["10.99.7.11/24"])
    inst = vi4(
        150,
        virtual_ipaddresses=[{"address": f"{VIP4}/24", "label": "eth0:vip"}],
        virtual_ipaddresses_excluded=[
            # Its own subnet: the kernel refuses a secondary whose scope differs from the
            # primary's ("ipv4: Invalid scope value"), so not 10.99.7.0/24.
            {"address": "10.99.9.100/24", "dev": "eth1", "scope": "link"},
            {"address": "10.99.8.1/32", "scope": "host", "label": "eth0:h"},
        ],
    )
    a1 = lab.start_vigild(n1, config("n1", inst))
    wait_state(lab, a1, "MASTER")
    lab.wait_address(n1, "10.99.8.1")
    vip = addr_info(lab, n1, VIP4)
    assert vip is not None
    assert (vip["dev"], vip["label"], vip["scope"], vip["prefixlen"]) == (
        "eth0",
        "eth0:vip",
        "global",
        24,
    )
    on_eth1 = addr_info(lab, n1, "10.99.9.100")
    assert on_eth1 is not None
    assert (on_eth1["dev"], on_eth1["scope"]) == ("eth1", "link")
    host = addr_info(lab, n1, "10.99.8.1")
    assert host is not None
    assert (host["dev"], host["scope"], host["label"]) == ("eth0", "host", "eth0:h")
    excluded = {v["address"]: v for v in instance(a1)["excluded_vips"]}
    assert excluded["10.99.9.100/24"]["dev"] == "eth1"
    assert excluded["10.99.9.100/24"]["present"] is True
    # A clean stop removes them from both interfaces.
    assert a1.stop() == 0
    for addr in (VIP4, "10.99.9.100", "10.99.8.1"):
        assert addr_info(lab, n1, addr) is None, addr


def test_garp_and_na_bursts_after_becoming_master(lab: Lab) -> None:
    """master_repeat GARPs/NAs at once, master_repeat more master_delay later, then none."""
    nodes = build(lab, n2=False)
    n1, client = nodes["n1"], nodes["client"]
    garp = {"master_repeat": 3, "master_delay": 1}
    capture = Capture(lab, client)
    a1 = lab.start_vigild(n1, config("n1", vi4(150, garp=garp), vi6(150, garp=garp)))
    wait_state(lab, a1, "MASTER")
    mac = lab.link_info(n1)["address"]

    arps = capture.wait_for(is_garp(VIP4), count=6, timeout=6)
    nas = capture.wait_for(is_na(VIP6), count=6, timeout=6)
    for frames in (arps, nas):
        groups = bursts(frames)
        assert [len(g) for g in groups] == [3, 3], [round(f.time, 3) for f in frames]
        gap = groups[1][0].time - groups[0][-1].time
        assert 0.7 <= gap <= 3.0, f"second burst {gap:.3f}s after the first (master_delay 1)"
    for frame in arps:
        ether = capture.ether(frame)
        assert ether.src == mac and ether[ARP].hwsrc == mac
    for frame in nas:
        ether = capture.ether(frame)
        na = ether[ICMPv6ND_NA]
        assert ether[IPv6].src == VIP6 and ether[IPv6].dst == "ff02::1"
        assert ether[IPv6].hlim == 255
        assert (na.O, na.R, na.S) == (1, 0, 0)
        assert ether[ICMPv6NDOptDstLLAddr].lladdr == mac

    # No third burst (master_refresh is 0): a second of adverts later, still 6 of each.
    seen = len(capture.matching(is_advert("10.99.0.11", 51)))
    capture.wait_for(is_advert("10.99.0.11", 51), count=seen + 10, timeout=5)
    assert len(capture.matching(is_garp(VIP4))) == 6
    assert len(capture.matching(is_na(VIP6))) == 6


def neighbour(lab: Lab, node: Node, addr: str) -> dict[str, Any] | None:
    entries = lab.ip_json(node, "neigh", "show", addr, "dev", "eth0")
    return dict(entries[0]) if entries else None


def ping(lab: Lab, node: Node, addr: str) -> bool:
    return lab.run(node, ["ping", "-c", "1", "-W", "1", addr], check=False).returncode == 0


def arp_replies(lab: Lab, node: Node, addr: str, count: int = 3) -> list[str]:
    """The MAC of every ARP reply to ``count`` requests for ``addr`` (arping -r)."""
    res = lab.run(
        node, ["arping", "-c", str(count), "-W", "0.2", "-i", "eth0", "-r", addr], check=False
    )
    return res.stdout.split()


def test_vmac_failover_keeps_the_virtual_mac(lab: Lab) -> None:
    """use_vmac: the macvlan carries the VIP and answers with 00:00:5e:00:01:VRID, from
    either node."""
    nodes = build(lab)
    n1, n2, client = nodes["n1"], nodes["n2"], nodes["client"]
    # The master answers the client's ping out of eth0 (the first route to the subnet);
    # with arp_announce=0 it would ARP for the client from the VIP with eth0's MAC and
    # rewrite the client's entry for the VIP. vigil sets arp_announce=2 on the parent of a
    # VMAC (checked below); keepalived leaves this to the operator.
    vmac = "00:00:5e:00:01:33"  # VRID 51
    capture = Capture(lab, client)
    a1 = lab.start_vigild(n1, config("n1", vi4(150, use_vmac=True)))
    a2 = lab.start_vigild(n2, config("n2", vi4(100, use_vmac=True)))
    wait_state(lab, a1, "MASTER")
    for node in (n1, n2):
        announce = lab.run(node, ["cat", "/proc/sys/net/ipv4/conf/eth0/arp_announce"])
        assert announce.stdout.strip() == "2", f"{node}: parent arp_announce not set"
    wait_state(lab, a2, "BACKUP")
    for node in (n1, n2):
        link = lab.ip_json(node, "-d", "link", "show", "dev", "vrrp.51")[0]
        assert link["address"] == vmac
        assert link.get("link") == "eth0"
        assert link["linkinfo"]["info_kind"] == "macvlan"
    info = addr_info(lab, n1, VIP4)
    assert info is not None and info["dev"] == "vrrp.51"
    assert not lab.has_address(n2, VIP4)
    assert instance(a1)["vmac"] == "vrrp.51"
    assert instance(a1)["vips"][0]["dev"] == "vrrp.51"
    # Adverts leave through the macvlan (virtual MAC) from the parent's address.
    for frame in capture.wait_for(is_advert("10.99.0.11", 51), count=3):
        assert capture.ether(frame).src == vmac

    # Only the virtual MAC answers ARP for the VIP (not n1's eth0, not the backup).
    assert arp_replies(lab, client, VIP4) == [vmac] * 3
    lab.wait_for(lambda: ping(lab, client, VIP4), timeout=5, what="the client to reach the VIP")
    entry = neighbour(lab, client, VIP4)
    assert entry is not None and entry["lladdr"] == vmac, entry

    # Failover: n1 crashes and loses its cable; n2 answers for the VIP with the same MAC.
    lab.kill_group(a1)
    lab.cable_pull(n1)
    wait_state(lab, a2, "MASTER")
    info = addr_info(lab, n2, VIP4)
    assert info is not None and info["dev"] == "vrrp.51"
    lab.wait_for(lambda: ping(lab, client, VIP4), timeout=5, what="the VIP reachable via n2")
    entry = neighbour(lab, client, VIP4)
    assert entry is not None and entry["lladdr"] == vmac, entry
    assert arp_replies(lab, client, VIP4) == [vmac] * 3


def test_ipv6_vmac_announces_and_answers_with_the_virtual_mac(lab: Lab) -> None:
    """An IPv6 VMAC (00:00:5e:00:02:VRID): NAs carry it, the client's neighbour entry is
    it, the adverts come from the parent's link-local address, and failover keeps it."""
    nodes = build(lab)
    n1, n2, client = nodes["n1"], nodes["n2"], nodes["client"]
    vmac = "00:00:5e:00:02:34"  # VRID 52
    capture = Capture(lab, client)
    a1 = lab.start_vigild(n1, config("n1", vi6(150, use_vmac="vmac6")))
    wait_state(lab, a1, "MASTER", "VI_6")
    a2 = lab.start_vigild(n2, config("n2", vi6(100, use_vmac="vmac6")))
    lab.wait_for(
        lambda: instance(a2, "VI_6")["master_priority"] == 150, what="n2 to hear n1's adverts"
    )
    parent_ll = next(
        a["local"]
        for a in lab.ip_json(n1, "-6", "addr", "show", "dev", "eth0")[0]["addr_info"]
        if a["local"].startswith("fe80:")
    )
    assert instance(a2, "VI_6")["master_address"] == parent_ll
    info = addr_info(lab, n1, VIP6)
    assert info is not None and info["dev"] == "vmac6"
    assert lab.ip_json(n1, "link", "show", "dev", "vmac6")[0]["address"] == vmac

    for frame in capture.wait_for(is_na(VIP6), count=5):
        ether = capture.ether(frame)
        assert ether.src == vmac and ether[ICMPv6NDOptDstLLAddr].lladdr == vmac

    def ping6() -> bool:
        res = lab.run(client, ["ping", "-6", "-c", "1", "-W", "1", VIP6], check=False)
        return res.returncode == 0

    lab.wait_for(ping6, timeout=5, what="the client to reach the IPv6 VIP")
    entry = neighbour(lab, client, VIP6)
    assert entry is not None and entry["lladdr"] == vmac, entry

    lab.kill_group(a1)
    lab.cable_pull(n1)
    wait_state(lab, a2, "MASTER", "VI_6")
    lab.ip(client, "-6", "neigh", "flush", "dev", "eth0")
    lab.wait_for(ping6, timeout=5, what="the IPv6 VIP reachable via n2")
    entry = neighbour(lab, client, VIP6)
    assert entry is not None and entry["lladdr"] == vmac, entry


@pytest.mark.parametrize("vmac", [False, True], ids=["plain", "vmac"])
def test_interface_removed_and_recreated(lab: Lab, vmac: bool) -> None:
    """The node's veth disappears (FAULT), is re-created, and the pair converges again.

    With use_vmac the macvlan goes with its parent and must be re-created on it.
    """
    nodes = build(lab, client=False)
    n1, n2 = nodes["n1"], nodes["n2"]
    a1 = lab.start_vigild(n1, config("n1", vi4(150, use_vmac=vmac)))
    a2 = lab.start_vigild(n2, config("n2", vi4(100, use_vmac=vmac)))
    wait_state(lab, a1, "MASTER")
    wait_state(lab, a2, "BACKUP")

    link = lab.link(n1)
    lab.ip(link.switch, "link", "del", link.port)  # takes n1's eth0 with it
    wait_state(lab, a1, "FAULT")
    assert "eth0" in (instance(a1)["fault_reason"] or "")
    wait_state(lab, a2, "MASTER")
    lab.wait_address(n2, VIP4)

    # Plug a new veth of the same name in (what a driver reload or a re-created VM NIC does).
    lab.ip(link.switch, "link", "add", link.port, "type", "veth", "peer", "name", "eth0",
           "netns", n1.ns)  # fmt: skip
    lab.ip(link.switch, "link", "set", link.port, "master", BRIDGE, "up")
    lab.ip(n1, "link", "set", "eth0", "up")
    for addr in N1_ADDRS:
        lab.add_addr(n1, "eth0", addr)
    wait_state(lab, a1, "MASTER", timeout=10)
    wait_state(lab, a2, "BACKUP")
    lab.wait_address(n2, VIP4, present=False)
    assert lab.has_address(n1, VIP4)
    # Exactly one master, and it stays that way while adverts flow.
    wait_received(lab, a2, 10)
    assert [state(a1), state(a2)] == ["MASTER", "BACKUP"]
    assert instance(a2)["master_address"] == "10.99.0.11"
    transitions = [(e["old"], e["new"]) for e in events(a1, "vrrp_transition")]
    assert ("MASTER", "FAULT") in transitions and ("FAULT", "BACKUP") in transitions
    if vmac:
        link = lab.ip_json(n1, "-d", "link", "show", "dev", "vrrp.51")[0]
        assert link["address"] == "00:00:5e:00:01:33" and link["link"] == "eth0"
        info = addr_info(lab, n1, VIP4)
        assert info is not None and info["dev"] == "vrrp.51"


def test_preempt_false_does_not_take_over(lab: Lab) -> None:
    """A higher-priority node with preempt: false that comes back stays BACKUP."""
    nodes = build(lab, client=False)
    n1, n2 = nodes["n1"], nodes["n2"]
    cfg1 = config("n1", vi4(150, preempt=False))
    a1 = lab.start_vigild(n1, cfg1)
    a2 = lab.start_vigild(n2, config("n2", vi4(100)))
    wait_state(lab, a1, "MASTER")  # nobody else was master: preempt does not matter here
    wait_state(lab, a2, "BACKUP")
    assert a1.stop() == 0
    wait_state(lab, a2, "MASTER")

    a1 = lab.start_vigild(n1, cfg1)
    wait_state(lab, a1, "BACKUP")
    # 15 adverts is 1.5 s: far beyond n1's Master_Down interval (about 0.36 s).
    wait_received(lab, a1, 15)
    assert state(a1) == "BACKUP" and state(a2) == "MASTER"
    assert instance(a1)["master_priority"] == 100
    assert not lab.has_address(n1, VIP4)


def test_preempt_delay_takes_over_only_after_the_delay(lab: Lab) -> None:
    nodes = build(lab, client=False)
    n1, n2 = nodes["n1"], nodes["n2"]
    a2 = lab.start_vigild(n2, config("n2", vi4(100)))
    wait_state(lab, a2, "MASTER")
    a1 = lab.start_vigild(n1, config("n1", vi4(150, preempt_delay=2)))
    wait_state(lab, a1, "BACKUP")
    wait_received(lab, a1, 8)  # > 2 x Master_Down: without the delay it would have preempted
    assert state(a1) == "BACKUP", instance(a1)
    wait_state(lab, a1, "MASTER", timeout=6)
    wait_state(lab, a2, "BACKUP")
    lab.wait_address(n2, VIP4, present=False)
    moves = events(a1, "vrrp_transition")
    entered = next(e for e in moves if e["new"] == "BACKUP")
    took = next(e for e in moves if e["new"] == "MASTER")
    assert took["time"] - entered["time"] >= 1.9, (entered, took)
    assert "preempt delay" in took["reason"], took["reason"]


def test_address_owner_is_master_at_once(lab: Lab) -> None:
    nodes = build(lab, client=False)
    n1, n2 = nodes["n1"], nodes["n2"]
    a2 = lab.start_vigild(n2, config("n2", vi4(100)))
    wait_state(lab, a2, "MASTER")
    owner = vi4(255, address_owner=True)
    a1 = lab.start_vigild(n1, config("n1", owner))
    wait_state(lab, a1, "MASTER")
    first = events(a1, "vrrp_transition")[0]
    assert (first["old"], first["new"], first["trigger"]) == ("INIT", "MASTER", "start")
    assert instance(a1)["effective_priority"] == 255
    wait_state(lab, a2, "BACKUP")
    lab.wait_address(n2, VIP4, present=False)
    assert instance(a2)["master_priority"] == 255


def test_v2_interval_mismatch_is_counted(lab: Lab) -> None:
    nodes = build(lab, client=False)
    v2 = {"version": 2}
    a1 = lab.start_vigild(nodes["n1"], config("n1", vi4(150, **v2, advert_interval=1)))
    a2 = lab.start_vigild(nodes["n2"], config("n2", vi4(100, **v2, advert_interval=2)))
    lab.wait_for(lambda: rejected(a2, "interval") >= 2, timeout=8, what="n2 `interval` count")
    lab.wait_for(lambda: rejected(a1, "interval") >= 1, timeout=8, what="n1 `interval` count")
    # Each side drops the other's adverts, as keepalived does: both end up MASTER.
    wait_state(lab, a2, "MASTER", timeout=10)
    assert state(a1) == "MASTER"
    assert instance(a2)["counters"]["adverts_received"] == 0
    logged = events(a2, "vrrp_rejected")
    assert logged and logged[0]["reason"] == "interval"
    assert "advert_interval" in logged[0]["message"]
    status, metrics = a2.client.get("/metrics")
    assert status == 200
    assert 'vigil_vrrp_rejected_total{instance="VI_4",reason="interval"}' in metrics


def test_v3_backup_learns_the_master_interval(lab: Lab) -> None:
    nodes = build(lab, client=False)
    a1 = lab.start_vigild(nodes["n1"], config("n1", vi4(150, advert_interval=0.1)))
    wait_state(lab, a1, "MASTER")
    a2 = lab.start_vigild(nodes["n2"], config("n2", vi4(100, advert_interval=0.5)))
    wait_for(
        lambda: instance(a2)["learned_interval"] == 0.1,
        what="n2 to learn the master's 0.1 s interval",
        observe=lambda: instance(a2)["learned_interval"],
    )
    view = instance(a2)
    assert view["state"] == "BACKUP" and view["advert_interval"] == 0.5
    # Master_Down = 3 x 0.1 + (256 - 100) x 0.1 / 256 with the learned interval.
    assert view["master_down_interval"] == pytest.approx(0.3 + 156 * 0.1 / 256)
    learned = events(a2, "vrrp_interval_learned")
    assert learned and learned[0]["interval"] == 0.1 and learned[0]["previous"] == 0.5
    assert instance(a1)["learned_interval"] == 0.1
    assert rejected(a2, "interval") == 0
    # The short learned Master_Down makes the takeover fast: well under 3 x 0.5 s.
    lab.kill_group(a1)
    lab.cable_pull(nodes["n1"])
    lab.wait_address(nodes["n2"], VIP4, timeout=5)
    assert state(a2) == "MASTER"


def test_two_vrids_share_one_interface(lab: Lab) -> None:
    """Two IPv4 instances on one eth0 (one raw socket, demultiplexed by VRID): each node
    is master of one, and neither counts the other VRID's adverts as rejections."""
    nodes = build(lab, client=False)
    n1, n2 = nodes["n1"], nodes["n2"]

    def pair(prio_a: int, prio_b: int) -> list[dict[str, Any]]:
        b = vi4(prio_b, name="VI_B", vrid=61, virtual_ipaddresses=["10.99.0.101/24"])
        return [vi4(prio_a), b]

    a1 = lab.start_vigild(n1, config("n1", *pair(150, 100)))
    a2 = lab.start_vigild(n2, config("n2", *pair(100, 150)))
    wait_state(lab, a1, "MASTER", "VI_4")
    wait_state(lab, a2, "MASTER", "VI_B")
    wait_state(lab, a1, "BACKUP", "VI_B")
    wait_state(lab, a2, "BACKUP", "VI_4")
    lab.wait_address(n1, VIP4)
    lab.wait_address(n2, "10.99.0.101")
    assert not lab.has_address(n1, "10.99.0.101") and not lab.has_address(n2, VIP4)
    wait_received(lab, a1, 10, "VI_B")
    for agent in (a1, a2):
        for name in ("VI_4", "VI_B"):
            noisy = dict(instance(agent, name)["counters"]["rejected"])
            noisy.pop("own", None)
            assert noisy == {}, (agent.node.name, name, noisy)
        status, body = agent.client.get("/v1/status")
        assert status == 200 and body.get("unknown_vrid", {}) in ({}, None), body
    assert instance(a1, "VI_B")["master_address"] == "10.99.0.12"


DROP_VRRP = """
table inet vigiltest {
    chain input {
        type filter hook input priority 0; policy accept;
        meta l4proto 112 drop
    }
}
"""


def test_equal_priority_goes_to_the_higher_address(lab: Lab) -> None:
    """Two masters of equal priority meet: the lower address steps down.

    A backup never preempts an equal-priority master (RFC 5798 6.4.2), so the tie-break is
    only seen when both are already master: each node first drops all VRRP it receives
    (nftables), both become master, then the filters go and the two meet.
    """
    nodes = build(lab, client=False)
    n1, n2 = nodes["n1"], nodes["n2"]
    for node in (n1, n2):
        lab.run(node, ["nft", "-f", "-"], input=DROP_VRRP)
    a1 = lab.start_vigild(n1, config("n1", vi4(100)))
    a2 = lab.start_vigild(n2, config("n2", vi4(100)))
    wait_state(lab, a1, "MASTER")
    wait_state(lab, a2, "MASTER")
    for node in (n1, n2):
        lab.run(node, ["nft", "delete", "table", "inet", "vigiltest"])
    wait_state(lab, a1, "BACKUP")  # 10.99.0.12 > 10.99.0.11
    reason = instance(a1)["last_transition"]["reason"]
    assert reason == "equal priority 100 from higher address 10.99.0.12", reason
    lab.wait_address(n1, VIP4, present=False)
    wait_received(lab, a1, 10)
    assert state(a2) == "MASTER" and state(a1) == "BACKUP"
    assert instance(a2)["counters"]["released_master"] == 0
    assert lab.has_address(n2, VIP4)


def test_equal_priority_backup_does_not_preempt(lab: Lab) -> None:
    """A node joining a master of its own priority stays BACKUP, even with a higher address."""
    nodes = build(lab, client=False)
    a1 = lab.start_vigild(nodes["n1"], config("n1", vi4(100)))
    wait_state(lab, a1, "MASTER")
    a2 = lab.start_vigild(nodes["n2"], config("n2", vi4(100)))
    wait_state(lab, a2, "BACKUP")
    wait_received(lab, a2, 10)
    assert state(a2) == "BACKUP" and state(a1) == "MASTER"
    assert not lab.has_address(nodes["n2"], VIP4)


def test_three_nodes_the_next_highest_takes_over(lab: Lab) -> None:
    """Skew time orders the backups: when the master dies, priority 120 wins over 100."""
    nodes = build(lab, client=False)
    n3 = lab.add_namespace("n3")
    lab.connect(n3, addrs=["10.99.0.13/24"])
    a1 = lab.start_vigild(nodes["n1"], config("n1", vi4(150)))
    wait_state(lab, a1, "MASTER")
    a2 = lab.start_vigild(nodes["n2"], config("n2", vi4(120)))
    a3 = lab.start_vigild(n3, config("n3", vi4(100)))
    lab.wait_for(
        lambda: instance(a2)["master_priority"] == instance(a3)["master_priority"] == 150,
        what="n2 and n3 to follow n1",
    )
    lab.kill_group(a1)
    lab.cable_pull(nodes["n1"])
    wait_state(lab, a2, "MASTER")
    wait_received(lab, a3, 10)
    assert state(a3) == "BACKUP" and instance(a3)["master_address"] == "10.99.0.12"
    assert instance(a3)["counters"]["became_master"] == 0
    assert lab.has_address(nodes["n2"], VIP4) and not lab.has_address(n3, VIP4)


def test_reload_changes_vips_while_master_without_a_transition(lab: Lab) -> None:
    """A reload that adds a VIP and a route puts them in at once (and announces the VIP);
    one that removes them takes them out; mastership never changes."""
    nodes = build(lab, n2=False)
    n1, client = nodes["n1"], nodes["client"]
    base = vi4(150, garp={"master_delay": 0})
    a1 = lab.start_vigild(n1, config("n1", base))
    wait_state(lab, a1, "MASTER")
    capture = Capture(lab, client)
    more = copy.deepcopy(base)
    more["virtual_ipaddresses"].append("10.99.0.101/24")
    more["virtual_routes"] = [{"to": "10.96.0.0/16", "via": "10.99.0.254"}]
    a1.write_config(config("n1", more))
    status, body = a1.reload()
    assert status == 200, body
    lab.wait_address(n1, "10.99.0.101")
    lab.wait_for(lambda: has_route(lab, n1, "10.96.0.0/16"), what="the new route on n1")
    capture.wait_for(is_garp("10.99.0.101"), count=5)
    assert capture.matching(is_garp(VIP4)) == [], "only the added VIP is announced"
    a1.write_config(config("n1", base))
    status, body = a1.reload()
    assert status == 200, body
    lab.wait_address(n1, "10.99.0.101", present=False)
    lab.wait_for(lambda: not has_route(lab, n1, "10.96.0.0/16"), what="the route removed")
    assert lab.has_address(n1, VIP4)
    view = instance(a1)
    assert view["state"] == "MASTER" and view["counters"]["became_master"] == 1
    assert len(events(a1, "vrrp_transition")) == 2  # INIT -> BACKUP -> MASTER, nothing since


def one_way_split(lab: Lab, garp: dict[str, Any]) -> tuple[Capture, str, AgentHandle]:
    """n1 (150) is master; then n2 (100) stops hearing VRRP and becomes master too, so n1
    hears a lower-priority master. Returns the client capture (started before n2), n1's
    MAC and n2's agent."""
    nodes = build(lab)
    n1, n2, client = nodes["n1"], nodes["n2"], nodes["client"]
    a1 = lab.start_vigild(n1, config("n1", vi4(150, garp=garp)))
    wait_state(lab, a1, "MASTER")
    capture = Capture(lab, client)
    lab.run(n2, ["nft", "-f", "-"], input=DROP_VRRP)
    a2 = lab.start_vigild(n2, config("n2", vi4(100, garp=garp)))
    wait_state(lab, a2, "MASTER")
    return capture, str(lab.link_info(n1)["address"]), a2


def from_mac(mac: str, match: Callable[[Ether], bool]) -> Callable[[Ether], bool]:
    return lambda frame: frame.src == mac and match(frame)


def test_master_answers_a_lower_priority_master_at_once(lab: Lab) -> None:
    """Each lower-priority advert gets an immediate advert back; when n2 hears again it
    steps down."""
    capture, _mac1, a2 = one_way_split(lab, {"master_repeat": 1, "master_delay": 0})
    lower = capture.wait_for(is_advert("10.99.0.12", 51), count=11)
    start, end = lower[0].time, lower[-1].time
    ours = [
        f for f in capture.matching(is_advert("10.99.0.11", 51)) if start <= f.time <= end + 0.05
    ]
    # n1's own schedule gives at most one advert per 0.1 s in the window; the answers add
    # one per lower-priority advert (allowing for a few that land late under load).
    own_schedule = int((end - start) / 0.1) + 1
    assert len(ours) >= own_schedule + 0.7 * len(lower), (len(ours), own_schedule, len(lower))
    answer_delays = sorted(
        min((m.time - t.time for m in ours if m.time >= t.time), default=1.0) for t in lower
    )
    assert answer_delays[len(answer_delays) // 2] < 0.03, answer_delays
    lab.run(a2.node, ["nft", "delete", "table", "inet", "vigiltest"])
    wait_state(lab, a2, "BACKUP")
    assert instance(a2)["last_transition"]["reason"].startswith("higher priority advert")


def test_lower_priority_garps_at_once_and_after_the_delay(lab: Lab) -> None:
    """As keepalived: lower_prio_repeat GARPs at once, and again lower_prio_delay later."""
    garp = {"master_repeat": 1, "master_delay": 0, "lower_prio_repeat": 2, "lower_prio_delay": 2}
    capture, mac1, a2 = one_way_split(lab, garp)
    ours = from_mac(mac1, is_garp(VIP4))
    first = capture.wait_for(is_advert("10.99.0.12", 51), count=1)[0]
    now = capture.wait_for(ours, count=2, timeout=5)
    assert now[0].time - first.time < 0.5, "lower-priority GARPs should not wait for the delay"
    # End the split: n2 steps down; the delayed bursts still come, 2 s after each advert.
    lab.run(a2.node, ["nft", "delete", "table", "inet", "vigiltest"])
    wait_state(lab, a2, "BACKUP")
    later = capture.wait(
        lambda f: f.time >= first.time + 1.5 and ours(capture.ether(f)), count=2, timeout=5
    )
    assert 1.8 <= later[0].time - first.time <= 4.0, later[0].time - first.time


def test_master_refresh_repeats_announcements(lab: Lab) -> None:
    """garp.master_refresh: while master, master_refresh_repeat GARPs every period."""
    nodes = build(lab, n2=False)
    capture = Capture(lab, nodes["client"])
    garp = {
        "master_repeat": 1,
        "master_delay": 0,
        "master_refresh": 0.5,
        "master_refresh_repeat": 2,
    }
    a1 = lab.start_vigild(nodes["n1"], config("n1", vi4(150, garp=garp)))
    wait_state(lab, a1, "MASTER")
    frames = capture.wait_for(is_garp(VIP4), count=7, timeout=6)  # 1, then 2 + 2 + 2
    groups = bursts(frames, gap=0.25)
    assert [len(g) for g in groups[:4]] == [1, 2, 2, 2], [round(f.time, 3) for f in frames]
    gaps = [b[0].time - a[0].time for a, b in itertools.pairwise(groups[:4])]
    assert all(0.4 <= gap <= 1.5 for gap in gaps), gaps


def test_restart_after_crash_removes_leftover_routes_and_excluded_vips(lab: Lab) -> None:
    """The journal covers excluded VIPs (on any device) and virtual routes too."""
    nodes = build(lab, client=False)
    n1 = nodes["n1"]
    lab.connect(n1, "eth1", addrs=["10.99.7.11/24"])
    extra = {
        "virtual_ipaddresses_excluded": [{"address": "10.99.7.100/24", "dev": "eth1"}],
        "virtual_routes": [{"to": "10.98.0.0/16", "via": "10.99.0.254"}],
    }
    a1 = lab.start_vigild(n1, config("n1", vi4(150, **extra)))
    wait_state(lab, a1, "MASTER")
    lab.wait_address(n1, "10.99.7.100")
    lab.wait_for(lambda: has_route(lab, n1, "10.98.0.0/16"), what="route on n1")
    lab.kill_group(a1)
    assert lab.has_address(n1, "10.99.7.100") and has_route(lab, n1, "10.98.0.0/16")
    # The successor is a backup (a master of priority 200 runs on n2 now).
    a2 = lab.start_vigild(nodes["n2"], config("n2", vi4(200, **extra)))
    wait_state(lab, a2, "MASTER")
    a1b = lab.start_vigild(n1, config("n1", vi4(150, **extra)))
    wait_state(lab, a1b, "BACKUP")
    for addr in (VIP4, "10.99.7.100"):
        lab.wait_address(n1, addr, present=False)
    assert not has_route(lab, n1, "10.98.0.0/16")
    cleaned = {e["address"] for e in events(a1b, "vip_cleanup")}
    assert cleaned == {f"{VIP4}/24", "10.99.7.100/24"}, cleaned
    wait_received(lab, a1b, 5)
    assert state(a1b) == "BACKUP" and not lab.has_address(n1, "10.99.7.100")


def test_backup_troubles_never_disturb_the_master(lab: Lab) -> None:
    """The backup's cable is pulled and plugged, then its agent restarts: the master never
    changes state and the VIP never moves."""
    nodes = build(lab, client=False)
    n1, n2 = nodes["n1"], nodes["n2"]
    a1 = lab.start_vigild(n1, config("n1", vi4(150)))
    wait_state(lab, a1, "MASTER")
    cfg2 = config("n2", vi4(100))
    a2 = lab.start_vigild(n2, cfg2)
    wait_received(lab, a2, 3)
    lab.cable_pull(n2)
    wait_state(lab, a2, "FAULT")
    assert "carrier" in (instance(a2)["fault_reason"] or "")
    lab.cable_plug(n2)
    wait_state(lab, a2, "BACKUP")
    wait_received(lab, a2, 5)
    assert a2.stop() == 0
    a2 = lab.start_vigild(n2, cfg2)
    wait_received(lab, a2, 10)
    assert state(a2) == "BACKUP" and instance(a2)["counters"]["became_master"] == 0
    view = instance(a1)
    assert view["state"] == "MASTER"
    assert view["counters"]["became_master"] == 1 and view["counters"]["released_master"] == 0
    assert len(events(a1, "vrrp_transition")) == 2
    assert lab.has_address(n1, VIP4) and not lab.has_address(n2, VIP4)
