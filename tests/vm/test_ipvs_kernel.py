"""vigil.ipvs.kernel against a real IPVS (the VM's kernel), with traffic through it.

One topology (the session fixture ``ipvs_lab`` of conftest.py, tests/lab/ipvs.py: a
client, a director and two real servers running busybox httpd on one bridge, shared
with test_ipvs_keepalived.py), built once because every process start costs ~0.2 s in
the VM; each test starts from an empty IPVS table and leaves none. The
adapter works from the test process (the VM's root namespace) on the director's namespace.
``ipvsadm`` (libnl, not pyroute2) is the independent witness of what the kernel holds.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest
from vigil.ipvs.kernel import (
    Destination,
    DestinationState,
    IpvsError,
    IpvsKernel,
    Service,
    ServiceKey,
    ServiceState,
    SyncDaemon,
)

from tests.lab.ipvs import CLIENT, CLIENT_DIRECT, GUE_PORT, VIP, IpvsLab
from tests.lab.pytest_plugin import LAB_KEY
from tests.lab.waiting import WaitTimeout, wait_for, wait_for_async

WEB = ServiceKey.inet("tcp", VIP, 80)


@pytest.fixture
async def kernel(request: pytest.FixtureRequest, ipvs_lab: IpvsLab) -> AsyncIterator[IpvsKernel]:
    """The adapter on the director, with an empty table before and after the test."""
    request.node.stash[LAB_KEY] = ipvs_lab.lab  # a failure report gets the httpd logs
    k = IpvsKernel(netns=ipvs_lab.director.ns)
    await k.open()
    await k.flush()
    try:
        yield k
    finally:
        await k.flush()
        for daemon in await k.sync_daemons():
            await k.stop_sync_daemon(daemon.state)
        await k.close()


def pages(ipl: IpvsLab, count: int, *, source: str = CLIENT) -> list[str]:
    return [ipl.get(VIP, source=source) for _ in range(count)]


async def _counted(kernel: IpvsKernel, conns: int) -> ServiceState | None:
    (state,) = await kernel.services()
    return state if state.counters.conns >= conns else None


def alternates(seq: list[str]) -> bool:
    return all(a != b for a, b in itertools.pairwise(seq))


# ------------------------------------------------------------------------ ipvsadm as oracle

_METHOD = {"nat": "Masq", "dr": "Route", "tun": "Tunnel", "local": "Local"}
_CSUM = {"nocsum": "-c", "csum": "+c", "remcsum": "r+c"}


def _service_tokens(svc: Service) -> list[str]:
    key = svc.key
    if key.fwmark is not None:
        words = ["FWM", str(key.fwmark)] + (["IPv6"] if key.family == 6 else [])
    else:
        assert key.addr is not None
        host = f"[{key.addr}]" if key.family == 6 else str(key.addr)
        words = [str(key.protocol).upper(), f"{host}:{key.port}"]
    words.append(svc.scheduler)
    if svc.sched_flags:
        words.append("(" + ",".join(sorted(svc.sched_flags)) + ")")
    if svc.persistent:
        words += ["persistent", str(svc.persistence_timeout)]
        if svc.persistence_prefix is not None:
            if key.family == 4:
                mask = IPv4Address((0xFFFFFFFF << (32 - svc.persistence_prefix)) & 0xFFFFFFFF)
                words += ["mask", str(mask)]
            else:
                words += ["mask", str(svc.persistence_prefix)]
    if svc.one_packet:
        words.append("ops")
    return words


def _tunnel_info(d: Destination) -> str:
    if d.forward != "tun":
        return "n/a"
    if d.tunnel_type == "gue":
        return f"gue:{d.tunnel_port}:{_CSUM[d.tunnel_csum]}"
    if d.tunnel_type == "gre":
        return f"gre:{_CSUM[d.tunnel_csum]}"
    return "ipip"


def _dest_tokens(ds: DestinationState) -> list[str]:
    d = ds.destination
    host = f"[{d.addr}]" if d.family == 6 else str(d.addr)
    return [
        "->", f"{host}:{d.port}", _METHOD[d.forward], _tunnel_info(d), str(d.weight),
        str(ds.active_conns), str(ds.inactive_conns),
    ]  # fmt: skip


def as_ipvsadm(states: list[ServiceState]) -> list[list[str]]:
    """The adapter's listing as ``ipvsadm -Ln --tun-info`` would print it (tokens)."""
    out = []
    for st in states:
        out.append(_service_tokens(st.service))
        out += [_dest_tokens(d) for d in st.destinations]
    return out


