"""vigil and real keepalived 2.2.7 as one VRRP pair, in namespaces.

Node ``vg`` runs vigild, node ``ka`` runs keepalived, ``client`` probes the VIP; all three
hang off one bridge. Every case of the matrix below walks the same life of a pair:

1. start one side alone (it takes the VIP), then the other (start order alternates);
2. converge: exactly one VIP holder, vigil's API (state, master_address, priority) agrees
   with where the VIP is, and the pair stays put for a whole Master_Down_Interval (the
   backup never steps in, the master never hears a competing advert);
3. fail the master (crash = SIGKILL of its process group plus a cable pull, clean stop,
   or link down): the other side takes the VIP, and the client's neighbour entry for the
   VIP moves to the new holder's MAC (its GARP/NA was heard) while probes get answers;
4. bring the failed side back: the higher priority side preempts, one holder again.

keepalived has no API, so it is observed through the kernel (``ip -n ka addr``) and its
log; vigil through its API. Counters prove keepalived's adverts were accepted: vigil's
``counters.rejected`` stays empty in every normal case, and keepalived's log holds none of
its complaints about a received advert.

Edge cases follow the matrix: different PASS passwords (both become master, vigil counts
``auth``), a partition healing at equal priority (the higher address keeps the VIP on both
implementations), VRRPv3 interval learning both ways, a VRRPv2 interval mismatch, and a
VIP-list mismatch (vigil counts it and follows the master; keepalived ignores the advert).

Waits are on observed conditions with deadlines sized from the advert interval; nothing
here sleeps, and the lab fixture removes every namespace and process.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.keepalived_confs import KeepalivedConf, VrrpSide, vigil_config
from tests.lab.agents import AgentHandle
from tests.lab.lab import Lab, Node
from tests.lab.peers import PeerHandle
from tests.lab.probe import Probe, ProbeResult
from tests.lab.waiting import wait_for

VG_ADDRS = ["10.99.0.11/24", "fd00:99::11/64"]
KA_ADDRS = ["10.99.0.12/24", "fd00:99::12/64"]
CLIENT_ADDRS = ["10.99.0.20/24", "fd00:99::20/64"]
VIP4 = "10.99.0.100/24"
VIP6 = "fd00:99::100/64"
INSTANCE = "VI_1"
VRID = 51
HIGH, LOW = 150, 100
PASSWORD = "vrrp-pw1"  # 8 characters: the most VRRPv2 PASS auth carries
# keepalived 2.2.7's complaints about a received advert (vrrp_check_packet and friends).
# None may appear in a normal case: each means keepalived rejected or doubted our packet.
KEEPALIVED_RX_COMPLAINTS = (
    "invalid TTL/HL",
    "wrong version",
    "auth, expecting",
    "received an invalid passwd",
    "advertisement interval mismatch",
    "Invalid packet type",
    "unexpected ip number count",
    "ip_tot_len mismatch",
    "icast packet but received",
    "VIPs but received",
    "not present in MASTER advert",
    "not in range",
    "Invalid VRRPv2 checksum",
    "Invalid VRRPv3 checksum",
    "checksum to old version",
    "Invalid auth type",
    "advertisement interval updated",
    "equal priority advert received from remote host with our IP",
)


class Side(enum.Enum):
    VIGIL = "vigil"
    KEEPALIVED = "keepalived"

    @property
    def other(self) -> Side:
        return Side.KEEPALIVED if self is Side.VIGIL else Side.VIGIL


class Failure(enum.Enum):
    CRASH = "crash"  # SIGKILL of the whole process group, then the cable is pulled
    STOP = "stop"  # clean shutdown: priority 0, VIP released
    LINK_DOWN = "link_down"  # administrative down of eth0 inside the node


@dataclass(frozen=True)
class Mode:
    """How the pair speaks VRRP: version, interval, family, auth, unicast."""

    id: str
    version: int
    advert_int: float
    family: int = 4
    auth: bool = False
    unicast: bool = False

    @property
    def vip(self) -> str:
        return VIP4 if self.family == 4 else VIP6

    @property
    def vip_ip(self) -> str:
        return self.vip.split("/")[0]

    @property
    def master_down(self) -> float:
        """The longest Master_Down_Interval of the pair (skew at the lower priority)."""
        return 3 * self.advert_int + (256 - LOW) / 256 * self.advert_int

    @property
    def deadline(self) -> float:
        """Upper bound for one election step: a few Master_Down intervals plus start-up."""
        return 4 * self.master_down + 6.0


V2_MC = Mode("v2-multicast-1s", 2, 1)
V2_AUTH = Mode("v2-pass-auth-1s", 2, 1, auth=True)
V3_V4 = Mode("v3-ipv4-multicast-0.1s", 3, 0.1)
V3_V6 = Mode("v3-ipv6-multicast-0.1s", 3, 0.1, family=6)
V2_UNI = Mode("v2-unicast-1s", 2, 1, unicast=True)
V3_UNI = Mode("v3-ipv4-unicast-0.1s", 3, 0.1, unicast=True)
V3_V6_UNI = Mode("v3-ipv6-unicast-0.1s", 3, 0.1, family=6, unicast=True)


@dataclass(frozen=True)
class Case:
    mode: Mode
    master: Side
    first: Side
    failure: Failure

    @property
    def id(self) -> str:
        roles = f"master_{self.master.value}-first_{self.first.value}"
        return f"{self.mode.id}-{roles}-{self.failure.value}"


_V, _K = Side.VIGIL, Side.KEEPALIVED
# Every mode with each side as master; start order alternates; each failure kind hits
# each side's master at least twice (crash, stop and link down, both ways). No link down
# for IPv6: an admin down flushes the node's static IPv6 addresses (keep_addr_on_down is
# 0) and nothing in the lab puts them back, unlike an OS network manager would.
CASES = [
    Case(V2_MC, _V, _V, Failure.CRASH),
    Case(V2_MC, _K, _V, Failure.STOP),
    Case(V2_AUTH, _V, _K, Failure.STOP),
    Case(V2_AUTH, _K, _K, Failure.LINK_DOWN),
    Case(V3_V4, _V, _V, Failure.LINK_DOWN),
    Case(V3_V4, _K, _V, Failure.CRASH),
    Case(V3_V6, _V, _K, Failure.CRASH),
    Case(V3_V6, _K, _K, Failure.STOP),
    Case(V2_UNI, _V, _V, Failure.STOP),
    Case(V2_UNI, _K, _V, Failure.LINK_DOWN),
    Case(V3_UNI, _V, _K, Failure.LINK_DOWN),
    Case(V3_UNI, _K, _K, Failure.CRASH),
    Case(V3_V6_UNI, _V, _V, Failure.CRASH),
    Case(V3_V6_UNI, _K, _V, Failure.STOP),
]


def test_matrix_covers_every_combination() -> None:
    """Guard for the matrix itself: each mode with each side as master, both start orders
    for each master, and every failure kind hitting each side's master."""
    assert {(c.mode, c.master) for c in CASES} == {
        (m, s) for m in {c.mode for c in CASES} for s in Side
    }
    assert {(c.master, c.first) for c in CASES} == {(m, f) for m in Side for f in Side}
    assert {(c.master, c.failure) for c in CASES} == {(s, f) for s in Side for f in Failure}
    assert len({c.mode.id for c in CASES}) == 7


