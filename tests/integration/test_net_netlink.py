"""The netlink adapter against a real kernel, in a throw-away network namespace.

The test process stays in the root namespace; the adapter works inside the namespace
through pyroute2 (``netns=``, flags=0), and every claim is checked with iproute2
(``ip -n NS -j ...``) or the namespace's own /proc/sys. Nothing touches the root
namespace's links, addresses or sysctls.

Topology per test (the project's ``lab`` fixture, which removes everything afterwards):
node ``n1`` with ``ve0`` plugged into the lab switch; downing the switch port is a cable
pull as ``ve0`` sees it (carrier lost, still admin up). The lab turns IPv6 DAD off; the
one test about DAD turns it back on for ``ve0``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_interface
from pathlib import Path
from typing import Any

import pytest
from vigil.net import sysctl
from vigil.net.netlink import (
    AddrEvent,
    LinkEvent,
    Netlink,
    NetlinkEvent,
    NetlinkFailure,
    Resync,
    RouteSpec,
)
from vigil.net.vmac import VmacManager, VmacSpec, eui64_link_local

from tests.lab import Lab

pytestmark = pytest.mark.integration

EVENT_TIMEOUT = 5.0


def run(*argv: str, check: bool = True, input: str | None = None) -> str:
    res = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=20, input=input)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def ip_json(ns: str, *args: str) -> Any:
    return json.loads(run("ip", "-n", ns, "-j", *args) or "[]")


def ns_sysctl(ns: str, key: str) -> str:
    return run("ip", "netns", "exec", ns, "sysctl", "-n", key).strip()


def addr_entries(ns: str, ifname: str) -> list[dict[str, Any]]:
    links = ip_json(ns, "addr", "show", "dev", ifname)
    return list(links[0].get("addr_info", [])) if links else []


def find_addr(ns: str, ifname: str, local: str) -> dict[str, Any] | None:
    return next((a for a in addr_entries(ns, ifname) if a["local"] == local), None)


@pytest.fixture
def netns(lab: Lab) -> str:
    """Node n1 with ve0 plugged into the lab switch; returns the namespace name."""
    lab.add_switch()
    node = lab.add_namespace("n1")
    lab.connect(node, "ve0")
    return node.ns


@pytest.fixture
async def nl(netns: str) -> AsyncIterator[Netlink]:
    async with Netlink(netns=netns) as handle:
        yield handle


# ------------------------------------------------------------------------- links


async def test_link_state_matches_iproute2(nl: Netlink, netns: str) -> None:
    (ip_link,) = ip_json(netns, "link", "show", "dev", "ve0")
    state = await nl.link_state("ve0")
    assert state.index == ip_link["ifindex"] == await nl.link_index("ve0")
    assert state.name == "ve0"
    assert state.mac == ip_link["address"]
    assert state.mtu == ip_link["mtu"]
    assert state.up and state.carrier and state.running
    assert state.kind == "veth"
    assert await nl.find_link("nope0") is None


async def test_missing_interface_error_names_it(nl: Netlink) -> None:
    with pytest.raises(NetlinkFailure) as info:
        await nl.link_state("eth9")
    assert info.value.errno == errno.ENODEV
    assert str(info.value) == "cannot find interface eth9: no such device"


async def test_unknown_netns_is_an_error_not_a_new_namespace() -> None:
    name = f"vgnl-missing-{os.getpid()}"
    with pytest.raises(NetlinkFailure, match="no such netns"):
        async with Netlink(netns=name) as handle:
            await handle.links()
    assert not Path("/run/netns", name).exists()


# --------------------------------------------------------------------- addresses


async def test_ipv4_add_is_idempotent_with_label_and_broadcast(nl: Netlink, netns: str) -> None:
    vip = IPv4Interface("10.0.0.100/24")
    assert await nl.add_address("ve0", vip, label="ve0:vip") is True
    assert await nl.add_address("ve0", vip, label="ve0:vip") is False
    entry = find_addr(netns, "ve0", "10.0.0.100")
    assert entry is not None
    assert entry["prefixlen"] == 24
    assert entry["label"] == "ve0:vip"
    assert entry["broadcast"] == "10.0.0.255"
    assert entry["scope"] == "global"
    infos = [a for a in await nl.addresses("ve0") if a.address == vip]
    assert len(infos) == 1
    assert infos[0].label == "ve0:vip" and infos[0].scope == "global"

    assert await nl.del_address("ve0", vip) is True
    assert await nl.del_address("ve0", vip) is False
    assert find_addr(netns, "ve0", "10.0.0.100") is None


async def test_ipv4_host_scope_and_no_broadcast_on_slash32(nl: Netlink, netns: str) -> None:
    await nl.add_address("ve0", IPv4Interface("10.0.1.1/32"), scope="host")
    entry = find_addr(netns, "ve0", "10.0.1.1")
    assert entry is not None
    assert entry["scope"] == "host"
    assert "broadcast" not in entry
    await nl.add_address("ve0", IPv4Interface("10.0.2.1/24"), broadcast=IPv4Address("10.0.2.7"))
    entry = find_addr(netns, "ve0", "10.0.2.1")
    assert entry is not None and entry["broadcast"] == "10.0.2.7"


async def test_add_to_missing_device_says_so(nl: Netlink) -> None:
    with pytest.raises(NetlinkFailure) as info:
        await nl.add_address("eth9", IPv4Interface("10.0.0.100/24"))
    assert str(info.value) == "cannot add 10.0.0.100/24 to eth9: no such device"
    assert await nl.del_address("eth9", IPv4Interface("10.0.0.100/24")) is False


async def test_label_must_start_with_interface_name(nl: Netlink, netns: str) -> None:
    with pytest.raises(ValueError, match="must start with 've0'"):
        await nl.add_address("ve0", IPv4Interface("10.0.0.100/24"), label="eth0:vip")
    assert find_addr(netns, "ve0", "10.0.0.100") is None


async def test_primary_ipv4_skips_secondaries(nl: Netlink) -> None:
    assert await nl.primary_ipv4("ve0") is None
    await nl.add_address("ve0", IPv4Interface("10.0.0.1/24"))
    await nl.add_address("ve0", IPv4Interface("10.0.0.100/24"))
    assert await nl.primary_ipv4("ve0") == IPv4Interface("10.0.0.1/24")
    secondaries = [a for a in await nl.addresses("ve0", family=4) if a.secondary]
    assert [a.address for a in secondaries] == [IPv4Interface("10.0.0.100/24")]


async def test_ipv6_nodad_is_usable_at_once(nl: Netlink, netns: str, lab: Lab) -> None:
    lab.sysctl("n1", **{"net.ipv6.conf.ve0.accept_dad": 1})
    await nl.add_address("ve0", IPv6Interface("fd00::2/64"), nodad=False)
    await nl.add_address("ve0", IPv6Interface("fd00::1/64"))
    with_dad = find_addr(netns, "ve0", "fd00::2")
    without_dad = find_addr(netns, "ve0", "fd00::1")
    assert with_dad is not None and with_dad.get("tentative") is True
    assert without_dad is not None and not without_dad.get("tentative")
    assert without_dad.get("nodad") is True
    infos = {a.address: a for a in await nl.addresses("ve0", family=6)}
    assert infos[IPv6Interface("fd00::2/64")].tentative
    assert not infos[IPv6Interface("fd00::1/64")].tentative
    assert await nl.add_address("ve0", IPv6Interface("fd00::1/64")) is False
    assert await nl.del_address("ve0", IPv6Interface("fd00::1/64")) is True
    assert await nl.del_address("ve0", IPv6Interface("fd00::1/64")) is False


async def test_link_local_ipv6_once_dad_is_done(nl: Netlink) -> None:
    state = await nl.link_state("ve0")
    expected = eui64_link_local(state.mac)
    async with asyncio.timeout(10):
        while (found := await nl.link_local_ipv6("ve0")) is None:
            await asyncio.sleep(0.05)  # polling an observed condition under a deadline
    assert found == expected


# ------------------------------------------------------------------------ routes


async def test_routes_add_del_idempotent(nl: Netlink, netns: str) -> None:
    await nl.add_address("ve0", IPv4Interface("10.0.0.1/24"))
    via = RouteSpec.parse("10.1.0.0/16", via="10.0.0.254", metric=50)
    assert await nl.add_route(via) is True
    assert await nl.add_route(via) is False
    (shown,) = ip_json(netns, "route", "show", "10.1.0.0/16")
    assert shown["gateway"] == "10.0.0.254" and shown["dev"] == "ve0" and shown["metric"] == 50

    onlink = RouteSpec.parse("10.2.0.0/16", dev="ve0", src="10.0.0.1", table=100, scope="link")
    assert await nl.add_route(onlink) is True
    (shown,) = ip_json(netns, "route", "show", "table", "100")
    assert shown["dst"] == "10.2.0.0/16" and shown["prefsrc"] == "10.0.0.1"
    assert shown["scope"] == "link"
    listed = await nl.routes(table=100)
    assert [str(r.to) for r in listed] == ["10.2.0.0/16"]
    assert listed[0].dev == "ve0" and listed[0].src == IPv4Address("10.0.0.1")
    main = await nl.routes(family=4)
    assert any(r.to == via.to and r.via == via.via and r.metric == 50 for r in main)

    assert await nl.del_route(via) is True
    assert await nl.del_route(via) is False
    assert await nl.del_route(onlink) is True
    assert ip_json(netns, "route", "show", "10.1.0.0/16") == []
    assert ip_json(netns, "route", "show", "table", "100") == []


async def test_ipv6_default_route(nl: Netlink, netns: str) -> None:
    await nl.add_address("ve0", IPv6Interface("fd00::1/64"))
    default = RouteSpec.parse("default", via="fd00::fe", dev="ve0")
    assert default.to.version == 6
    assert await nl.add_route(default) is True
    (shown,) = ip_json(netns, "-6", "route", "show", "default")
    assert shown["gateway"] == "fd00::fe"
    assert await nl.del_route(default) is True
    assert ip_json(netns, "-6", "route", "show", "default") == []


async def test_unreachable_gateway_error_is_readable(nl: Netlink) -> None:
    spec = RouteSpec.parse("10.3.0.0/16", via="10.9.9.9")
    with pytest.raises(NetlinkFailure) as info:
        await nl.add_route(spec)
    assert info.value.errno == errno.ENETUNREACH
    assert str(info.value).startswith("cannot add route 10.3.0.0/16 via 10.9.9.9: network is")


async def test_replace_route_updates_gateway(nl: Netlink, netns: str) -> None:
    await nl.add_address("ve0", IPv4Interface("10.0.0.1/24"))
    await nl.add_route(RouteSpec.parse("10.4.0.0/16", via="10.0.0.254"))
    await nl.add_route(RouteSpec.parse("10.4.0.0/16", via="10.0.0.253"), replace=True)
    (shown,) = ip_json(netns, "route", "show", "10.4.0.0/16")
    assert shown["gateway"] == "10.0.0.253"


# ------------------------------------------------------------------------ events


def _is_addr(address: str, *, added: bool) -> Any:
    want = ip_interface(address)
    return lambda ev: isinstance(ev, AddrEvent) and ev.address == want and ev.added is added


def _is_link(ifname: str, **fields: bool) -> Any:
    def match(ev: NetlinkEvent) -> bool:
        return (
            isinstance(ev, LinkEvent)
            and ev.ifname == ifname
            and all(getattr(ev, key) == value for key, value in fields.items())
        )

    return match


async def test_event_when_someone_else_deletes_an_address(nl: Netlink, netns: str) -> None:
    await nl.add_address("ve0", IPv4Interface("10.0.0.100/24"))
    async with nl.events() as monitor:
        run("ip", "-n", netns, "addr", "del", "10.0.0.100/24", "dev", "ve0")
        ev = await monitor.wait_for(_is_addr("10.0.0.100/24", added=False), timeout=EVENT_TIMEOUT)
        assert isinstance(ev, AddrEvent) and ev.ifname == "ve0" and ev.removed
        run("ip", "-n", netns, "addr", "add", "fd00::7/64", "dev", "ve0", "nodad")
        ev = await monitor.wait_for(_is_addr("fd00::7/64", added=True), timeout=EVENT_TIMEOUT)
        assert isinstance(ev, AddrEvent) and ev.ifname == "ve0"


async def test_link_events_admin_down_carrier_loss_removal(
    nl: Netlink, netns: str, lab: Lab
) -> None:
    async with nl.events() as monitor:
        run("ip", "-n", netns, "link", "set", "ve0", "down")
        await monitor.wait_for(_is_link("ve0", up=False), timeout=EVENT_TIMEOUT)
        run("ip", "-n", netns, "link", "set", "ve0", "up")
        await monitor.wait_for(_is_link("ve0", up=True, carrier=True), timeout=EVENT_TIMEOUT)

        # cable pull: the peer end goes down, ve0 stays admin up but loses carrier
        lab.cable_pull("n1", "ve0")
        ev = await monitor.wait_for(_is_link("ve0", carrier=False), timeout=EVENT_TIMEOUT)
        assert isinstance(ev, LinkEvent) and ev.up and not ev.running
        assert not (await nl.link_state("ve0")).carrier
        lab.cable_plug("n1", "ve0")
        await monitor.wait_for(_is_link("ve0", carrier=True), timeout=EVENT_TIMEOUT)

        old_index = await nl.link_index("ve0")
        run("ip", "-n", netns, "link", "del", "ve0")
        ev = await monitor.wait_for(_is_link("ve0", removed=True), timeout=EVENT_TIMEOUT)
        assert ev.index == old_index if isinstance(ev, LinkEvent) else False

        run(
            "ip",
            "-n",
            netns,
            "link",
            "add",
            "ve0",
            "type",
            "veth",
            "peer",
            "name",
            "vx0",
        )
        ev = await monitor.wait_for(_is_link("ve0", removed=False), timeout=EVENT_TIMEOUT)
        assert isinstance(ev, LinkEvent) and ev.index != old_index and not ev.up


async def test_overflow_yields_resync_and_monitor_keeps_working(nl: Netlink, netns: str) -> None:
    monitor = nl.events(rcvbuf=4096)
    await monitor.start()
    try:
        batch = "".join(f"addr add 10.5.{i // 200}.{i % 200 + 1}/32 dev ve0\n" for i in range(400))
        # Blocking call on purpose: the event loop cannot drain while it runs, so the
        # small receive buffer overflows exactly as it would under a storm.
        run("ip", "-n", netns, "-batch", "-", input=batch)
        ev = await monitor.wait_for(lambda e: isinstance(e, Resync), timeout=EVENT_TIMEOUT)
        assert isinstance(ev, Resync)
        assert monitor.resyncs == 1
        listed = {a.address for a in ev.addresses if a.ifname == "ve0"}
        assert IPv4Interface("10.5.1.200/32") in listed and len(listed) >= 400
        assert any(link.name == "ve0" for link in ev.links)

        run("ip", "-n", netns, "addr", "del", "10.5.0.1/32", "dev", "ve0")
        await monitor.wait_for(_is_addr("10.5.0.1/32", added=False), timeout=EVENT_TIMEOUT)
    finally:
        await monitor.close()


async def test_close_ends_iteration_even_while_waiting(nl: Netlink) -> None:
    monitor = nl.events()
    await monitor.start()
    seen: list[NetlinkEvent] = []

    async def consume() -> None:
        async for ev in monitor:
            seen.append(ev)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)  # let the consumer block on the socket
    assert not consumer.done()
    await monitor.close()
    await asyncio.wait_for(consumer, timeout=EVENT_TIMEOUT)
    assert seen == []
    assert [ev async for ev in monitor] == []


# -------------------------------------------------------------------------- VMAC


def link_details(ns: str, ifname: str) -> dict[str, Any] | None:
    res = subprocess.run(
        ["ip", "-n", ns, "-d", "-j", "link", "show", "dev", ifname],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    if res.returncode != 0:
        return None
    (entry,) = json.loads(res.stdout)
    return dict(entry)


async def test_vmac_ipv4_create_sysctls_and_delete(nl: Netlink, netns: str) -> None:
    manager = VmacManager(nl)
    spec = VmacSpec(name="vrrp.51", parent="ve0", vrid=51)
    state = await manager.ensure(spec)
    details = link_details(netns, "vrrp.51")
    assert details is not None
    assert details["address"] == "00:00:5e:00:01:33" == state.mac
    assert details["link"] == "ve0"
    assert details["linkinfo"]["info_kind"] == "macvlan"
    assert details["linkinfo"]["info_data"]["mode"] == "private"
    assert "UP" in details["flags"]
    for key, value in (
        ("net.ipv4.conf.vrrp/51.arp_ignore", "1"),
        ("net.ipv4.conf.vrrp/51.accept_local", "1"),
        ("net.ipv4.conf.vrrp/51.rp_filter", "0"),
        ("net.ipv4.conf.vrrp/51.promote_secondaries", "1"),
        ("net.ipv6.conf.vrrp/51.disable_ipv6", "1"),
        ("net.ipv4.conf.ve0.arp_ignore", "1"),
        ("net.ipv4.conf.ve0.arp_filter", "1"),
    ):
        assert ns_sysctl(netns, key) == value, key

    again = await manager.ensure(spec)  # idempotent: the same interface is kept
    assert again.index == state.index

    assert await manager.remove(spec) is True
    assert link_details(netns, "vrrp.51") is None
    assert ns_sysctl(netns, "net.ipv4.conf.ve0.arp_ignore") == "0"
    assert ns_sysctl(netns, "net.ipv4.conf.ve0.arp_filter") == "0"
    assert await manager.remove(spec) is False


@pytest.fixture
def two_nodes(lab: Lab) -> tuple[str, str]:
    """Namespaces (node, peer) on the lab switch: node ve0 10.0.0.1, peer ve0 10.0.0.2."""
    lab.add_switch()
    node = lab.add_namespace("n1")
    peer = lab.add_namespace("n2")
    lab.connect(node, "ve0", addrs=["10.0.0.1/24"])
    lab.connect(peer, "ve0", addrs=["10.0.0.2/24"])
    return node.ns, peer.ns


def arp_reply_macs(ns: str, ifname: str, target: str) -> set[str]:
    """MACs that answered ARP for target (arping, 3 requests, bounded by -w and timeout)."""
    out = run("ip", "netns", "exec", ns, "arping", "-i", ifname, "-c", "3", "-w", "1", target,
              check=False)  # fmt: skip
    return {line.split()[3].lower() for line in out.splitlines() if " bytes from " in line}


async def test_vmac_vip_is_answered_only_by_the_virtual_mac(two_nodes: tuple[str, str]) -> None:
    node, peer = two_nodes
    async with Netlink(netns=node) as handle:
        spec = VmacSpec(name="vrrp.51", parent="ve0", vrid=51)
        await VmacManager(handle).ensure(spec)
        await handle.add_address("vrrp.51", IPv4Interface("10.0.0.100/24"))
        # Without arp_ignore on the parent, ve0 would answer too, with its own MAC.
        assert arp_reply_macs(peer, "ve0", "10.0.0.100") == {"00:00:5e:00:01:33"}


async def test_vmac_parent_restored_only_after_last_user(nl: Netlink, netns: str) -> None:
    manager = VmacManager(nl)
    first = VmacSpec(name="vrrp.1", parent="ve0", vrid=1)
    second = VmacSpec(name="vmac2", parent="ve0", vrid=2)
    await manager.ensure(first)
    await manager.ensure(second)
    await manager.remove(first)
    assert ns_sysctl(netns, "net.ipv4.conf.ve0.arp_ignore") == "1"
    await manager.remove(second)
    assert ns_sysctl(netns, "net.ipv4.conf.ve0.arp_ignore") == "0"


async def test_vmac_stale_interface_with_wrong_mac_is_recreated(nl: Netlink, netns: str) -> None:
    run(
        "ip", "-n", netns, "link", "add", "link", "ve0", "name", "vrrp.7",
        "address", "00:00:5e:00:01:99", "type", "macvlan", "mode", "private",
    )  # fmt: skip
    state = await VmacManager(nl).ensure(VmacSpec(name="vrrp.7", parent="ve0", vrid=7))
    details = link_details(netns, "vrrp.7")
    assert details is not None and details["address"] == "00:00:5e:00:01:07" == state.mac


async def test_vmac_name_taken_by_other_interface_is_refused(nl: Netlink, netns: str) -> None:
    with pytest.raises(NetlinkFailure, match="exists and is not a macvlan"):
        await VmacManager(nl).ensure(VmacSpec(name="lo", parent="ve0", vrid=3))
    details = link_details(netns, "lo")
    assert details is not None and "linkinfo" not in details


async def test_vmac_ipv6_gets_parent_link_local_and_no_own(nl: Netlink, netns: str) -> None:
    parent = await nl.link_state("ve0")
    state = await VmacManager(nl).ensure(VmacSpec(name="vrrp6.9", parent="ve0", vrid=9, family=6))
    assert state.mac == "00:00:5e:00:02:09"
    assert ns_sysctl(netns, "net.ipv6.conf.vrrp6/9.addr_gen_mode") == "1"
    locals_ = {a["local"] for a in addr_entries(netns, "vrrp6.9") if a["family"] == "inet6"}
    assert locals_ == {str(eui64_link_local(parent.mac).ip)}
    assert await nl.link_local_ipv6("vrrp6.9") == eui64_link_local(parent.mac)


async def test_vmac_parent_missing(nl: Netlink) -> None:
    with pytest.raises(NetlinkFailure, match="cannot find interface eth9: no such device"):
        await VmacManager(nl).ensure(VmacSpec(name="vrrp.5", parent="eth9", vrid=5))


# ------------------------------------------------------------------------ sysctl


def test_sysctl_in_namespace_does_not_touch_root(netns: str) -> None:
    sysctl.write_conf(4, "ve0", "arp_ignore", 2, netns=netns)
    assert ns_sysctl(netns, "net.ipv4.conf.ve0.arp_ignore") == "2"
    assert sysctl.read_conf(4, "ve0", "arp_ignore", netns=netns) == 2
    assert not Path("/proc/sys/net/ipv4/conf/ve0").exists()  # ve0 only exists in the netns


def test_sysctl_errors_name_key_and_cause(netns: str) -> None:
    with pytest.raises(sysctl.SysctlError) as info:
        sysctl.write_conf(4, "nope0", "arp_ignore", 1, netns=netns)
    assert str(info.value).startswith("cannot set net/ipv4/conf/nope0/arp_ignore=1:")
    assert "no interface 'nope0'" in str(info.value)
    with pytest.raises(sysctl.SysctlError, match="no such netns"):
        sysctl.read_conf(4, "ve0", "arp_ignore", netns=f"vgnl-missing-{os.getpid()}")
    with pytest.raises(sysctl.SysctlError, match="rejected the value"):
        sysctl.write_sysctl(sysctl.conf_path(4, "ve0", "arp_ignore"), "x", netns=netns)