def ipvsadm_tokens(text: str) -> list[list[str]]:
    """``ipvsadm -Ln ...`` output as token lists, without its header lines."""
    headers = ("IP Virtual Server", "Prot ", "-> RemoteAddress")
    return [
        line.split()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(headers)
    ]


async def same_table(ipl: IpvsLab, kernel: IpvsKernel) -> list[ServiceState]:
    """The adapter's listing, once it equals what ``ipvsadm -Ln --tun-info`` prints.

    Polled: connections of earlier tests (the kernel reuses a deleted destination's entry,
    with its connections, when the same one is added again) may expire between the reads.
    """

    async def agree() -> list[ServiceState] | None:
        states = await kernel.services()
        seen = ipvsadm_tokens(ipl.ipvsadm("-Ln", "--tun-info"))
        return states if sorted(seen) == sorted(as_ipvsadm(states)) else None

    try:
        return await wait_for_async(agree, timeout=10, interval=0.5, what="the same table")
    except WaitTimeout:
        states = await kernel.services()
        text = ipl.ipvsadm("-Ln", "--tun-info")
        assert sorted(ipvsadm_tokens(text)) == sorted(as_ipvsadm(states)), text
        raise


# ------------------------------------------------------------------------ tests


async def test_nat_round_robin_alternates_between_real_servers(
    ipvs_lab: IpvsLab, kernel: IpvsKernel
) -> None:
    await kernel.add_service(Service(WEB, "rr"))
    for rip in ipvs_lab.rips:
        before = kernel.requests
        await kernel.add_destination(WEB, Destination(ip_address(rip), 80, forward="nat"))
        assert kernel.requests - before == 1, "adding one real server is one netlink request"

    got = pages(ipvs_lab, 6)
    assert sorted(set(got)) == ["rs1", "rs2"] and alternates(got), got

    before = kernel.requests
    (state,) = await kernel.services()
    assert kernel.requests - before == 2, "one service dump plus one destination dump"
    assert state.service == Service(WEB, "rr")
    # The totals are folded in by the kernel's rate estimator every 2 s: wait for them.
    state = await wait_for_async(
        lambda: _counted(kernel, 6), timeout=10, interval=0.5, what="6 connections counted"
    )
    assert {str(d.destination.addr): d.destination.forward for d in state.destinations} == {
        rip: "nat" for rip in ipvs_lab.rips
    }
    # Counters: 6 connections in, split 3/3, packets both ways (NAT sees the replies).
    assert state.counters.conns == 6
    assert state.counters.packets_in > 6 and state.counters.packets_out > 6
    assert state.counters.bytes_in > 0 and state.counters.bytes_out > 0
    # A destination deleted and added again keeps its counters: at least 3 each.
    assert all(d.counters.conns >= 3 for d in state.destinations), state.destinations
    assert [st.service for st in await same_table(ipvs_lab, kernel)] == [state.service]
    stats = ipvsadm_tokens(ipvs_lab.ipvsadm("-Ln", "--stats", "--exact"))
    assert stats[0] == [
        "TCP", f"{VIP}:80", "6", str(state.counters.packets_in),
        str(state.counters.packets_out), str(state.counters.bytes_in),
        str(state.counters.bytes_out),
    ], stats  # fmt: skip


async def test_set_weight_and_delete_destination(ipvs_lab: IpvsLab, kernel: IpvsKernel) -> None:
    rs1, rs2 = (ip_address(r) for r in ipvs_lab.rips)
    await kernel.add_service(Service(WEB, "wrr"))
    await kernel.add_destination(WEB, Destination(rs1, 80, weight=1))
    await kernel.add_destination(WEB, Destination(rs2, 80, weight=1))

    before = kernel.requests
    await kernel.set_destination(WEB, Destination(rs2, 80, weight=0))  # quiesced
    assert kernel.requests - before == 1
    assert pages(ipvs_lab, 4) == ["rs1"] * 4
    (state,) = await same_table(ipvs_lab, kernel)
    assert {d.destination.addr: d.destination.weight for d in state.destinations} == {
        rs1: 1,
        rs2: 0,
    }

    await kernel.set_destination(WEB, Destination(rs2, 80, weight=3))
    await kernel.delete_destination(WEB, rs1, 80)
    assert pages(ipvs_lab, 3) == ["rs2"] * 3
    (state,) = await same_table(ipvs_lab, kernel)
    assert [(d.destination.addr, d.destination.weight) for d in state.destinations] == [(rs2, 3)]