# ---------------------------------------------------------------------- the pair


@dataclass
class InteropPair:
    """vigild in ``vg`` and keepalived in ``ka`` configured as one VRRP instance.

    By default the case's master has priority 150, the other 100, and both use the mode's
    interval and the addresses ``.11`` (vigil) / ``.12`` (keepalived); the edge tests
    override these per side.
    """

    lab: Lab
    case: Case
    priorities: dict[Side, int] = field(default_factory=dict)
    intervals: dict[Side, float] = field(default_factory=dict)
    addrs: dict[Side, list[str]] = field(
        default_factory=lambda: {Side.VIGIL: VG_ADDRS, Side.KEEPALIVED: KA_ADDRS}
    )
    extra_vips: dict[Side, list[str]] = field(default_factory=dict)
    lead_vips: list[str] = field(default_factory=list)  # before the mode's VIP (both sides)
    use_vmac: bool = False
    vg: Node = field(init=False)
    ka: Node = field(init=False)
    client: Node = field(init=False)
    agent: AgentHandle | None = field(default=None, init=False)
    keepalived: PeerHandle | None = field(default=None, init=False)
    keepalived_runs: list[PeerHandle] = field(default_factory=list, init=False)
    pulled: set[Side] = field(default_factory=set, init=False)
    _starts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        lab = self.lab
        self.vg = lab.add_namespace("vg")
        self.ka = lab.add_namespace("ka")
        self.client = lab.add_namespace("client")
        lab.connect(self.vg, addrs=self.addrs[Side.VIGIL])
        lab.connect(self.ka, addrs=self.addrs[Side.KEEPALIVED])
        lab.connect(self.client, addrs=CLIENT_ADDRS)

    # -------------------------------------------------------------- configuration

    @property
    def mode(self) -> Mode:
        return self.case.mode

    def priority(self, side: Side) -> int:
        return self.priorities.get(side, HIGH if side is self.case.master else LOW)

    def address(self, side: Side) -> str:
        """``side``'s own address in the mode's family (its unicast source and peer)."""
        index = 0 if self.mode.family == 4 else 1
        return self.addrs[side][index].split("/")[0]

    def node(self, side: Side) -> Node:
        return self.vg if side is Side.VIGIL else self.ka

    def config(self, side: Side, password: str | None = None) -> VrrpSide:
        """The instance as ``side`` is configured; both sides differ only in priority."""
        mode = self.mode
        unicast_src = unicast_peers = None
        if mode.unicast:
            unicast_src = self.address(side)
            unicast_peers = [self.address(side.other)]
        return VrrpSide(
            name=INSTANCE,
            vrid=VRID,
            priority=self.priority(side),
            version=mode.version,
            advert_int=self.intervals.get(side, mode.advert_int),
            vips=[*self.lead_vips, mode.vip, *self.extra_vips.get(side, [])],
            auth_pass=(password or PASSWORD) if mode.auth else None,
            unicast_src=unicast_src,
            unicast_peers=unicast_peers or (),
            master=side is self.case.master,
            use_vmac=self.use_vmac,
        )

    def source(self, side: Side) -> str:
        """The address ``side`` sends its adverts from (what vigil reports as master)."""
        if self.mode.family == 6 and not self.mode.unicast:
            return link_local(self.lab, self.node(side), exclude=self.lead_vips)
        return self.address(side)

    # -------------------------------------------------------------- life cycle

    def start(self, side: Side, *, password: str | None = None) -> None:
        self._starts += 1
        if side is Side.VIGIL:
            cfg = vigil_config("vg", [self.config(side, password)])
            # Always the same name: a restart after a crash finds its journal.
            self.agent = self.lab.start_vigild(self.vg, cfg, log_level="info")
        else:
            conf = KeepalivedConf("ka", [self.config(side, password)]).render()
            self.keepalived = self.lab.start_keepalived(
                self.ka, conf, name=f"keepalived{self._starts}"
            )
            self.keepalived_runs.append(self.keepalived)

    def fail(self, side: Side, failure: Failure) -> None:
        lab, node, vip = self.lab, self.node(side), self.mode.vip_ip
        if failure is Failure.CRASH:
            if side is Side.VIGIL:
                assert self.agent is not None
                lab.kill_group(self.agent)
            else:
                assert self.keepalived is not None
                self.keepalived.kill()
                assert not self.keepalived.alive()
            assert lab.has_address(node, vip), f"a crashed {side.value} must leave its VIP"
            lab.cable_pull(node)
            self.pulled.add(side)
        elif failure is Failure.STOP:
            if side is Side.VIGIL:
                assert self.agent is not None
                assert self.agent.stop() == 0
            else:
                assert self.keepalived is not None
                self.keepalived.stop()
            assert not lab.has_address(node, vip), f"a clean stop of {side.value} keeps the VIP"
        else:
            lab.link_down(node)
            lab.wait_address(node, vip, present=False, timeout=self.mode.deadline)
            if side is Side.VIGIL:
                self.wait_vigil(lambda i: i["state"] == "FAULT", "vigil in FAULT")
                assert "eth0" in (self.vigil()["fault_reason"] or "")

    def restore(self, side: Side, failure: Failure) -> None:
        """Bring the failed side back the way an operator would after that failure."""
        lab, node = self.lab, self.node(side)
        if failure is Failure.CRASH:
            # The node comes back: its daemon starts (and removes the stale VIP) before its
            # link returns, so the segment never sees two holders.
            self.start(side)
            lab.wait_address(node, self.mode.vip_ip, present=False, timeout=10)
            if side is Side.VIGIL:
                events = self.vigil_events()
                assert any(e["kind"] == "vip_cleanup" for e in events), events
                self.wait_vigil(lambda i: i["state"] == "FAULT", "vigil in FAULT (no carrier)")
            lab.cable_plug(node)
            self.pulled.discard(side)
        elif failure is Failure.STOP:
            self.start(side)
        else:
            lab.link_up(node)

    def isolate(self, side: Side, isolated: bool = True) -> None:
        """Disable (or re-enable) ``side``'s bridge port: a partition with carrier up."""
        link = self.lab.link(self.node(side))
        state = "0" if isolated else "3"  # disabled / forwarding (the bridge runs no STP)
        self.lab.run(link.switch, ["bridge", "link", "set", "dev", link.port, "state", state])

    # -------------------------------------------------------------- observations

    def vigil(self) -> dict[str, Any]:
        assert self.agent is not None
        status, body = self.agent.client.get(f"/v1/vrrp/instances/{INSTANCE}")
        assert status == 200, body
        return dict(body)

    def vigil_events(self) -> list[dict[str, Any]]:
        assert self.agent is not None
        status, body = self.agent.client.get("/v1/events?since=0")
        assert status == 200, body
        return list(body)

    def wait_vigil(self, predicate: Any, what: str, timeout: float | None = None) -> None:
        """Wait until ``predicate(vigil's instance)`` holds; a timeout shows the instance."""
        wait_for(
            lambda: predicate(self.vigil()),
            timeout=timeout or self.mode.deadline,
            what=what,
            observe=self.vigil,
        )

    def holders(self) -> list[Side]:
        """Sides on the segment (cable in) that hold the VIP."""
        vip = self.mode.vip_ip
        return [s for s in Side if s not in self.pulled and self.lab.has_address(self.node(s), vip)]

    def wait_holder(self, side: Side) -> None:
        """Wait until ``side`` is the one and only VIP holder on the segment."""
        wait_for(
            lambda: self.holders() == [side],
            timeout=self.mode.deadline,
            what=f"{side.value} to be the only VIP holder",
            observe=lambda: [s.value for s in self.holders()],
        )

    def keepalived_log(self) -> str:
        assert self.keepalived is not None
        return self.keepalived.log(tail=None)

    def keepalived_complaints(self) -> list[str]:
        """Lines in which any keepalived run of this test rejected a received advert."""
        return [
            line
            for run in self.keepalived_runs
            for line in run.log(tail=None).splitlines()
            if any(marker in line for marker in KEEPALIVED_RX_COMPLAINTS)
        ]

    def assert_converged(self, master: Side) -> None:
        """One holder, and vigil's API agrees with the kernel about who it is."""
        assert self.holders() == [master]
        inst = self.vigil()
        if master is Side.VIGIL:
            assert inst["state"] == "MASTER", inst
            assert inst["vips"][0]["present"] is True, inst
        else:
            assert inst["state"] == "BACKUP", inst
            assert inst["vips"][0]["present"] is False, inst
            assert inst["master_priority"] == self.priority(Side.KEEPALIVED), inst
        assert inst["master_address"] == self.source(master), inst
        assert inst["counters"]["rejected"] == {}, inst["counters"]

    def assert_stable(self, master: Side) -> None:
        """Nothing moves for longer than a Master_Down_Interval.

        Counted in the master's adverts (6 cover 3 intervals plus skew, with room for
        a backup that finished starting a little after its pid file appeared): the backup
        never advertises (vigil as master receives nothing), and vigil as backup keeps
        hearing keepalived without a transition of its own.
        """
        before = self.vigil()["counters"]
        grow = "adverts_sent" if master is Side.VIGIL else "adverts_received"
        self.wait_vigil(
            lambda i: i["counters"][grow] >= before[grow] + 6,
            f"6 more {grow} in vigil (the pair steady for a Master_Down_Interval)",
        )
        after = self.vigil()["counters"]
        if master is Side.VIGIL:
            assert after["adverts_received"] == before["adverts_received"], (before, after)
        else:
            assert after["adverts_sent"] == before["adverts_sent"], (before, after)
        assert after["became_master"] == before["became_master"], (before, after)
        self.assert_converged(master)

    def client_neighbour_mac(self, address: str | None = None) -> str | None:
        target = address or self.mode.vip_ip
        for entry in self.lab.ip_json(self.client, "neigh", "show", target, "dev", "eth0"):
            if "lladdr" in entry:
                return str(entry["lladdr"])
        return None

    def wait_client_sees(self, side: Side) -> None:
        """The client's neighbour entry for the VIP points at ``side``'s MAC."""
        mac = self.lab.link_info(self.node(side))["address"]
        self.lab.wait_for(
            lambda: self.client_neighbour_mac() == mac,
            timeout=self.mode.deadline,
            what=f"the client to resolve the VIP to {side.value}'s MAC {mac}",
        )


