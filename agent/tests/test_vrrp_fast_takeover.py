"""Fast peer detection: VRRP consumes BFD sessions (track.bfd, fast_takeover_bfd).

The pure parts: the machine's ``peer_down`` transition (fake clock, and a two-machine
exchange for "only the path died"), the config checks, and VRRP's tracking turning a BFD
tracker's changes into weights, FAULT and takeovers. tests/integration/test_vrrp_bfd.py
runs it in vigild against FRR and between two vigild.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from test_vrrp_machine import make_params, started

from vigil.bfd.packet import State
from vigil.bfd.subsystem import BfdTracker
from vigil.config import ConfigError
from vigil.subsystems import validate_data
from vigil.track.registry import TrackerRegistry
from vigil.vrrp.machine import (
    TRANSITIONS,
    AddVips,
    SendAdvert,
    SendGratuitous,
    Transition,
    Trigger,
    VrrpMachine,
    VrrpState,
)
from vigil.vrrp.tracking import InstanceTracking

pytestmark = pytest.mark.unit

MASTER_ADDR = ipaddress.ip_address("10.0.0.2")


def backup_with_master(now: float = 0.0, priority: int = 200) -> VrrpMachine:
    machine = started(now)
    machine.advert_received(now + 0.1, MASTER_ADDR, priority, 1.0)
    assert machine.state is VrrpState.BACKUP and machine.master_address == MASTER_ADDR
    return machine


# --------------------------------------------------------------------------- machine


def test_peer_down_takes_over_at_once_with_the_master_actions() -> None:
    m = backup_with_master()
    actions = m.peer_down(0.5, "fast peer detection: bfd x down", peer=MASTER_ADDR)
    assert [type(a) for a in actions] == [Transition, SendAdvert, AddVips, SendGratuitous]
    tr = actions[0]
    assert isinstance(tr, Transition) and tr.trigger is Trigger.PEER_DOWN
    assert str(tr) == "(VI_1) BACKUP -> MASTER: fast peer detection: bfd x down"
    assert m.state is VrrpState.MASTER and m.counters.became_master == 1


def test_peer_down_is_ignored_where_it_does_not_apply() -> None:
    fresh = started(0.0)
    assert fresh.peer_down(0.5, "x") == [] and fresh.state is VrrpState.BACKUP  # no master yet
    m = backup_with_master()
    assert m.peer_down(0.5, "x", peer="10.0.0.3") == []  # another node is master now
    assert m.state is VrrpState.BACKUP
    m.fault(0.6, "link")
    assert m.peer_down(0.7, "x", peer=MASTER_ADDR) == [] and m.state is VrrpState.FAULT
    master = VrrpMachine(make_params(address_owner=True, base_priority=255))
    master.start(0.0)
    assert master.peer_down(0.1, "x") == [] and master.state is VrrpState.MASTER


def test_a_preemption_hold_does_not_stop_a_takeover_from_a_dead_master() -> None:
    m = backup_with_master()
    m.force_backup(0.2, "handover", hold_until=1e9)
    assert m.peer_down(0.5, "dead", peer=MASTER_ADDR)[0].new is VrrpState.MASTER  # type: ignore[union-attr]


def test_only_peer_down_is_added_to_the_table() -> None:
    with_peer_down = [
        pair for pair, triggers in TRANSITIONS.items() if Trigger.PEER_DOWN in triggers
    ]
    assert with_peer_down == [(VrrpState.BACKUP, VrrpState.MASTER)]


def test_only_the_path_died_the_old_master_wins_back_at_its_next_advert() -> None:
    """Two machines: B (100) takes over on a BFD Down although M (200) lives. M hears B's
    lower-priority advert and answers at once; B hears 200 and goes back to BACKUP."""
    m = VrrpMachine(make_params(base_priority=200, primary_address="10.0.0.2"))
    m.start(0.0)
    m.timer_expired(m.next_deadline() or 0.0)
    assert m.state is VrrpState.MASTER
    b = backup_with_master(5.0)
    took = b.peer_down(5.5, "fast peer detection", peer=MASTER_ADDR)
    advert = next(a for a in took if isinstance(a, SendAdvert))
    answer = m.advert_received(5.5005, "10.0.0.1", advert.priority, 1.0)
    assert m.state is VrrpState.MASTER
    reply = next(a for a in answer if isinstance(a, SendAdvert))
    assert reply.priority == 200
    back = b.advert_received(5.501, MASTER_ADDR, reply.priority, 1.0)
    assert b.state is VrrpState.BACKUP
    tr = back[0]
    assert isinstance(tr, Transition) and tr.trigger is Trigger.PREEMPTED


# --------------------------------------------------------------------------- config


def config(**inst: Any) -> dict[str, Any]:
    instance = {
        "name": "VI_1",
        "interface": "eth0",
        "vrid": 51,
        "virtual_ipaddresses": ["10.0.0.100/24"],
        **inst,
    }
    return {
        "global": {"router_id": "n1"},
        "bfd": {
            "sessions": [
                {"name": "master", "peer": "10.0.0.2"},
                {"name": "upstream", "peer": "10.0.0.254"},
                {"name": "v6", "peer": "fd00::2"},
            ]
        },
        "vrrp_instances": [instance],
    }


def issues(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        validate_data(data, check_files=False)
    return {i.path: i.message for i in info.value.issues}


def test_track_bfd_and_fast_takeover_build() -> None:
    cfg = validate_data(
        config(
            track={"bfd": ["upstream", {"name": "v6", "weight": -20}]},
            fast_takeover_bfd="master",
        ),
        check_files=False,
    )
    inst = cfg.vrrp_instances[0]
    assert [(r.name, r.weight, r.weight_reverse) for r in inst.track.bfd] == [
        ("upstream", 0, False),
        ("v6", -20, False),
    ]
    assert inst.fast_takeover_bfd == "master"
    again = validate_data(cfg.to_dict(redact=False), check_files=False)
    assert again == cfg


def test_references_to_bfd_sessions_are_checked() -> None:
    found = issues(
        config(track={"bfd": ["upstrem", "master", "master"]}, fast_takeover_bfd="mastr")
    )
    assert found["vrrp_instances[0].track.bfd[0].name"] == (
        "no BFD session named 'upstrem'; did you mean 'upstream'?"
    )
    assert "'master' is tracked twice" in found["vrrp_instances[0].track.bfd[2]"]
    assert found["vrrp_instances[0].fast_takeover_bfd"] == (
        "no BFD session named 'mastr'; did you mean 'master'?"
    )


def test_fast_takeover_runs_to_the_master() -> None:
    found = issues(config(fast_takeover_bfd="v6"))
    assert (
        "runs to fd00::2 (IPv6) but the instance advertises IPv4"
        in (found["vrrp_instances[0].fast_takeover_bfd"])
    )
    found = issues(config(fast_takeover_bfd="upstream", unicast={"peers": ["10.0.0.2"]}))
    assert "not one of the unicast peers (10.0.0.2)" in found["vrrp_instances[0].fast_takeover_bfd"]
    found = issues(config(fast_takeover_bfd="master", address_owner=True, priority=255))
    assert "fast takeover is for backups" in found["vrrp_instances[0].fast_takeover_bfd"]
    found = issues(
        config(address_owner=True, priority=255, track={"bfd": [{"name": "master", "weight": -5}]})
    )
    assert "address owner's priority is fixed" in found["vrrp_instances[0].track.bfd[0].weight"]


def test_without_a_bfd_section_a_reference_says_where_to_define_it() -> None:
    data = config(track={"bfd": ["x"]})
    del data["bfd"]
    assert issues(data)["vrrp_instances[0].track.bfd[0].name"] == (
        "no BFD session named 'x'; define it under bfd.sessions"
    )


# --------------------------------------------------------------------------- tracking


class Target:
    def __init__(self, name: str) -> None:
        self.name = name
        self.machine = type("M", (), {"state": "BACKUP"})()
        self.faults: dict[str, str] = {}
        self.deltas: dict[str, int] = {}
        self.peer_downs: list[tuple[str, Any]] = []
        self.unheard: list[str] = []
        self.ups: list[str] = []

    def set_fault(self, source: str, reason: str) -> None:
        self.faults[source] = reason

    def clear_fault(self, source: str, reason: str) -> None:
        self.faults.pop(source, None)

    def set_priority_delta(self, source: str, delta: int) -> None:
        self.deltas[source] = delta

    def peer_down(self, reason: str, peer: Any) -> None:
        self.peer_downs.append((reason, peer))

    def peer_unheard(self, reason: str) -> None:
        self.unheard.append(reason)

    def peer_up(self, reason: str) -> None:
        self.ups.append(reason)


class Host:
    def __init__(self) -> None:
        self.instances: dict[str, Target] = {"VI_1": Target("VI_1")}
        self.events: list[tuple[str, str | None, str]] = []

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None:
        self.events.append((kind, instance, message))


def details(state: State, diag: int) -> dict[str, Any]:
    return {"bfd_state": str(state), "diag": diag, "diag_text": "x", "peer": "10.0.0.2"}


def test_tracking_maps_bfd_to_weights_fault_and_fast_takeover() -> None:
    cfg = validate_data(
        config(
            track={"bfd": ["upstream", {"name": "master", "weight": -30}]},
            fast_takeover_bfd="master",
        ),
        check_files=False,
    ).section("vrrp")
    registry = TrackerRegistry()
    upstream, master = BfdTracker("upstream"), BfdTracker("master")
    registry.publish(upstream)
    registry.publish(master)
    host = Host()
    tracking = InstanceTracking(host, registry)
    asyncio.run(tracking.start(cfg))
    inst = host.instances["VI_1"]
    tracking.attach(inst)  # type: ignore[arg-type]
    assert "bfd:upstream" in inst.faults and inst.deltas["bfd:master"] == -30

    upstream.update(State.UP, "Init -> Up: remote Up", details(State.UP, 0))
    master.update(State.UP, "Init -> Up: remote Up", details(State.UP, 0))
    assert inst.faults == {} and inst.deltas["bfd:master"] == 0 and inst.peer_downs == []

    master.update(State.DOWN, "Up -> Down: remote AdminDown", details(State.DOWN, 3))
    assert inst.peer_downs == []  # a peer that said AdminDown is not a dead master
    # ... but any Down means the peer may not hear us (a master re-announces its VIPs with
    # its next advert), and the Up after it the same
    assert inst.unheard == ["BFD session master to 10.0.0.2 went Down"] and inst.ups == []
    master.update(State.UP, "Init -> Up: remote Up", details(State.UP, 0))
    assert inst.ups == ["BFD session master to 10.0.0.2 is Up again"]
    reason = "Up -> Down: no packet for 0.061s (detection time 3 x 20ms)"
    master.update(State.DOWN, reason, details(State.DOWN, 1))
    ((why, peer),) = inst.peer_downs
    assert peer == ipaddress.ip_address("10.0.0.2")
    assert why == (
        "fast peer detection: BFD session master to 10.0.0.2 is Down (no packet for "
        "0.061s (detection time 3 x 20ms))"
    )
    assert inst.deltas["bfd:master"] == -30
    kinds = [e[0] for e in host.events]
    assert kinds.count("tracker") == 5
    view = tracking.view("VI_1")
    assert [(t["kind"], t["name"]) for t in view] == [("bfd", "upstream"), ("bfd", "master")]
    asyncio.run(tracking.stop())