async def test_direct_routing_with_the_vip_on_the_real_servers_lo(
    ipvs_lab: IpvsLab, kernel: IpvsKernel
) -> None:
    await kernel.add_service(Service(WEB, "rr"))
    for rip in ipvs_lab.rips:
        await kernel.add_destination(WEB, Destination(ip_address(rip), 80, forward="dr"))
    got = pages(ipvs_lab, 4, source=CLIENT_DIRECT)
    assert sorted(set(got)) == ["rs1", "rs2"] and alternates(got), got
    (state,) = await kernel.services()
    assert [d.destination.forward for d in state.destinations] == ["dr", "dr"]
    # Only the client's half of each connection passes the director.
    state = await wait_for_async(
        lambda: _counted(kernel, 4), timeout=10, interval=0.5, what="4 connections counted"
    )
    assert state.counters.packets_in > 4 and state.counters.packets_out == 0
    await same_table(ipvs_lab, kernel)


@pytest.mark.parametrize("tunnel", ["ipip", "gue", "gre"])
async def test_tunnel_forwarding(ipvs_lab: IpvsLab, kernel: IpvsKernel, tunnel: str) -> None:
    port = GUE_PORT if tunnel == "gue" else 0
    await kernel.add_service(Service(WEB, "rr"))
    for rip in ipvs_lab.rips:
        dest = Destination(
            ip_address(rip),
            80,
            forward="tun",
            tunnel_type=tunnel,
            tunnel_port=port,  # type: ignore[arg-type]
        )
        await kernel.add_destination(WEB, dest)
    got = pages(ipvs_lab, 4, source=CLIENT_DIRECT)
    assert sorted(set(got)) == ["rs1", "rs2"] and alternates(got), got
    (state,) = await same_table(ipvs_lab, kernel)
    assert {(d.destination.tunnel_type, d.destination.tunnel_port) for d in state.destinations} == {
        (tunnel, port)
    }


async def test_listing_matches_ipvsadm_for_every_kind_of_service(
    ipvs_lab: IpvsLab, kernel: IpvsKernel
) -> None:
    """IPv6, fwmark (both families), SCTP, persistence with masks, scheduler flags, one-packet,
    thresholds and every writable forwarding method, read back equal and as ipvsadm sees it."""
    rs1 = ip_address(ipvs_lab.rips[0])
    services = [
        Service(WEB, "wlc", persistence_timeout=300, persistence_prefix=24),
        Service(ServiceKey.inet("udp", "fd00:62::100", 53), "sh",
                sched_flags=frozenset({"sh-port", "sh-fallback"}), one_packet=True,
                persistence_timeout=60, persistence_prefix=64),
        Service(ServiceKey.inet("sctp", VIP, 5060), "mh", sched_flags=frozenset({"mh-port"})),
        Service(ServiceKey.mark(7), "lblcr"),
        Service(ServiceKey.mark(8, family=6), "sed", persistence_timeout=30),
    ]  # fmt: skip
    dests = {
        WEB: [
            Destination(rs1, 8080, weight=5, upper_threshold=100, lower_threshold=10),
            Destination(ip_address("10.62.1.99"), 80, forward="dr", weight=0),
            Destination(ip_address("10.62.1.98"), 80, forward="tun", tunnel_type="gre",
                        tunnel_csum="csum"),
            Destination(ip_address("10.62.1.97"), 80, forward="tun", tunnel_type="gue",
                        tunnel_port=GUE_PORT, tunnel_csum="remcsum"),
        ],
        services[1].key: [Destination(ip_address("fd00:62::11"), 53, forward="dr")],
        services[3].key: [Destination(rs1, 0, forward="dr")],
    }  # fmt: skip
    for svc in services:
        await kernel.add_service(svc)
    for key, ds in dests.items():
        for d in ds:
            await kernel.add_destination(key, d)
    states = await same_table(ipvs_lab, kernel)
    assert {st.service for st in states} == set(services)
    for st in states:
        assert {d.destination for d in st.destinations} == set(dests.get(st.key, []))
    thresholds = ipvsadm_tokens(ipvs_lab.ipvsadm("-Ln", "--thresholds"))
    assert ["->", f"{rs1}:8080", "100", "10", "0", "0"] in thresholds

    # set_service changes scheduler and persistence in place.
    await kernel.set_service(Service(WEB, "rr"))
    changed = {st.key: st.service for st in await kernel.services()}
    assert changed[WEB] == Service(WEB, "rr")
    assert ipvsadm_tokens(ipvs_lab.ipvsadm("-Ln", "-t", f"{VIP}:80"))[0] == [
        "TCP", f"{VIP}:80", "rr",
    ]  # fmt: skip
    await kernel.delete_service(services[1].key)
    assert services[1].key not in {st.key for st in await kernel.services()}