def link_local(lab: Lab, node: Node, exclude: Sequence[str] = ()) -> str:
    """The node's own link-local address on eth0 (not one of the ``exclude``d VIPs)."""
    skip = {ipaddress.ip_interface(a).ip for a in exclude}
    for link in lab.ip_json(node, "-6", "addr", "show", "dev", "eth0", "scope", "link"):
        for info in link.get("addr_info", []):
            # `ip -j` lists filtered-out addresses as empty objects
            if "local" in info and ipaddress.ip_address(info["local"]) not in skip:
                return str(ipaddress.ip_address(info["local"]))
    raise AssertionError(f"{node} has no IPv6 link-local address on eth0")


def run_probe_step(probe: Probe, count: int = 5) -> None:
    probe.wait_received(count, timeout=10)


# ---------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_interop_pair(lab: Lab, case: Case, record_property: Any) -> None:
    """One life of a vigil/keepalived pair: start, converge, fail the master, preempt back.

    The probe's loss and longest outage are recorded as properties (JUnit XML) for the
    record, not asserted: timings belong to the benchmarks.
    """
    pair = InteropPair(lab, case)
    master, backup = case.master, case.master.other
    first, second = case.first, case.first.other

    # 1. The first side alone takes the VIP.
    pair.start(first)
    pair.wait_holder(first)
    if first is Side.VIGIL:
        assert pair.vigil()["state"] == "MASTER"
    else:
        assert "Entering MASTER STATE" in pair.keepalived_log()

    # 2. The second side joins: it preempts if it is the master, else it stays backup.
    pair.start(second)
    pair.wait_holder(master)
    if second is master:
        pair.wait_vigil(
            lambda i: i["state"] == ("MASTER" if master is Side.VIGIL else "BACKUP"),
            "vigil's state after the preemption",
        )
        reason = pair.vigil()["last_transition"]["reason"]
        if master is Side.VIGIL:
            assert reason.startswith("preempted lower-priority master"), reason
        else:
            assert reason.startswith(f"higher priority advert from {pair.source(master)}"), reason
    else:
        pair.wait_vigil(
            lambda i: i["master_address"] == pair.source(master),
            "vigil to know the master",
        )
    pair.assert_stable(master)

    # 3. The master fails; the backup takes over and the client follows.
    probe = Probe(lab, pair.client, case.mode.vip_ip).start()
    run_probe_step(probe)
    zero_before = pair.vigil()["counters"]["priority_zero_received"]
    ka_masters_before = pair.keepalived_log().count("Entering MASTER STATE")
    pair.fail(master, case.failure)
    pair.wait_holder(backup)
    pair.wait_client_sees(backup)
    run_probe_step(probe)
    if backup is Side.VIGIL:
        inst = pair.vigil()
        assert inst["state"] == "MASTER", inst
        reason = inst["last_transition"]["reason"]
        if case.failure is Failure.STOP:
            assert inst["counters"]["priority_zero_received"] > zero_before, inst["counters"]
            assert "priority 0" in reason, reason
        else:
            assert reason.startswith("master down timer expired"), reason
        assert inst["counters"]["rejected"] == {}, inst["counters"]
    else:
        log = pair.keepalived_log()
        assert log.count("Entering MASTER STATE") > ka_masters_before
        if case.failure is Failure.STOP:
            assert "Backup received priority 0 advertisement" in log, "vigil's priority 0"

    # 4. The failed master returns and preempts back.
    pair.restore(master, case.failure)
    pair.wait_holder(master)
    pair.wait_vigil(
        lambda i: (
            i["state"] == ("MASTER" if master is Side.VIGIL else "BACKUP")
            and i["master_address"] == pair.source(master)
        ),
        "vigil's view after the preemption back",
    )
    pair.wait_client_sees(master)
    run_probe_step(probe)
    result: ProbeResult = probe.stop()
    record_property("probe_lost", result.lost)
    record_property("longest_outage_ms", result.longest_outage_ms)
    assert result.received >= 15, result
    pair.assert_converged(master)
    assert pair.keepalived_complaints() == []


