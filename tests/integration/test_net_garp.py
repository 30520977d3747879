"""vigil.net.garp in real namespaces: the frames a peer sees, and what its kernel learns."""

from __future__ import annotations

import json
import sys

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from vigil.net.garp import build_gratuitous_arp, build_unsolicited_na

from tests.integration.test_net_transport_wire import (
    Wire,
)
from tests.lab.lab import Lab

pytestmark = pytest.mark.integration

VIP4, VIP6 = "10.88.0.100", "fd00:88::100"
VMAC = "00:00:5e:00:01:33"

BURST = """
import asyncio, json, sys
from vigil.net.garp import GarpSender
ifname, vips, count, interval, mac = json.loads(sys.argv[1])
sender = GarpSender()
sent = asyncio.run(sender.send_burst(ifname, vips, count=count, interval=interval, mac=mac))
print(json.dumps({"sent": sent, "errors": sender.errors}))
"""


def burst(
    lab: Lab,
    node: str,
    vips: list[str],
    count: int,
    interval: float = 0.0,
    mac: str | None = None,
    ifname: str = "eth0",
) -> dict[str, int]:
    """Run GarpSender.send_burst inside ``node`` (as vigild would) and return its counts."""
    args = json.dumps([ifname, vips, count, interval, mac])
    done = lab.run(node, [sys.executable, "-c", BURST, args], timeout=30, input="")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def build(lab: Lab) -> None:
    lab.add_namespace("a")
    lab.add_namespace("b")
    lab.connect("a", "eth0", ["10.88.0.1/24", "fd00:88::1/64"])
    lab.connect("b", "eth0", ["10.88.0.2/24", "fd00:88::2/64"])
    lab.add_addr("a", "eth0", f"{VIP4}/24")
    lab.add_addr("a", "eth0", f"{VIP6}/64")


def is_announcement(frame: Ether) -> bool:
    return (ARP in frame and frame[ARP].psrc == VIP4) or (
        ICMPv6ND_NA in frame and frame[ICMPv6ND_NA].tgt == VIP6
    )


def test_burst_puts_keepalived_shaped_frames_on_the_wire(lab: Lab) -> None:
    build(lab)
    mac = lab.link_info("a")["address"]
    wire = Wire(lab, "b")

    assert burst(lab, "a", [VIP4, VIP6], count=3, interval=0.01) == {
        "sent": 6,
        "errors": 0,
    }

    frames = wire.frames(is_announcement, count=6)
    # Each round announces every VIP in order.
    assert [ARP in f for f in frames] == [True, False] * 3
    for frame in frames:
        if ARP in frame:
            assert bytes(frame) == build_gratuitous_arp(mac, VIP4)
            arp = frame[ARP]
            assert (frame.dst, arp.op, arp.hwsrc, arp.hwdst) == (
                "ff:ff:ff:ff:ff:ff", 1, mac, "ff:ff:ff:ff:ff:ff",
            )  # fmt: skip
        else:
            assert bytes(frame) == build_unsolicited_na(mac, VIP6)
            ip6, na = frame[IPv6], frame[ICMPv6ND_NA]
            assert (ip6.src, ip6.dst, ip6.hlim) == (VIP6, "ff02::1", 255)
            assert (na.R, na.S, na.O) == (0, 0, 1)
            assert frame[ICMPv6NDOptDstLLAddr].lladdr == mac
            fresh = Ether(bytes(frame))
            del fresh[ICMPv6ND_NA].cksum
            assert Ether(bytes(fresh))[ICMPv6ND_NA].cksum == na.cksum


def neighbour(lab: Lab, node: str, address: str) -> str | None:
    for entry in lab.ip_json(node, "neigh", "show", "dev", "eth0"):
        if entry.get("dst") == address:
            return entry.get("lladdr")  # type: ignore[no-any-return]
    return None