async def test_sync_daemon_starts_and_stops(ipvs_lab: IpvsLab, kernel: IpvsKernel) -> None:
    master = SyncDaemon("master", "eth0", syncid=7)
    backup = SyncDaemon("backup", "eth0", syncid=7, port=8849)
    await kernel.start_sync_daemon(master)
    await kernel.start_sync_daemon(backup)
    running = {d.state: d for d in await kernel.sync_daemons()}
    assert set(running) == {"master", "backup"}
    assert (running["master"].interface, running["master"].syncid) == ("eth0", 7)
    assert running["master"].group == IPv4Address("224.0.0.81") and running["master"].port == 8848
    assert running["backup"].port == 8849
    text = ipvs_lab.ipvsadm("-L", "--daemon")
    assert "master sync daemon (mcast=eth0, syncid=7" in text, text
    assert "backup sync daemon (mcast=eth0, syncid=7" in text, text

    with pytest.raises(IpvsError) as exc:
        await kernel.start_sync_daemon(master)
    assert exc.value.errno == errno.EEXIST

    await kernel.stop_sync_daemon("master")
    assert [d.state for d in await kernel.sync_daemons()] == ["backup"]
    await kernel.stop_sync_daemon("backup")
    assert await kernel.sync_daemons() == []
    # The kernel thread is gone once ipvsadm no longer lists it.
    wait_for(
        lambda: ipvs_lab.ipvsadm("-L", "--daemon").strip() == "",
        timeout=10,
        interval=0.2,
        what="ipvsadm -L --daemon to list nothing",
    )


async def test_kernel_refusals_are_typed_errors(ipvs_lab: IpvsLab, kernel: IpvsKernel) -> None:
    rs1 = ip_address(ipvs_lab.rips[0])
    await kernel.add_service(Service(WEB, "rr"))
    await kernel.add_destination(WEB, Destination(rs1, 80))
    other = ServiceKey.inet("tcp", VIP, 81)
    cases = [
        (kernel.add_service(Service(WEB, "rr")), errno.EEXIST,
         f"cannot add service tcp {VIP}:80 in namespace '{ipvs_lab.director.ns}': already exists"),
        (kernel.add_service(Service(other, "nosuch")), errno.ENOENT, "unknown scheduler"),
        (kernel.add_destination(WEB, Destination(rs1, 80)), errno.EEXIST,
         f"cannot add destination {rs1}:80 to tcp {VIP}:80"),
        (kernel.delete_destination(WEB, "10.62.1.77", 80), errno.ENOENT, "no such destination"),
        (kernel.set_service(Service(other, "rr")), errno.ESRCH, "no such service"),
        (kernel.add_destination(WEB, Destination(ip_address("10.62.1.78"), 80, weight=1,
                                                 upper_threshold=1, lower_threshold=2)),
         errno.ERANGE, "thresholds"),
        (kernel.stop_sync_daemon("master"), errno.ESRCH, "no sync daemon"),
        (kernel.start_sync_daemon(SyncDaemon("master", "nosuch0")), errno.ENODEV,
         "no such interface"),
    ]  # fmt: skip
    for coro, code, words in cases:
        with pytest.raises(IpvsError) as exc:
            await coro
        assert exc.value.errno == code and words in str(exc.value), str(exc.value)

    missing = f"{ipvs_lab.director.ns}-missing"
    with pytest.raises(IpvsError, match="no such netns"):
        await IpvsKernel(netns=missing).open()
    assert not Path("/run/netns", missing).exists(), "flags=0: no namespace was created"