# ---------------------------------------------------------------------- mismatch


def test_pass_mismatch_makes_both_master_and_vigil_counts_auth(lab: Lab) -> None:
    """Different PASS passwords: each side drops the other's adverts, as LAB-NOTES says."""
    case = Case(V2_AUTH, Side.VIGIL, Side.VIGIL, Failure.STOP)
    pair = InteropPair(lab, case)
    pair.start(Side.VIGIL, password="vigil-pw")
    pair.start(Side.KEEPALIVED, password="ka-pw")
    lab.wait_address(pair.vg, V2_AUTH.vip_ip, timeout=V2_AUTH.deadline)
    lab.wait_address(pair.ka, V2_AUTH.vip_ip, timeout=V2_AUTH.deadline)
    pair.wait_vigil(
        # >= 1, not one per second: keepalived as master restarts its advert timer on
        # every advert it receives, even one it rejects, so with vigil advertising at the
        # same interval it sends only when its timer wins the race (seen with tcpdump).
        lambda i: i["counters"]["rejected"].get("auth", 0) >= 1,
        "vigil to count keepalived's adverts as rejected (auth)",
    )
    inst = pair.vigil()
    assert inst["state"] == "MASTER", inst
    assert set(inst["counters"]["rejected"]) == {"auth"}, inst["counters"]
    assert inst["counters"]["adverts_received"] == 0, inst["counters"]
    assert "Entering MASTER STATE" in pair.keepalived_log()
    assert pair.holders() == [Side.VIGIL, Side.KEEPALIVED]
    lab.wait_for(
        lambda: "received an invalid passwd" in pair.keepalived_log(),
        timeout=V2_AUTH.deadline,
        what="keepalived to reject vigil's adverts (invalid passwd)",
    )


