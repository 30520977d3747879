"""vigil with FRR 8.4.4 vrrpd: VRRPv3 over IPv4 and IPv6, 100 ms adverts, in namespaces.

Two nodes on one lab bridge: ``frr`` runs the real zebra + vrrpd from Debian's frr package
(with the macvlan vrrpd needs per VRID, VIP on it), ``vg`` runs vigild. Each test observes
both sides: FRR through ``vtysh -c 'show vrrp N json'`` and its macvlan's protodown flag,
vigil through its API and the kernel's addresses.

"Holds the VIP" means: for FRR, its router is Master and its macvlan is protodown off (a
Backup FRR keeps the VIP on a protodown macvlan, which answers nothing); for vigil, the
VIP is in the node's kernel. In steady state exactly one side holds it, checked on every
poll while the master sends at least ten adverts.

No rejected adverts on vigil's side while FRR is master proves the checksums agree: FRR
8.4.4 checksums VRRPv3/IPv4 with the IPv4 pseudo-header (always: it has no switch for it
yet), as vigil does by default. The checksum test turns vigil's pseudo-header off and
checks that every FRR advert is then counted as a checksum rejection.

FRR quirks these tests wait out rather than hide (see frr_confs.py): vrrpd reports its
source as ``::`` for a moment after becoming master, and a crashed vrrpd leaves its
macvlan as it was (protodown off, VIP on it).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.frr_confs import (
    FrrVrrpRouter,
    frr_vrrp_router,
    frr_vrrp_section,
    vigil_instance,
)
from tests.lab.agents import AgentHandle
from tests.lab.lab import Lab, Node
from tests.lab.peers import PeerHandle
from tests.lab.procs import ProcessHandle
from tests.lab.waiting import wait_for

pytestmark = pytest.mark.integration

VRID = 7
FRR_ADDRS = {4: "10.99.0.11", 6: "fd00:99::11"}
VG_ADDRS = {4: "10.99.0.12", 6: "fd00:99::12"}
VIPS = {4: "10.99.0.100/24", 6: "fd00:99::100/64"}
INST = "VI_FRR"
STEADY_ADVERTS = 10


@dataclass
class FrrVigilPair:
    """An FRR node and a vigil node sharing one VRRP virtual router of one family."""

    lab: Lab
    family: int
    frr_node: Node
    vg_node: Node
    frr: PeerHandle | None = None
    vg: AgentHandle | None = None
    macvlan: str = ""
    router: FrrVrrpRouter | None = None

    @property
    def vip(self) -> str:
        return VIPS[self.family]

    @property
    def vip_ip(self) -> str:
        return self.vip.split("/")[0]

    # ------------------------------------------------------------------ starting

    def start_frr(self, priority: int, **router_kw: Any) -> PeerHandle:
        self.router = FrrVrrpRouter(VRID, priority, [self.vip_ip], **router_kw)
        self.macvlan = self.lab.add_macvlan(
            self.frr_node, "eth0", VRID, family=self.family, addrs=[self.vip]
        )
        assert self.lab.link_info(self.frr_node, self.macvlan)["address"] == self.router.vmac
        if self.family == 6:
            # vrrpd sends IPv6 adverts from the macvlan's link-local address, which the
            # kernel adds only once the macvlan's carrier is up: have it before vrrpd starts.
            self.lab.wait_for(
                lambda: any(
                    a.startswith("fe80:") for a in self.lab.addresses(self.frr_node, self.macvlan)
                ),
                timeout=5,
                what=f"a link-local address on {self.macvlan}",
            )
        self.frr = self.lab.start_frr(
            self.frr_node, self.router.render(), daemons=("zebra", "vrrpd")
        )
        # vrrpd must have taken the config as written: the router runs with our values.
        wait_for(
            lambda: (
                frr_vrrp_section(self.frr_handle, VRID, self.family).get("status")
                in ("Backup", "Master")
            ),
            timeout=10,
            what=f"FRR vrrpd to start VRID {VRID} (IPv{self.family})",
            observe=lambda: self.frr_log(),
        )
        running = frr_vrrp_router(self.frr_handle, VRID)
        assert running["version"] == self.router.version, running
        assert running["interface"] == "eth0", running
        assert running["advertisementInterval"] == self.router.interval_ms, running
        section = running[f"v{self.family}"]
        assert section["interface"] == self.macvlan, section
        assert section["effectivePriority"] == priority, section
        vrrpd_log = self.vrrpd().log_text(tail=None)
        assert "No such command" not in vrrpd_log and "Unknown command" not in vrrpd_log, vrrpd_log
        return self.frr_handle

    def start_vigil(self, priority: int, **inst_kw: Any) -> AgentHandle:
        cfg = {
            "global": {"router_id": "vg"},
            "vrrp_instances": [vigil_instance(INST, VRID, priority, self.vip, **inst_kw)],
        }
        self.vg = self.lab.start_vigild(self.vg_node, cfg)
        return self.vg

    @property
    def frr_handle(self) -> PeerHandle:
        assert self.frr is not None, "FRR was not started"
        return self.frr

    @property
    def vg_handle(self) -> AgentHandle:
        assert self.vg is not None, "vigild was not started"
        return self.vg

    def vrrpd(self) -> ProcessHandle:
        """vrrpd's process (start_frr names each daemon's process ``frr-<daemon>``)."""
        return next(p for p in self.frr_handle.processes if p.name.endswith("-vrrpd"))

    # ------------------------------------------------------------------ observing

    def frr_log(self) -> str:
        return self.frr_handle.log(tail=30) if self.frr is not None else "(FRR not started)"

    def frr_state(self) -> dict[str, Any]:
        return frr_vrrp_section(self.frr_handle, VRID, self.family)

    def frr_protodown(self) -> bool:
        return bool(self.lab.link_info(self.frr_node, self.macvlan).get("proto_down", False))

    def frr_holds(self) -> bool:
        return self.frr_state()["status"] == "Master" and not self.frr_protodown()

    def vigil(self) -> dict[str, Any]:
        status, body = self.vg_handle.client.get(f"/v1/vrrp/instances/{INST}")
        assert status == 200, body
        return dict(body)

    def vigil_holds(self) -> bool:
        return self.lab.has_address(self.vg_node, self.vip)

    def holders(self) -> list[str]:
        return [name for name, holds in (("frr", self.frr_holds()), ("vigil", self.vigil_holds()))
                if holds]  # fmt: skip

    def observe(self) -> dict[str, Any]:
        """Everything a failed wait should show: both sides' state and the VIP's place."""
        seen: dict[str, Any] = {}
        for key, fn in (
            ("frr", lambda: {k: v for k, v in self.frr_state().items() if k != "addresses"}),
            ("frr_protodown", self.frr_protodown),
            ("vigil", lambda: {k: self.vigil()[k] for k in ("state", "master_address",
                                                            "master_priority", "counters")}),
            ("vigil_has_vip", self.vigil_holds),
        ):  # fmt: skip
            try:
                seen[key] = fn()
            except Exception as exc:  # a dead side is an observation too
                seen[key] = repr(exc)
        return seen

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        wait_for(predicate, timeout=timeout, interval=0.05, what=what, observe=self.observe)

    def hold_steady(self, holder: str, adverts: int = STEADY_ADVERTS) -> None:
        """While the master sends ``adverts`` more adverts, every poll sees one holder.

        The wait ends on the master's own counter (FRR's adverTx or vigil's adverts_sent),
        so it lasts as long as the protocol takes, never a fixed time.
        """

        def sent() -> int:
            if holder == "frr":
                return int(self.frr_state()["stats"]["adverTx"])
            return int(self.vigil()["counters"]["adverts_sent"])

        start = sent()
        violations: list[list[str]] = []

        def done() -> bool:
            now = self.holders()
            if now != [holder]:
                violations.append(now)
                return True
            return sent() >= start + adverts

        self.wait(done, f"{holder} to send {adverts} adverts as the only holder", timeout=15)
        assert not violations, (
            f"expected only {holder} to hold {self.vip}, saw holders {violations[0]}; "
            f"state: {self.observe()}"
        )


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def pair(lab: Lab, request: pytest.FixtureRequest) -> FrrVigilPair:
    family = int(request.param)
    frr_node = lab.add_namespace("frr")
    vg_node = lab.add_namespace("vg")
    plen = 24 if family == 4 else 64
    lab.connect(frr_node, addrs=[f"{FRR_ADDRS[family]}/{plen}"])
    lab.connect(vg_node, addrs=[f"{VG_ADDRS[family]}/{plen}"])
    return FrrVigilPair(lab, family, frr_node, vg_node)


def frr_source(pair: FrrVigilPair) -> str:
    """The address FRR sends its adverts from, as it reports it while master.

    Right after Backup -> Master, vrrpd may report ``::``: it lifts the macvlan's
    protodown and picks its source when it first sends, and zebra re-announces the
    macvlan's addresses only after the link is up again (vrrpd logs "Failed to find
    address to bind" and skips that one advert). So wait until it has one.
    """
    want = "10.99.0.11" if pair.family == 4 else "fe80:"
    seen: list[str] = []

    def source() -> str | None:
        addr = str(pair.frr_state()["primaryAddress"])
        seen.append(addr)
        return addr if addr.startswith(want) else None

    addr = wait_for(source, timeout=5, interval=0.05, what=f"FRR to send from {want}...",
                    observe=lambda: seen[-3:])  # fmt: skip
    assert addr is not None
    return addr


def assert_no_rejections(pair: FrrVigilPair) -> None:
    counters = pair.vigil()["counters"]
    assert counters["rejected"] == {}, (
        f"vigil rejected FRR's adverts: {counters['rejected']}; vigil log:\n"
        f"{pair.vg_handle.log(tail=30)}"
    )


# ---------------------------------------------------------------------- FRR master


def test_frr_master_vigil_backup_then_frr_crash(pair: FrrVigilPair) -> None:
    """FRR (200) takes over from a running vigil (100); vigil follows it; FRR dies."""
    pair.start_vigil(100)
    pair.lab.wait_address(pair.vg_node, pair.vip, timeout=10)  # alone: vigil is master
    pair.start_frr(200)
    pair.wait(pair.frr_holds, "FRR to preempt vigil and become Master")
    source = frr_source(pair)
    pair.wait(
        lambda: (
            pair.vigil()["state"] == "BACKUP"
            and pair.vigil()["master_address"] == source
            and not pair.vigil_holds()
        ),
        f"vigil to be BACKUP behind FRR at {source} and to drop {pair.vip}",
    )
    pair.hold_steady("frr")
    inst = pair.vigil()
    assert inst["master_priority"] == 200
    assert inst["learned_interval"] == pytest.approx(0.1)
    assert inst["counters"]["adverts_received"] >= STEADY_ADVERTS
    assert inst["counters"]["became_master"] == 1, "vigil was master before FRR started"
    assert_no_rejections(pair)

    pair.frr_handle.kill()  # SIGKILL to zebra's and vrrpd's process groups: a crash
    pair.lab.wait_address(pair.vg_node, pair.vip, timeout=5)
    pair.wait(lambda: pair.vigil()["state"] == "MASTER", "vigil to become MASTER")
    inst = pair.vigil()
    assert inst["last_transition"]["reason"].startswith("master down timer expired"), inst
    assert inst["master_address"] != source
    assert_no_rejections(pair)
    assert not pair.frr_handle.alive()
    # Nobody lowers a crashed vrrpd's macvlan: it stays up with the VIP on it, so after
    # an FRR crash only its silence on the wire says it let go (as with keepalived).
    assert not pair.frr_protodown()


def test_frr_clean_stop_sends_priority_zero(pair: FrrVigilPair) -> None:
    """SIGTERM makes vrrpd send priority 0; vigil takes over after skew time."""
    pair.start_frr(200)
    pair.wait(pair.frr_holds, "FRR alone to become Master")
    pair.start_vigil(100)
    source = frr_source(pair)
    pair.wait(
        lambda: pair.vigil()["state"] == "BACKUP" and pair.vigil()["master_address"] == source,
        "vigil to start as BACKUP behind FRR",
    )
    pair.hold_steady("frr")
    assert pair.vigil()["counters"]["became_master"] == 0, "vigil must not flap at start"

    pair.vrrpd().signal(signal.SIGTERM)  # vrrpd only, zebra stays: a clean stop
    pair.lab.wait_address(pair.vg_node, pair.vip, timeout=5)
    pair.wait(
        lambda: pair.vigil()["counters"]["priority_zero_received"] >= 1,
        "vigil to count FRR's priority-0 advert",
    )
    inst = pair.vigil()
    assert inst["state"] == "MASTER"
    assert "priority 0" in inst["last_transition"]["reason"], inst["last_transition"]
    # vrrpd leaves its macvlan protodown when it stops: FRR releases the VIP.
    pair.wait(pair.frr_protodown, "FRR's macvlan to be protodown after its clean stop")
    assert_no_rejections(pair)


# ---------------------------------------------------------------------- vigil master


def test_vigil_master_frr_backup_then_vigil_crash(pair: FrrVigilPair) -> None:
    """vigil (200) preempts a running FRR (100); FRR follows; vigil crashes (cable pulled)."""
    pair.start_frr(100)
    pair.wait(pair.frr_holds, "FRR alone to become Master")
    pair.start_vigil(200)
    pair.wait(
        lambda: pair.vigil()["state"] == "MASTER" and pair.vigil_holds(),
        "vigil to preempt FRR",
    )
    pair.wait(
        lambda: pair.frr_state()["status"] == "Backup" and pair.frr_protodown(),
        "FRR to become Backup with its macvlan protodown",
    )
    pair.hold_steady("vigil")
    inst = pair.vigil()
    assert inst["last_transition"]["reason"].startswith("preempted lower-priority master"), inst
    assert inst["counters"]["adverts_received"] >= 1, "vigil saw FRR's adverts before preempting"
    assert_no_rejections(pair)
    frr = pair.frr_state()
    assert frr["effectivePriority"] == 100
    assert frr["stats"]["adverRx"] >= STEADY_ADVERTS, frr

    pair.lab.kill_group(pair.vg_handle)
    pair.lab.cable_pull(pair.vg_node)
    pair.wait(pair.frr_holds, "FRR to take over after vigil's crash", timeout=5)
    # The crashed vigil keeps its VIP (SIGKILL) but its cable is out: FRR is the only
    # holder anyone can reach. FRR keeps holding while it sends adverts of its own.
    sent = pair.frr_state()["stats"]["adverTx"]
    pair.wait(
        lambda: pair.frr_holds() and pair.frr_state()["stats"]["adverTx"] >= sent + 5,
        "FRR to stay Master",
    )


def test_vigil_clean_stop_hands_over_to_frr(pair: FrrVigilPair) -> None:
    """A stopped vigil releases the VIP and FRR, the backup, takes it over."""
    pair.start_vigil(200)
    pair.lab.wait_address(pair.vg_node, pair.vip, timeout=10)
    pair.start_frr(100)
    pair.wait(
        lambda: pair.frr_state()["status"] == "Backup" and pair.frr_protodown(),
        "FRR to start as Backup behind vigil",
    )
    pair.hold_steady("vigil")
    assert pair.vigil()["counters"]["released_master"] == 0

    assert pair.vg_handle.stop() == 0
    assert not pair.vigil_holds(), "a clean stop must remove the VIP"
    pair.wait(pair.frr_holds, "FRR to take over after vigil's priority 0", timeout=5)


# ---------------------------------------------------------------------- checksum modes


def test_v3_ipv4_checksum_mismatch_is_counted(lab: Lab) -> None:
    """vigil without the pseudo-header rejects every FRR advert as a checksum error.

    FRR 8.4.4 always checksums VRRPv3/IPv4 with the pseudo-header (it has no
    ``checksum-with-ipv4-pseudoheader`` switch yet), so this is the only mismatch to
    build; the matching default runs in every test above. Each side drops the other's
    adverts, so both become master: the split brain keepalived shows too.
    """
    frr_node = lab.add_namespace("frr")
    vg_node = lab.add_namespace("vg")
    lab.connect(frr_node, addrs=[f"{FRR_ADDRS[4]}/24"])
    lab.connect(vg_node, addrs=[f"{VG_ADDRS[4]}/24"])
    pair = FrrVigilPair(lab, 4, frr_node, vg_node)
    pair.start_frr(200)
    pair.wait(pair.frr_holds, "FRR alone to become Master")
    pair.start_vigil(100, v3_checksum_pseudo_header=False)
    pair.wait(
        lambda: pair.vigil()["counters"]["rejected"].get("checksum", 0) >= STEADY_ADVERTS,
        "vigil to reject FRR's adverts for their checksum",
    )
    pair.lab.wait_address(pair.vg_node, pair.vip, timeout=5)
    inst = pair.vigil()
    assert inst["state"] == "MASTER"
    assert set(inst["counters"]["rejected"]) == {"checksum"}, inst["counters"]
    assert inst["counters"]["adverts_received"] == 0
    # FRR drops vigil's adverts likewise (before counting them) and stays Master.
    sent = inst["counters"]["adverts_sent"]
    pair.wait(
        lambda: pair.vigil()["counters"]["adverts_sent"] >= sent + STEADY_ADVERTS,
        "vigil to keep sending adverts as master",
    )
    frr = pair.frr_state()
    assert frr["stats"]["adverRx"] == 0, frr
    assert pair.holders() == ["frr", "vigil"]


# ---------------------------------------------------------------------- one VRID, two families


def test_one_vrid_for_both_families(lab: Lab) -> None:
    """FRR runs IPv4 and IPv6 under one VRID; vigil mirrors it with two instances.

    vigil tells the families apart by socket (the same VRID on IPv4 and IPv6 is two
    virtual routers), follows FRR in both and takes both VIPs when FRR crashes.
    """
    frr_node = lab.add_namespace("frr")
    vg_node = lab.add_namespace("vg")
    lab.connect(frr_node, addrs=[f"{FRR_ADDRS[4]}/24", f"{FRR_ADDRS[6]}/64"])
    lab.connect(vg_node, addrs=[f"{VG_ADDRS[4]}/24", f"{VG_ADDRS[6]}/64"])
    routers = {fam: FrrVrrpRouter(VRID, 200, [VIPS[fam].split("/")[0]]) for fam in (4, 6)}
    macvlans = {
        fam: lab.add_macvlan(frr_node, "eth0", VRID, family=fam, addrs=[VIPS[fam]])
        for fam in (4, 6)
    }
    lab.wait_for(
        lambda: any(a.startswith("fe80:") for a in lab.addresses(frr_node, macvlans[6])),
        timeout=5,
        what=f"a link-local address on {macvlans[6]}",
    )
    frr = lab.start_frr(
        frr_node, routers[4].render() + routers[6].render(), daemons=("zebra", "vrrpd")
    )
    cfg = {
        "global": {"router_id": "vg"},
        "vrrp_instances": [vigil_instance(f"VI_{fam}", VRID, 100, VIPS[fam]) for fam in (4, 6)],
    }
    vg = lab.start_vigild(vg_node, cfg)

    def inst(fam: int) -> dict[str, Any]:
        status, body = vg.client.get(f"/v1/vrrp/instances/VI_{fam}")
        assert status == 200, body
        return dict(body)

    def frr_sources() -> dict[int, str]:
        return {fam: str(frr_vrrp_section(frr, VRID, fam)["primaryAddress"]) for fam in (4, 6)}

    def following() -> bool:
        src = frr_sources()
        return all(
            inst(fam)["state"] == "BACKUP"
            and inst(fam)["master_address"] == src[fam]
            and src[fam] not in ("", "::")
            for fam in (4, 6)
        )

    wait_for(
        following,
        timeout=10,
        interval=0.05,
        what="vigil to follow FRR in both families",
        observe=lambda: (frr_sources(), [inst(f)["master_address"] for f in (4, 6)]),
    )
    src = frr_sources()
    assert src[4] == FRR_ADDRS[4] and src[6].startswith("fe80:"), src
    for fam in (4, 6):
        assert inst(fam)["counters"]["rejected"] == {}, inst(fam)["counters"]
        assert inst(fam)["counters"]["became_master"] == 0
        assert not lab.has_address(vg_node, VIPS[fam])
        assert frr_vrrp_section(frr, VRID, fam)["status"] == "Master"

    frr.kill()
    for fam in (4, 6):
        lab.wait_address(vg_node, VIPS[fam], timeout=5)
    wait_for(
        lambda: all(inst(fam)["state"] == "MASTER" for fam in (4, 6)),
        timeout=5,
        what="vigil MASTER in both families",
    )


# ---------------------------------------------------------------------- VRRPv2


def test_vrrp_v2_ipv4_both_ways(lab: Lab) -> None:
    """VRRPv2 (1 s adverts): each side accepts the other's checksum and interval.

    VRRPv2 checksums the VRRP message only and both ends must use the same interval (FRR
    drops a v2 advert whose interval differs from its own); with equal intervals neither
    side rejects anything. vigil (200) preempts a running FRR (100), FRR backs off, and
    takes over when vigil crashes.
    """
    frr_node = lab.add_namespace("frr")
    vg_node = lab.add_namespace("vg")
    lab.connect(frr_node, addrs=[f"{FRR_ADDRS[4]}/24"])
    lab.connect(vg_node, addrs=[f"{VG_ADDRS[4]}/24"])
    pair = FrrVigilPair(lab, 4, frr_node, vg_node)
    pair.start_frr(100, version=2, interval_ms=1000)
    pair.wait(pair.frr_holds, "FRR (VRRPv2) alone to become Master")
    pair.start_vigil(200, version=2, advert_interval=1)
    pair.wait(
        lambda: pair.vigil()["state"] == "MASTER" and pair.vigil_holds(),
        "vigil to preempt FRR",
    )
    pair.wait(
        lambda: pair.frr_state()["status"] == "Backup" and pair.frr_protodown(),
        "FRR to become Backup behind vigil",
    )
    pair.hold_steady("vigil", adverts=3)
    inst = pair.vigil()
    assert inst["version"] == 2
    assert inst["counters"]["adverts_received"] >= 1, "vigil saw FRR's v2 adverts"
    assert_no_rejections(pair)
    assert pair.frr_state()["stats"]["adverRx"] >= 3

    pair.lab.kill_group(pair.vg_handle)
    pair.lab.cable_pull(pair.vg_node)
    pair.wait(pair.frr_holds, "FRR to take over after vigil's crash", timeout=10)