def test_peer_learns_the_vip_at_the_virtual_mac(lab: Lab) -> None:
    build(lab)
    # b is the gateway in front of the pair: let it create neighbour entries from the
    # announcements (RFC 9131 router behaviour; without it only existing entries are
    # refreshed), so the effect of each frame shows in its table.
    lab.sysctl(
        "b",
        **{
            "net.ipv4.conf.eth0.arp_accept": 1,
            "net.ipv6.conf.eth0.forwarding": 1,
            "net.ipv6.conf.eth0.accept_untracked_na": 1,
        },
    )
    wire = Wire(lab, "b")
    assert neighbour(lab, "b", VIP4) is None and neighbour(lab, "b", VIP6) is None

    assert burst(lab, "a", [VIP4, VIP6], count=1, mac=VMAC) == {"sent": 2, "errors": 0}

    frames = wire.frames(is_announcement, count=2)
    assert {f.src for f in frames} == {VMAC}
    lab.wait_for(lambda: neighbour(lab, "b", VIP4) == VMAC, what=f"{VIP4} at {VMAC} on b")
    lab.wait_for(lambda: neighbour(lab, "b", VIP6) == VMAC, what=f"{VIP6} at {VMAC} on b")


def test_burst_on_a_missing_interface_stops_without_raising(lab: Lab) -> None:
    build(lab)
    assert burst(lab, "a", [VIP4], count=5, ifname="nope0") == {"sent": 0, "errors": 1}
    assert burst(lab, "a", [VIP4], count=5, ifname="nope0", mac=VMAC) == {
        "sent": 0,
        "errors": 1,
    }


HEAD_THEN_REST = """
import asyncio, json, sys, time
from vigil.net.garp import GarpSender
ifname, vips, count, interval = json.loads(sys.argv[1])
sender = GarpSender()
done, head_sent, over = sender.send_head(ifname, vips, count=count, interval=interval)
rest = 0 if over else asyncio.run(
    sender.send_burst(ifname, vips, count=count, interval=interval, skip=done)
)
print(json.dumps({"done": done, "head": head_sent, "over": over, "rest": rest}))
"""


@pytest.mark.parametrize(
    ("count", "interval", "head"),
    [(3, 0.0, 2), (3, 0.01, 1), (1, 0.0, 2)],
)
def test_head_now_then_the_rest_is_the_same_burst(
    lab: Lab, count: int, interval: float, head: int
) -> None:
    """What the runtime does on becoming master: first round at once, the rest later."""
    build(lab)
    wire = Wire(lab, "b")
    args = json.dumps(["eth0", [VIP4, VIP6], count, interval])
    done = lab.run("a", [sys.executable, "-c", HEAD_THEN_REST, args], timeout=30)
    result = json.loads(done.stdout)
    assert result == {
        "done": head,
        "head": head,
        "over": count == 1,
        "rest": 2 * count - head,
    }
    frames = wire.frames(is_announcement, count=2 * count)
    assert [ARP in f for f in frames] == [True, False] * count


PREPARED = """
import asyncio, json, subprocess, sys
from vigil.net import garp
from vigil.net.garp import GarpSender
vips, new_mac = json.loads(sys.argv[1])
sender = GarpSender()
out = {"prepared": sender.prepare("eth0", vips), "missing": sender.prepare("eth9", vips)}
# Frames carry the MAC read when they were prepared; a fresh one is read once they expire.
subprocess.run(["ip", "link", "set", "eth0", "address", new_mac], check=True)
out["fresh"] = asyncio.run(sender.send_burst("eth0", vips, count=1))
garp.PREPARED_MAX_AGE = 0.0
out["expired"] = asyncio.run(sender.send_burst("eth0", vips, count=1))
print(json.dumps(out))
"""


def test_prepared_frames_are_sent_while_fresh(lab: Lab) -> None:
    """GarpSender.prepare() builds a takeover's frames ahead of it (VRRP does so at the
    Master_Down timer's lead); bursts use them for PREPARED_MAX_AGE, then build anew."""
    build(lab)
    old_mac = lab.link_info("a")["address"]
    new_mac = "02:00:00:88:00:01"
    wire = Wire(lab, "b")
    args = json.dumps([[VIP4, VIP6], new_mac])
    done = lab.run("a", [sys.executable, "-c", PREPARED, args], timeout=30)
    assert json.loads(done.stdout) == {"prepared": 2, "missing": 0, "fresh": 2, "expired": 2}
    frames = wire.frames(is_announcement, count=4)
    assert [bytes(f) for f in frames] == [
        build_gratuitous_arp(old_mac, VIP4),
        build_unsolicited_na(old_mac, VIP6),
        build_gratuitous_arp(new_mac, VIP4),
        build_unsolicited_na(new_mac, VIP6),
    ]