# ---------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("winner", list(Side), ids=[f"{s.value}_higher" for s in Side])
def test_partition_heals_to_the_higher_address_at_equal_priority(lab: Lab, winner: Side) -> None:
    """Both routers master behind a partition; on healing the lower address yields.

    Equal priorities never preempt a live master, so a tie is only broken when two
    masters meet (RFC 5798 6.4.3): both implementations must keep the higher address.
    """
    case = Case(V3_V4, winner, Side.VIGIL, Failure.STOP)
    high, low = ["10.99.0.12/24"], ["10.99.0.11/24"]
    addrs = {winner: high, winner.other: low}
    pair = InteropPair(lab, case, priorities={s: LOW for s in Side}, addrs=addrs)
    pair.isolate(Side.KEEPALIVED)
    pair.start(Side.VIGIL)
    pair.start(Side.KEEPALIVED)
    lab.wait_for(
        lambda: pair.holders() == [Side.VIGIL, Side.KEEPALIVED],
        timeout=V3_V4.deadline,
        what="both sides master while partitioned",
    )
    assert pair.vigil()["state"] == "MASTER"
    pair.isolate(Side.KEEPALIVED, isolated=False)
    pair.wait_holder(winner)
    if winner is Side.KEEPALIVED:
        pair.wait_vigil(lambda i: i["state"] == "BACKUP", "vigil to yield")
        reason = pair.vigil()["last_transition"]["reason"]
        assert reason == f"equal priority {LOW} from higher address {pair.address(winner)}"
    else:
        lab.wait_for(
            lambda: "same priority 100 but higher IP address than ours" in pair.keepalived_log(),
            timeout=V3_V4.deadline,
            what="keepalived to yield to vigil's higher address",
        )
    pair.assert_stable(winner)
    assert pair.keepalived_complaints() == []


