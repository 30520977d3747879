"""Sync group rules over real (pure) VRRP machines in fake instances; no I/O, fake clock.

The fake member does what InstanceRuntime does around its machine: it keeps fault sources
(the first one moves the machine to FAULT, the last one out recovers it), executes the
machine's actions (recording adverts) and calls the group's hooks after each transition
and after each change of its fault sources.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from vigil.vrrp.machine import (
    MachineParams,
    SendAdvert,
    Transition,
    Trigger,
    VrrpMachine,
    VrrpState,
)
from vigil.vrrp.syncgroup import GroupChange, SyncGroup

PEER = "10.0.0.200"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0


class FakeMember:
    def __init__(self, name: str, clock: Clock, priority: int = 150) -> None:
        self.clock = clock
        self.machine = VrrpMachine(
            MachineParams(
                name=name,
                vrid=1 + len(name),
                version=3,
                base_priority=priority,
                advert_interval=1.0,
                primary_address="10.0.0.1",
            )
        )
        self.faults: dict[str, str] = {}
        self.transitions: list[Transition] = []
        self.adverts: list[int] = []
        self.group: SyncGroup | None = None

    # --- Member protocol
    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def state(self) -> VrrpState:
        return self.machine.state

    @property
    def hold_until(self) -> float | None:
        return self.machine.preempt_hold_until

    def set_fault(self, source: str, reason: str) -> None:
        first = not self.faults
        self.faults[source] = reason
        if first:
            self.run(self.machine.fault(self.clock.now, reason))
        if self.group is not None:
            self.group.on_faults_changed(self)

    def clear_fault(self, source: str, reason: str) -> None:
        if self.faults.pop(source, None) is None:
            return
        if not self.faults:
            self.run(self.machine.recover(self.clock.now, reason))
        if self.group is not None:
            self.group.on_faults_changed(self)

    def force_master(self, reason: str) -> None:
        if self.state is VrrpState.BACKUP:
            self.run(self.machine.force_master(self.clock.now, reason))

    def force_backup(self, reason: str, *, hold: bool) -> None:
        self.run(
            self.machine.force_backup(
                self.clock.now, reason, release=True, hold_until=math.inf if hold else None
            )
        )

    def release_hold(self) -> None:
        self.run(self.machine.release_hold(self.clock.now))

    # --- test drivers
    def run(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Transition):
                self.transitions.append(action)
                if self.group is not None:
                    self.group.on_transition(self, action)
            elif isinstance(action, SendAdvert):
                self.adverts.append(action.priority)

    def start(self) -> None:
        self.run(self.machine.start(self.clock.now))

    def master_down(self) -> None:
        deadline = self.machine.next_deadline()
        assert deadline is not None
        self.clock.now = max(self.clock.now, deadline)
        self.run(self.machine.timer_expired(self.clock.now))

    def advert(self, priority: int, src: str = PEER) -> None:
        self.run(self.machine.advert_received(self.clock.now, src, priority, 1.0))


class Harness:
    def __init__(
        self, *names: str, defer: Callable[[Callable[[], None]], Any] | None = None
    ) -> None:
        self.clock = Clock()
        self.members = {n: FakeMember(n, self.clock) for n in names}
        self.changes: list[GroupChange] = []
        kwargs: dict[str, Any] = {} if defer is None else {"defer": defer}
        self.group = SyncGroup(
            "G1", names, self.members.get, self.changes.append, clock=lambda: 0.0, **kwargs
        )
        for m in self.members.values():
            m.start()
            m.group = self.group
        self.group.align()

    def __getitem__(self, name: str) -> FakeMember:
        return self.members[name]

    def states(self) -> dict[str, str]:
        return {n: str(m.state) for n, m in self.members.items()}

    def all_master(self) -> None:
        self["VI_1"].master_down()
        assert self.states() == {n: "MASTER" for n in self.members}


def test_start_settles_on_backup_and_announces_it() -> None:
    h = Harness("VI_1", "VI_2")
    assert h.group.state == "BACKUP"
    assert [(c.old, c.new) for c in h.changes] == [("INIT", "BACKUP")]


def test_a_member_becoming_master_takes_the_others_once() -> None:
    h = Harness("VI_1", "VI_2", "VI_3")
    h["VI_1"].master_down()
    assert h.states() == {"VI_1": "MASTER", "VI_2": "MASTER", "VI_3": "MASTER"}
    assert h["VI_2"].transitions[-1].trigger is Trigger.FORCE_MASTER
    assert "VI_1 became MASTER" in h["VI_2"].transitions[-1].reason
    # no loop: the leader moved once, the followers once each, the group once
    assert [t.new for t in h["VI_1"].transitions] == [VrrpState.BACKUP, VrrpState.MASTER]
    assert len(h["VI_3"].transitions) == 2
    assert [(c.old, c.new) for c in h.changes][-1] == ("BACKUP", "MASTER")
    assert len(h.changes) == 2


def test_fault_of_one_member_faults_all_and_they_recover_together() -> None:
    h = Harness("VI_1", "VI_2")
    h.all_master()
    h["VI_1"].set_fault("link", "interface eth1 has no carrier")
    assert h.states() == {"VI_1": "FAULT", "VI_2": "FAULT"}
    assert h["VI_2"].faults == {
        "sync_group:G1": "sync group G1: member VI_1 (interface eth1 has no carrier) is in FAULT"
    }
    # the follower released mastership with priority 0 so the peer takes over quickly
    assert h["VI_2"].adverts[-1] == 0
    assert h.group.state == "FAULT"
    assert h.group.to_dict()["members"][0]["faults"] == {"link": "interface eth1 has no carrier"}

    h["VI_1"].clear_fault("link", "interface eth1 is up again")
    assert h.states() == {"VI_1": "BACKUP", "VI_2": "BACKUP"}
    assert h["VI_1"].faults == {} and h["VI_2"].faults == {}
    assert [(c.old, c.new) for c in h.changes][-2:] == [("MASTER", "FAULT"), ("FAULT", "BACKUP")]


def test_a_recovered_member_waits_for_the_others_without_a_blip() -> None:
    h = Harness("VI_1", "VI_2")
    h["VI_1"].set_fault("link", "eth1 down")
    h["VI_2"].set_fault("script:chk", "chk failed")
    before = len(h["VI_1"].transitions)
    h["VI_1"].clear_fault("link", "eth1 up")
    assert h.states() == {"VI_1": "FAULT", "VI_2": "FAULT"}
    assert len(h["VI_1"].transitions) == before, "no FAULT -> BACKUP -> FAULT blip"
    assert h["VI_1"].faults == {
        "sync_group:G1": "sync group G1: member VI_2 (chk failed) is in FAULT"
    }
    h["VI_2"].clear_fault("script:chk", "chk ok")
    assert h.states() == {"VI_1": "BACKUP", "VI_2": "BACKUP"}


def test_a_beaten_master_takes_the_others_to_backup_and_holds_them() -> None:
    h = Harness("VI_1", "VI_2")
    h.all_master()
    h["VI_1"].advert(200)  # a peer with a higher priority for VI_1 only
    assert h.states() == {"VI_1": "BACKUP", "VI_2": "BACKUP"}
    follower = h["VI_2"]
    assert follower.transitions[-1].trigger is Trigger.FORCE_BACKUP
    assert follower.adverts[-1] == 0, "released with a priority-0 advert"
    assert follower.hold_until == math.inf
    # the peer now masters VI_2 at a lower priority: the hold stops VI_2 preempting back
    for _ in range(5):
        follower.advert(100)
        h.clock.now += 1.0
        follower.run(follower.machine.timer_expired(h.clock.now))
    assert follower.state is VrrpState.BACKUP
    assert h.group.to_dict()["members"][1]["held"] is True
    # the peer dies: VI_1 takes over at Master_Down, VI_2 follows and the hold ends
    h["VI_1"].master_down()
    assert h.states() == {"VI_1": "MASTER", "VI_2": "MASTER"}
    assert follower.hold_until is None
    assert h.group.to_dict()["members"][1]["held"] is False


def test_someone_elses_hold_is_respected() -> None:
    h = Harness("VI_1", "VI_2")
    # an operator holds VI_2 (maintenance / handover)
    h["VI_2"].run(h["VI_2"].machine.force_backup(h.clock.now, "maintenance", hold_until=math.inf))
    h["VI_1"].master_down()
    assert h.states() == {"VI_1": "MASTER", "VI_2": "BACKUP"}
    assert h["VI_2"].hold_until == math.inf
    assert h.group.to_dict()["consistent"] is False


def test_propagation_waits_for_the_deferred_call() -> None:
    queued: list[Callable[[], None]] = []
    h = Harness("VI_1", "VI_2", defer=queued.append)
    queued.clear()
    h["VI_1"].master_down()
    assert h.states() == {"VI_1": "MASTER", "VI_2": "BACKUP"}, "nothing forced inside the hook"
    assert len(queued) == 1
    queued.pop()()
    assert h.states() == {"VI_1": "MASTER", "VI_2": "MASTER"}
    assert not queued, "a forced transition schedules nothing more"


def test_start_aligns_faults_present_before_the_group_existed() -> None:
    clock = Clock()
    members = {n: FakeMember(n, clock) for n in ("VI_1", "VI_2")}
    for m in members.values():
        m.start()
    members["VI_2"].set_fault("link", "eth2 down")
    group = SyncGroup("G1", members, members.get, lambda c: None)
    for m in members.values():
        m.group = group
    group.align()
    assert {n: str(m.state) for n, m in members.items()} == {"VI_1": "FAULT", "VI_2": "FAULT"}
    assert group.state == "FAULT"


def test_members_not_running_are_left_alone() -> None:
    clock = Clock()
    running = FakeMember("VI_1", clock)
    running.start()
    idle = FakeMember("VI_2", clock)  # INIT: not started yet
    members = {"VI_1": running, "VI_2": idle}
    group = SyncGroup("G1", ["VI_1", "VI_2", "VI_3"], members.get, lambda c: None)
    running.group = group
    running.set_fault("link", "down")
    assert idle.state is VrrpState.INIT and idle.faults == {}
    assert [m["state"] for m in group.to_dict()["members"]] == ["FAULT", "INIT", None]


def test_all_stopped_is_stop_and_detach_releases_sources_and_holds() -> None:
    h = Harness("VI_1", "VI_2")
    h.all_master()
    h["VI_1"].advert(200)
    assert h["VI_2"].hold_until == math.inf
    h["VI_1"].set_fault("link", "down")
    h.group.detach()
    assert h["VI_2"].hold_until is None
    assert "sync_group:G1" not in h["VI_2"].faults
    assert h["VI_2"].state is VrrpState.BACKUP, "released from the group's FAULT"

    h2 = Harness("VI_1", "VI_2")
    for m in h2.members.values():
        m.run(m.machine.stop(h2.clock.now, "agent stopping"))
    assert h2.group.state == "STOP"
    assert [c.new for c in h2.changes] == ["BACKUP", "STOP"]


def test_adopt_keeps_state_and_releases_members_that_left() -> None:
    h = Harness("VI_1", "VI_2", "VI_3")
    h["VI_1"].set_fault("link", "down")
    assert all(m.state is VrrpState.FAULT for m in h.members.values())
    smaller = SyncGroup("G1", ["VI_1", "VI_2"], h.members.get, h.changes.append)
    before = len(h.changes)
    smaller.adopt(h.group)
    assert smaller.state == "FAULT"
    assert len(h.changes) == before, "a reload announces nothing by itself"
    assert h["VI_3"].state is VrrpState.BACKUP and h["VI_3"].faults == {}
    assert "sync_group:G1" in h["VI_2"].faults