@pytest.mark.parametrize("master", list(Side), ids=[f"{s.value}_master" for s in Side])
def test_v3_backup_adopts_the_masters_interval(lab: Lab, master: Side) -> None:
    """VRRPv3: the backup times the master out by the master's interval (RFC 5798 6.4.2).

    The master advertises every 0.2 s while the backup is configured with 1 s; neither
    side may reject the other's adverts over it.
    """
    case = Case(V3_V4, master, master, Failure.STOP)
    pair = InteropPair(lab, case, intervals={master: 0.2, master.other: 1.0})
    pair.start(master)
    pair.wait_holder(master)
    pair.start(master.other)
    if master is Side.KEEPALIVED:
        pair.wait_vigil(lambda i: i["learned_interval"] == 0.2, "vigil to learn 0.2 s")
        inst = pair.vigil()
        assert inst["advert_interval"] == 1.0
        assert inst["master_down_interval"] == pytest.approx(3 * 0.2 + (256 - LOW) / 256 * 0.2)
        events = pair.vigil_events()
        assert any(e["kind"] == "vrrp_interval_learned" for e in events), events
    else:
        lab.wait_for(
            lambda: "advertisement interval updated from 1000ms to 200ms" in pair.keepalived_log(),
            timeout=V3_V4.deadline,
            what="keepalived to adopt vigil's 0.2 s interval",
        )
    pair.assert_stable(master)


def test_v2_interval_mismatch_is_rejected_by_both(lab: Lab) -> None:
    """VRRPv2 has no interval learning: 1 s against 2 s is a misconfiguration both reject."""
    case = Case(V2_MC, Side.VIGIL, Side.VIGIL, Failure.STOP)
    pair = InteropPair(lab, case, intervals={Side.VIGIL: 1, Side.KEEPALIVED: 2})
    pair.start(Side.VIGIL)
    pair.start(Side.KEEPALIVED)  # at once: each ignores the other, no order to test
    lab.wait_address(pair.vg, V2_MC.vip_ip, timeout=V2_MC.deadline)
    lab.wait_address(pair.ka, V2_MC.vip_ip, timeout=V2_MC.deadline)
    pair.wait_vigil(
        lambda i: i["counters"]["rejected"].get("interval", 0) >= 1,
        "vigil to count keepalived's 2 s adverts as rejected (interval)",
    )
    assert "advertisement interval mismatch" in pair.keepalived_log()
    assert pair.holders() == [Side.VIGIL, Side.KEEPALIVED]


@pytest.mark.parametrize("master", list(Side), ids=[f"{s.value}_master" for s in Side])
def test_vip_list_mismatch(lab: Lab, master: Side) -> None:
    """The master advertises one VIP more than the backup has configured.

    vigil counts the mismatch (``addresses``) but still follows the master, so a VIP typo
    stays one master; keepalived 2.2.7 ignores such adverts and becomes master as well
    (see vigil.vrrp.packet). Both behaviours are pinned here.
    """
    case = Case(V3_V4, master, master, Failure.STOP)
    pair = InteropPair(lab, case, extra_vips={master: ["10.99.0.101/24"]})
    pair.start(master)
    pair.wait_holder(master)
    pair.start(master.other)
    if master is Side.KEEPALIVED:
        pair.wait_vigil(
            lambda i: i["counters"]["rejected"].get("addresses", 0) >= 3,
            "vigil to count the address-list mismatch",
        )
        inst = pair.vigil()
        assert inst["state"] == "BACKUP" and inst["master_address"] == pair.source(master)
        assert pair.holders() == [master]
        assert lab.has_address(pair.ka, "10.99.0.101")
    else:
        lab.wait_address(pair.ka, V3_V4.vip_ip, timeout=V3_V4.deadline)
        assert pair.holders() == [Side.VIGIL, Side.KEEPALIVED]
        lab.wait_for(
            lambda: "received an unexpected ip number count 2, expected 1" in pair.keepalived_log(),
            timeout=V3_V4.deadline,
            what="keepalived to reject vigil's two-address adverts",
        )


@pytest.mark.parametrize("mode", [V3_V4, V3_V6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("master", list(Side), ids=[f"{s.value}_master" for s in Side])
def test_use_vmac_keeps_the_virtual_mac_across_failover(lab: Lab, master: Side, mode: Mode) -> None:
    """Both sides with ``use_vmac``: the VIP lives on ``vrrp.51`` with the virtual MAC.

    00:00:5e:00:01:33 for IPv4, 00:00:5e:00:02:33 for IPv6. The client's neighbour entry
    must never need to change: whoever is master answers from the same virtual MAC, so a
    failover is only the bridge relearning a port.
    """
    vmac = f"00:00:5e:00:0{1 if mode.family == 4 else 2}:{VRID:02x}"
    vmac_if = f"vrrp.{VRID}"
    case = Case(mode, master, master, Failure.STOP)
    pair = InteropPair(lab, case, use_vmac=True)
    # keepalived sets arp_ignore/arp_filter on the parent but leaves arp_announce to the
    # operator: without 2 there, the master's own ARP requests (sent from eth0 with the
    # VIP as sender) repoint the client's entry for the VIP to eth0's MAC. vigil sets it
    # itself (vigil.net.vmac); on the keepalived node the operator does, as here.
    lab.sysctl(pair.ka, **{"net.ipv4.conf.eth0.arp_announce": 2})
    pair.start(master)
    pair.wait_holder(master)
    pair.start(master.other)
    pair.assert_stable(master)
    for side in Side:
        assert pair.lab.link_info(pair.node(side), vmac_if)["address"] == vmac
    assert lab.has_address(pair.node(master), mode.vip, ifname=vmac_if)
    assert pair.vigil()["vips"][0]["dev"] == vmac_if

    probe = Probe(lab, pair.client, mode.vip_ip).start()
    run_probe_step(probe)
    assert pair.client_neighbour_mac() == vmac
    pair.fail(master, Failure.STOP)
    pair.wait_holder(master.other)
    run_probe_step(probe)
    assert lab.has_address(pair.node(master.other), mode.vip, ifname=vmac_if)
    assert pair.client_neighbour_mac() == vmac
    pair.restore(master, Failure.STOP)
    pair.wait_holder(master)
    pair.wait_vigil(
        lambda i: i["master_address"] == pair.source(master), "vigil's view after preemption"
    )
    run_probe_step(probe)
    assert probe.stop().received >= 15
    assert pair.client_neighbour_mac() == vmac
    pair.assert_converged(master)
    assert pair.keepalived_complaints() == []


@pytest.mark.parametrize("master", list(Side), ids=[f"{s.value}_master" for s in Side])
def test_dual_stack_instances_share_a_vrid(lab: Lab, master: Side) -> None:
    """IPv4 and IPv6 instances with the same VRID 51 in one daemon on each side.

    A VRID is unique per address family only, and operators reuse it for the two halves
    of a dual-stack VIP pair; each family's adverts must reach the right instance.
    """
    pair = InteropPair(lab, Case(V3_V4, master, master, Failure.STOP))

    def instances(side: Side) -> list[VrrpSide]:
        prio = pair.priority(side)
        is_master = side is master
        return [
            VrrpSide("VI_4", VRID, prio, 3, 0.1, [VIP4], master=is_master),
            VrrpSide("VI_6", VRID, prio, 3, 0.1, [VIP6], master=is_master),
        ]

    def start(side: Side) -> None:
        if side is Side.VIGIL:
            cfg = vigil_config("vg", instances(side))
            pair.agent = lab.start_vigild(pair.vg, cfg, log_level="info")
        else:
            conf = KeepalivedConf("ka", instances(side)).render()
            pair.keepalived = lab.start_keepalived(pair.ka, conf, name="keepalived")
            pair.keepalived_runs.append(pair.keepalived)

    def view(name: str) -> dict[str, Any]:
        assert pair.agent is not None
        status, body = pair.agent.client.get(f"/v1/vrrp/instances/{name}")
        assert status == 200, body
        return dict(body)

    vips = [VIP4.split("/")[0], VIP6.split("/")[0]]

    def wait_vips_on(side: Side) -> None:
        wait_for(
            lambda: (
                all(lab.has_address(pair.node(side), v) for v in vips)
                and not any(lab.has_address(pair.node(side.other), v) for v in vips)
            ),
            timeout=V3_V4.deadline,
            what=f"both VIPs on {side.value} only",
            observe=lambda: {s.value: lab.addresses(pair.node(s), "eth0") for s in Side},
        )

    start(master)
    start(master.other)
    wait_vips_on(master)
    sources = {"VI_4": pair.address(master), "VI_6": link_local(lab, pair.node(master))}
    want = "MASTER" if master is Side.VIGIL else "BACKUP"

    def agrees(name: str, source: str) -> bool:
        inst = view(name)
        return bool(inst["state"] == want and inst["master_address"] == source)

    for name, source in sources.items():
        wait_for(
            functools.partial(agrees, name, source),
            timeout=V3_V4.deadline,
            what=f"vigil's {name} {want} with master {source}",
            observe=functools.partial(view, name),
        )
    assert pair.agent is not None
    status, body = pair.agent.client.get("/v1/status")
    assert status == 200 and body.get("unknown_vrid", {}) == {}, body

    # The master stops cleanly: both families move together, and come back.
    pair.fail(master, Failure.STOP)
    wait_vips_on(master.other)
    start(master)
    wait_vips_on(master)
    for name in sources:
        assert view(name)["counters"]["rejected"] == {}, view(name)
    assert pair.keepalived_complaints() == []


@pytest.mark.parametrize("owner", list(Side), ids=[f"{s.value}_owner" for s in Side])
def test_address_owner_takes_over_at_once(lab: Lab, owner: Side) -> None:
    """Priority 255 (the address owner) is master from its first advert, on either side.

    The other side (priority 100) holds the VIP first; the owner starts and takes over
    without waiting for a Master_Down_Interval, and the other side yields to 255.
    """
    case = Case(V3_V4, owner, owner.other, Failure.STOP)
    pair = InteropPair(lab, case, priorities={owner: 255, owner.other: LOW})
    pair.start(owner.other)
    pair.wait_holder(owner.other)
    pair.start(owner)
    pair.wait_holder(owner)
    if owner is Side.VIGIL:
        inst = pair.vigil()
        assert inst["state"] == "MASTER" and inst["effective_priority"] == 255, inst
        assert inst["last_transition"]["reason"] == "address owner (priority 255)", inst
    else:
        log = pair.keepalived_log()
        # keepalived's owner skips BACKUP (no "Entering BACKUP STATE (init)") and goes
        # to MASTER at start-up.
        assert "Entering BACKUP STATE" not in log and "Entering MASTER STATE" in log
        pair.wait_vigil(
            lambda i: i["state"] == "BACKUP" and i["master_priority"] == 255,
            "vigil to yield to priority 255",
        )
    pair.assert_stable(owner)
    assert pair.keepalived_complaints() == []


@pytest.mark.parametrize("master", list(Side), ids=[f"{s.value}_master" for s in Side])
def test_ipv6_link_local_vip_first(lab: Lab, master: Side) -> None:
    """IPv6 as RFC 5798 5.2.9 asks: the first address is a link-local VIP (fe80::1).

    vigil advertises from the interface's own link-local address, never from the VIP (the
    socket is told its VIPs: /proc/net/if_inet6's order would otherwise pick fe80::1 about
    every other run); keepalived stops warning "the first IPv6 VIP address should be link
    local", both address lists match (no ``addresses`` rejections), and a client that uses
    fe80::1 as its gateway reaches whichever side is master, before and after a failover.
    """
    gateway = "fe80::1"
    case = Case(V3_V6, master, master, Failure.STOP)
    pair = InteropPair(lab, case, lead_vips=[f"{gateway}/64"])
    pair.start(master)
    pair.wait_holder(master)
    pair.start(master.other)
    own = link_local(lab, pair.vg, exclude=[gateway])
    source = pair.vigil()["source_address"]
    assert source == own, f"vigil advertises from {source}, not its own link-local {own}"
    pair.assert_stable(master)
    assert lab.has_address(pair.node(master), gateway)
    assert not lab.has_address(pair.node(master.other), gateway)
    assert [v["address"] for v in pair.vigil()["vips"]] == [f"{gateway}/64", V3_V6.vip]

    def gateway_answers_from(side: Side) -> None:
        mac = lab.link_info(pair.node(side))["address"]

        def answered() -> bool:
            ping = ["ping", "-6", "-n", "-c", "1", "-W", "1", f"{gateway}%eth0"]
            ok = lab.run(pair.client, ping, check=False, timeout=5).returncode == 0
            return ok and pair.client_neighbour_mac(gateway) == mac

        wait_for(
            answered,
            timeout=V3_V6.deadline,
            what=f"{gateway} to answer the client from {side.value} ({mac})",
            observe=lambda: pair.client_neighbour_mac(gateway),
        )

    gateway_answers_from(master)
    assert pair.vigil()["counters"]["rejected"] == {}
    pair.fail(master, Failure.STOP)
    pair.wait_holder(master.other)
    assert lab.has_address(pair.node(master.other), gateway)
    gateway_answers_from(master.other)
    if master is Side.KEEPALIVED:
        assert pair.vigil()["counters"]["rejected"] == {}
    assert pair.keepalived_complaints() == []
    assert all("should be link local" not in r.log(tail=None) for r in pair.keepalived_runs)
