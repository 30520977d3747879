"""Unit tests for the sans-I/O VRRP state machine, driven by a fake clock.

Each test names the RFC 5798 / RFC 3768 rule or keepalived 2.2.7 behaviour it checks.
Times are plain floats: the machine never reads a clock.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
from typing import Any

import pytest

from vigil.vrrp.machine import (
    TRANSITIONS,
    Action,
    AddVips,
    GarpKind,
    IllegalTransition,
    LearnedInterval,
    MachineParams,
    MachineParamsError,
    RemoveVips,
    SendAdvert,
    SendGratuitous,
    Transition,
    Trigger,
    VrrpMachine,
    VrrpState,
    is_allowed,
)

MASTER_ACTIONS = [Transition, SendAdvert, AddVips, SendGratuitous]


def make_params(**overrides: Any) -> MachineParams:
    values: dict[str, Any] = {
        "name": "VI_1",
        "vrid": 51,
        "version": 3,
        "base_priority": 100,
        "advert_interval": 1.0,
        "primary_address": "10.0.0.1",
    }
    values.update(overrides)
    return MachineParams(**values)


class FakeClock:
    """Drives a machine's timers up to a point in time, firing each deadline in order."""

    def __init__(self, machine: VrrpMachine, now: float = 0.0) -> None:
        self.machine = machine
        self.now = now

    def advance_to(self, until: float, max_fires: int = 10_000) -> list[Action]:
        fired: list[Action] = []
        for _ in range(max_fires):
            deadline = self.machine.next_deadline()
            if deadline is None or deadline > until + 1e-9:  # float sums: 0.5 + 0.36...
                self.now = until
                return fired
            self.now = deadline
            fired.extend(self.machine.timer_expired(deadline))
        raise AssertionError(f"timers did not settle within {max_fires} fires")

    def advance(self, seconds: float) -> list[Action]:
        return self.advance_to(self.now + seconds)


def started(now: float = 0.0, **overrides: Any) -> VrrpMachine:
    machine = VrrpMachine(make_params(**overrides))
    machine.start(now)
    return machine


def as_master(now: float = 0.0, **overrides: Any) -> VrrpMachine:
    machine = started(now, **overrides)
    machine.force_master(now, "test setup")
    assert machine.state is VrrpState.MASTER
    return machine


def kinds(actions: list[Action]) -> list[type]:
    return [type(action) for action in actions]


def head(actions: list[Action]) -> Transition:
    """The Transition a state change puts first in its action list."""
    assert actions, "expected a transition, got no actions"
    first = actions[0]
    assert isinstance(first, Transition), actions
    return first


# --------------------------------------------------------------------------- params


class TestParams:
    def test_valid_params_coerce_the_primary_address(self) -> None:
        params = make_params(primary_address="fe80::1%eth0", version=3)
        assert params.address == ipaddress.IPv6Address("fe80::1")

    @pytest.mark.parametrize(
        ("overrides", "field", "fix"),
        [
            ({"vrid": 0}, "vrid", "1..255"),
            ({"vrid": 256}, "vrid", "1..255"),
            ({"version": 4}, "version", "2 or 3"),
            ({"base_priority": 0}, "base_priority", "1..255"),
            ({"base_priority": 255}, "base_priority", "254 or less"),
            ({"version": 2, "advert_interval": 0.5}, "advert_interval", "whole seconds"),
            ({"version": 2, "advert_interval": 256}, "advert_interval", "whole seconds"),
            ({"advert_interval": 0.005}, "advert_interval", "steps of 0.01"),
            ({"advert_interval": 41}, "advert_interval", "0.01..40.95"),
            ({"advert_interval": math.nan}, "advert_interval", "number of seconds"),
            ({"preempt_delay": -1}, "preempt_delay", ">= 0"),
            ({"primary_address": "10.0.0.300"}, "primary_address", "not an IPv4 or IPv6"),
            ({"name": ""}, "name", "must not be empty"),
        ],
    )
    def test_bad_params_name_field_and_fix(
        self, overrides: dict[str, Any], field: str, fix: str
    ) -> None:
        with pytest.raises(MachineParamsError) as info:
            make_params(**overrides)
        message = str(info.value)
        assert f".{field}:" in message
        assert fix in message

    def test_every_problem_reported_at_once(self) -> None:
        with pytest.raises(MachineParamsError) as info:
            make_params(vrid=0, version=2, advert_interval=0.5, preempt_delay=-2)
        message = str(info.value)
        for field in ("vrid", "advert_interval", "preempt_delay"):
            assert f".{field}:" in message

    def test_owner_runs_at_255_whatever_base_priority_says(self) -> None:
        assert make_params(address_owner=True, base_priority=100).priority == 255
        assert make_params(address_owner=True, base_priority=255).priority == 255


# --------------------------------------------------------------------------- timers


class TestSkewAndMasterDown:
    @pytest.mark.parametrize(
        ("priority", "skew"), [(1, 255 / 256), (100, 156 / 256), (254, 2 / 256)]
    )
    def test_v3_skew_scales_with_master_adver_interval(self, priority: int, skew: float) -> None:
        machine = started(base_priority=priority, advert_interval=1.0)
        assert machine.skew_time == pytest.approx(skew)
        assert machine.master_down_interval == pytest.approx(3.0 + skew)
        fast = started(base_priority=priority, advert_interval=0.1)
        assert fast.skew_time == pytest.approx(skew * 0.1)
        assert fast.master_down_interval == pytest.approx(0.3 + skew * 0.1)

    @pytest.mark.parametrize(
        ("priority", "skew"), [(1, 255 / 256), (100, 156 / 256), (254, 2 / 256)]
    )
    def test_v2_skew_is_seconds_independent_of_interval(self, priority: int, skew: float) -> None:
        machine = started(version=2, base_priority=priority, advert_interval=2)
        assert machine.skew_time == pytest.approx(skew)
        assert machine.master_down_interval == pytest.approx(6.0 + skew)

    def test_skew_follows_effective_priority(self) -> None:
        machine = started(base_priority=100)
        machine.set_effective_priority(0.0, 200)
        assert machine.skew_time == pytest.approx(56 / 256)


# --------------------------------------------------------------------------- start


class TestStart:
    def test_non_owner_starts_backup_with_master_down_armed(self) -> None:
        machine = VrrpMachine(make_params(version=2, advert_interval=1))
        actions = machine.start(10.0)
        assert kinds(actions) == [Transition]
        assert (head(actions).old, head(actions).new) == (VrrpState.INIT, VrrpState.BACKUP)
        assert head(actions).trigger is Trigger.START
        assert machine.state is VrrpState.BACKUP
        assert machine.next_deadline() == pytest.approx(10.0 + 3 + 156 / 256)

    def test_owner_starts_master_at_once(self) -> None:
        machine = VrrpMachine(make_params(base_priority=255, address_owner=True))
        actions = machine.start(5.0)
        assert kinds(actions) == MASTER_ACTIONS
        assert actions[1] == SendAdvert(255)
        assert actions[3] == SendGratuitous(GarpKind.MASTER)
        assert machine.state is VrrpState.MASTER
        assert machine.next_deadline() == pytest.approx(6.0)
        assert machine.counters.became_master == 1
        assert machine.counters.adverts_sent == 1

    @pytest.mark.parametrize(
        ("version", "interval", "down", "text"),
        [(2, 1, 3 + 156 / 256, "3.61s"), (3, 0.1, 0.3 + 15.6 / 256, "0.36s")],
    )
    def test_three_missed_adverts_make_backup_master(
        self, version: int, interval: float, down: float, text: str
    ) -> None:
        machine = started(version=version, advert_interval=interval)
        clock = FakeClock(machine)
        machine.advert_received(0.5, "10.0.0.2", 200, interval)
        assert clock.advance_to(0.5 + down - 0.005) == []
        assert machine.state is VrrpState.BACKUP
        actions = clock.advance_to(0.5 + down)
        assert kinds(actions) == MASTER_ACTIONS
        assert str(head(actions)) == f"(VI_1) BACKUP -> MASTER: master down timer expired ({text})"
        assert head(actions).time == pytest.approx(0.5 + down)
        assert machine.master_address == ipaddress.ip_address("10.0.0.1")

    def test_ipv6_instance_records_its_master_and_takes_over(self) -> None:
        machine = started(primary_address="fe80::1", advert_interval=0.5)
        machine.advert_received(1.0, "fe80::2", 200, 0.5)
        assert machine.master_address == ipaddress.IPv6Address("fe80::2")
        actions = FakeClock(machine, 1.0).advance(2.0)
        assert kinds(actions)[:4] == MASTER_ACTIONS
        assert machine.master_address == ipaddress.IPv6Address("fe80::1")

    def test_regular_adverts_keep_backup_in_backup(self) -> None:
        machine = started(version=2, advert_interval=1)
        clock = FakeClock(machine)
        for tick in range(1, 30):
            assert clock.advance_to(float(tick)) == []
            machine.advert_received(float(tick), "10.0.0.2", 150, 1)
            assert machine.next_deadline() == pytest.approx(tick + 3 + 156 / 256)
        assert machine.state is VrrpState.BACKUP
        assert (str(machine.master_address), machine.master_priority) == ("10.0.0.2", 150)
        assert machine.counters.adverts_received == 29


# --------------------------------------------------------------------------- backup rx


class TestBackupReceives:
    @pytest.mark.parametrize(
        ("version", "interval", "skew", "text"),
        [
            (2, 1, 156 / 256, "(0.61s)"),
            (3, 1.0, 156 / 256, "(0.61s)"),
            (3, 0.1, 15.6 / 256, "(0.06s)"),
        ],
    )
    def test_priority_zero_takes_over_after_skew(
        self, version: int, interval: float, skew: float, text: str
    ) -> None:
        machine = started(version=version, base_priority=100, advert_interval=interval)
        machine.advert_received(1.0, "10.0.0.2", 200, interval)
        assert machine.advert_received(1.05, "10.0.0.2", 0, interval) == []
        assert machine.next_deadline() == pytest.approx(1.05 + skew)
        assert machine.master_priority == 0
        assert machine.counters.priority_zero_received == 1
        actions = FakeClock(machine, 1.05).advance(skew)
        assert kinds(actions) == MASTER_ACTIONS
        assert "sent priority 0" in head(actions).reason
        assert text in head(actions).reason

    def test_lower_priority_is_discarded_and_preempted_at_master_down(self) -> None:
        machine = started(base_priority=150)
        deadline = machine.next_deadline()
        assert deadline is not None
        for tick in (1.0, 2.0, 3.0):
            assert machine.advert_received(tick, "10.0.0.2", 100, 1.0) == []
            assert machine.next_deadline() == deadline
        assert (str(machine.master_address), machine.master_priority) == ("10.0.0.2", 100)
        actions = FakeClock(machine, 3.0).advance_to(deadline)
        assert kinds(actions) == MASTER_ACTIONS
        assert "preempted lower-priority master 10.0.0.2 (priority 100" in head(actions).reason

    def test_equal_priority_resets_the_timer(self) -> None:
        machine = started(base_priority=100)
        machine.advert_received(2.0, "10.0.0.0", 100, 1.0)
        assert machine.next_deadline() == pytest.approx(2.0 + 3 + 156 / 256)

    def test_preempt_off_never_preempts_a_live_lower_master(self) -> None:
        machine = started(base_priority=200, preempt=False)
        clock = FakeClock(machine)
        for tick in range(1, 20):
            assert clock.advance_to(float(tick)) == []
            machine.advert_received(float(tick), "10.0.0.2", 50, 1.0)
        assert machine.state is VrrpState.BACKUP
        # ... but takes over from a dead one.
        actions = clock.advance(5.0)
        assert kinds(actions)[:1] == [Transition]
        assert machine.state is VrrpState.MASTER

    def test_address_owner_always_preempts(self) -> None:
        machine = VrrpMachine(make_params(base_priority=255, address_owner=True, preempt=False))
        machine.start(0.0)
        machine.force_backup(0.0, "handover")
        deadline = machine.next_deadline()
        machine.advert_received(1.0, "10.0.0.2", 200, 1.0)
        assert machine.next_deadline() == deadline  # discarded: preempts at master down

    def test_v3_backup_learns_master_adver_interval(self) -> None:
        machine = started(base_priority=100, advert_interval=1.0)
        actions = machine.advert_received(1.0, "10.0.0.2", 200, 0.5)
        assert actions == [LearnedInterval(0.5, 1.0)]
        assert machine.learned_interval == 0.5
        assert machine.master_down_interval == pytest.approx(1.5 + 156 * 0.5 / 256)
        assert machine.next_deadline() == pytest.approx(1.0 + 1.5 + 156 * 0.5 / 256)
        assert machine.advert_received(1.5, "10.0.0.2", 200, 0.5) == []

    def test_v2_backup_keeps_its_own_interval(self) -> None:
        machine = started(version=2, advert_interval=1)
        assert machine.advert_received(1.0, "10.0.0.2", 200, 3) == []
        assert machine.learned_interval == 1.0
        assert machine.next_deadline() == pytest.approx(1.0 + 3 + 156 / 256)

    def test_discarded_lower_advert_does_not_teach_its_interval(self) -> None:
        machine = started(base_priority=200, advert_interval=1.0)
        assert machine.advert_received(1.0, "10.0.0.2", 100, 0.2) == []
        assert machine.learned_interval == 1.0

    def test_raising_priority_above_the_master_preempts_it(self) -> None:
        machine = started(base_priority=100)
        clock = FakeClock(machine)
        machine.advert_received(1.0, "10.0.0.2", 150, 1.0)
        assert machine.set_effective_priority(1.5, 200) == []
        assert machine.state is VrrpState.BACKUP
        deadline = machine.next_deadline()
        machine.advert_received(2.0, "10.0.0.2", 150, 1.0)
        assert machine.next_deadline() == deadline  # discarded now
        clock.advance_to(2.5)
        assert head(clock.advance(5.0)).new is VrrpState.MASTER

    def test_raising_priority_without_preempt_changes_nothing(self) -> None:
        machine = started(base_priority=100, preempt=False)
        machine.advert_received(1.0, "10.0.0.2", 150, 1.0)
        machine.set_effective_priority(1.5, 200)
        machine.advert_received(2.0, "10.0.0.2", 150, 1.0)
        assert machine.next_deadline() == pytest.approx(2.0 + 3 + 56 / 256)


# --------------------------------------------------------------------------- preempt delay


class TestPreemptDelay:
    def test_live_lower_master_is_preempted_when_the_delay_has_passed(self) -> None:
        machine = started(0.0, base_priority=200, preempt_delay=10.0)
        clock = FakeClock(machine)
        for tick in range(1, 10):
            assert clock.advance_to(float(tick)) == []
            machine.advert_received(float(tick), "10.0.0.2", 100, 1.0)
            assert machine.state is VrrpState.BACKUP
        assert machine.next_deadline() == pytest.approx(10.0)
        actions = clock.advance_to(10.0)
        assert kinds(actions) == MASTER_ACTIONS
        assert head(actions).time == pytest.approx(10.0)
        assert "preempt delay (10.00s) passed" in head(actions).reason

    def test_delay_does_not_apply_to_a_dead_master(self) -> None:
        machine = started(0.0, base_priority=200, preempt_delay=10.0)
        actions = FakeClock(machine).advance_to(4.0)
        assert kinds(actions) == MASTER_ACTIONS
        assert head(actions).time == pytest.approx(3 + 56 / 256)

    def test_lower_master_dying_during_the_delay_is_taken_over_at_master_down(self) -> None:
        machine = started(0.0, base_priority=200, preempt_delay=30.0)
        clock = FakeClock(machine)
        for tick in (1.0, 2.0):
            clock.advance_to(tick)
            machine.advert_received(tick, "10.0.0.2", 100, 1.0)
        actions = clock.advance_to(20.0)
        assert head(actions).time == pytest.approx(2.0 + 3 + 56 / 256)
        assert "master down timer expired" in head(actions).reason

    def test_delay_restarts_when_a_lower_master_follows_a_higher_one(self) -> None:
        machine = started(0.0, base_priority=200, preempt_delay=5.0)
        clock = FakeClock(machine)
        for tick in range(1, 20):  # a higher master for a long time: delay cleared
            clock.advance_to(float(tick))
            machine.advert_received(float(tick), "10.0.0.2", 250, 1.0)
        assert machine.preempt_time is None
        for tick in range(20, 25):  # its priority falls below ours at t=20
            assert clock.advance_to(float(tick)) == []
            machine.advert_received(float(tick), "10.0.0.2", 100, 1.0)
        assert machine.preempt_time == pytest.approx(25.0)
        actions = clock.advance_to(25.0)
        assert kinds(actions) == MASTER_ACTIONS

    def test_without_preempt_the_delay_is_irrelevant(self) -> None:
        machine = started(0.0, base_priority=200, preempt=False, preempt_delay=2.0)
        clock = FakeClock(machine)
        for tick in range(1, 10):
            assert clock.advance_to(float(tick)) == []
            machine.advert_received(float(tick), "10.0.0.2", 100, 1.0)
        assert machine.state is VrrpState.BACKUP


# --------------------------------------------------------------------------- master


class TestMaster:
    def test_adver_timer_sends_and_rearms(self) -> None:
        machine = as_master(0.0, advert_interval=0.5)
        clock = FakeClock(machine)
        assert machine.timer_expired(0.2) == []  # early wake-up: nothing
        actions = clock.advance_to(2.0)
        assert actions == [SendAdvert(100)] * 4
        assert machine.next_deadline() == pytest.approx(2.5)
        assert machine.counters.adverts_sent == 5

    @pytest.mark.parametrize(("interval", "step"), [(1.0, 0.25), (0.1, 0.025), (2.0, 0.5)])
    def test_masters_send_on_a_shared_grid_of_their_interval(
        self, interval: float, step: float
    ) -> None:
        """Masters that took over within one grid step of each other send their adverts
        in at most two instants per interval from the second advert on; the first
        interval is off by at most half a grid step."""
        starts = [t * interval for t in (3.6094, 3.6312, 3.65, 3.6738, 3.7)]
        machines = [as_master(t, advert_interval=interval) for t in starts]
        for t, machine in zip(starts, machines, strict=True):
            first = machine.next_deadline()
            assert first is not None
            assert abs(first - (t + interval)) <= step / 2 + 1e-9
            assert round(first / step) * step == pytest.approx(first, abs=1e-9)
        for t, machine in zip(starts, machines, strict=True):
            FakeClock(machine, t).advance_to(12.0 * interval)
        instants = {round(m.next_deadline() or 0.0, 9) for m in machines}
        assert len(instants) <= 2, instants
        # From then on exactly one interval apart.
        before = machines[0].next_deadline()
        assert before is not None
        machines[0].timer_expired(before)
        assert machines[0].next_deadline() == pytest.approx(before + interval, abs=1e-9)

    def test_a_late_timer_does_not_move_the_advert_grid(self) -> None:
        """An advert timer that fires late (a busy loop) sends at once and comes back onto
        the grid for the next one, so lateness does not pile up."""
        machine = as_master(0.0, advert_interval=1.0)
        assert machine.timer_expired(1.012) == [SendAdvert(100)]
        assert machine.next_deadline() == pytest.approx(2.0)
        assert machine.timer_expired(2.0) == [SendAdvert(100)]
        assert machine.next_deadline() == pytest.approx(3.0)

    def test_priority_zero_from_peer_gets_an_advert_a_garp_burst_and_rearm(self) -> None:
        """A rival master leaving (it was master beside us, e.g. across a partition):
        the clients it drew away come back on our lower_prio GARP/NA burst."""
        machine = as_master(0.0)
        assert machine.advert_received(0.3, "10.0.0.2", 0, 1.0) == [
            SendAdvert(100),
            SendGratuitous(GarpKind.LOWER_PRIORITY),
        ]
        assert machine.next_deadline() == pytest.approx(1.25)  # 1.3 on the advert grid
        assert machine.state is VrrpState.MASTER
        # the burst at most once per holdoff, as for lower priorities
        assert machine.advert_received(0.4, "10.0.0.2", 0, 1.0) == [SendAdvert(100)]

    def test_priority_zero_with_our_own_address_draws_no_burst(self) -> None:
        machine = as_master(0.0)
        own = str(machine.params.address)
        assert machine.advert_received(0.3, own, 0, 1.0) == [SendAdvert(100)]

    def test_a_preempted_master_sends_a_step_back_notice(self) -> None:
        """One advert at its own priority after the transition, before the VIPs go: the
        winner, which may not have known of us (a partition healing), answers it with
        its GARP/NA burst."""
        machine = as_master(0.0, advert_interval=1.0)
        actions = machine.advert_received(0.5, "10.0.0.2", 150, 1.0)
        assert actions[:3] == [actions[0], SendAdvert(100), RemoveVips()]
        assert kinds(actions)[0] is Transition
        winner = as_master(0.0, base_priority=150)
        assert winner.advert_received(0.5, "10.0.0.3", 100, 1.0) == [
            SendAdvert(150),
            SendGratuitous(GarpKind.LOWER_PRIORITY),
        ]

    def test_higher_priority_sends_master_to_backup_with_learned_interval(self) -> None:
        machine = as_master(0.0, advert_interval=1.0)
        actions = machine.advert_received(0.5, "10.0.0.2", 150, 0.2)
        assert kinds(actions) == [Transition, SendAdvert, RemoveVips, LearnedInterval]
        assert SendAdvert(0) not in actions and SendAdvert(100) in actions
        assert head(actions).trigger is Trigger.PREEMPTED
        assert "higher priority advert from 10.0.0.2 (150, ours 100)" in str(head(actions))
        assert machine.state is VrrpState.BACKUP
        assert machine.learned_interval == 0.2
        assert machine.next_deadline() == pytest.approx(0.5 + 0.6 + 156 * 0.2 / 256)
        assert (str(machine.master_address), machine.master_priority) == ("10.0.0.2", 150)
        assert machine.counters.released_master == 1

    def test_v2_higher_priority_uses_own_interval(self) -> None:
        machine = as_master(0.0, version=2, advert_interval=2)
        actions = machine.advert_received(0.5, "10.0.0.2", 150, 2)
        assert kinds(actions) == [Transition, SendAdvert, RemoveVips]  # + step-back notice
        assert machine.next_deadline() == pytest.approx(0.5 + 6 + 156 / 256)

    def test_lower_priority_is_answered_at_once(self) -> None:
        machine = as_master(0.0)
        actions = machine.advert_received(0.4, "10.0.0.2", 50, 1.0)
        assert actions == [SendAdvert(100), SendGratuitous(GarpKind.LOWER_PRIORITY)]
        assert machine.state is VrrpState.MASTER
        assert machine.next_deadline() == pytest.approx(1.0)  # cadence unchanged

    @pytest.mark.parametrize(
        ("ours", "peer"),
        [
            ("10.0.0.9", "10.0.0.10"),  # integer order, not string order
            ("fe80::9", "fe80::a"),
            ("fe80::ffff", "fe81::1"),
        ],
    )
    def test_equal_priority_higher_peer_address_wins(self, ours: str, peer: str) -> None:
        machine = as_master(0.0, primary_address=ours)
        actions = machine.advert_received(0.5, peer, 100, 1.0)
        assert kinds(actions) == [Transition, SendAdvert, RemoveVips]  # + step-back notice
        assert f"equal priority 100 from higher address {peer}" in head(actions).reason
        assert machine.state is VrrpState.BACKUP

    @pytest.mark.parametrize(("ours", "peer"), [("10.0.0.10", "10.0.0.9"), ("fe80::a", "fe80::9")])
    def test_equal_priority_lower_peer_address_loses(self, ours: str, peer: str) -> None:
        machine = as_master(0.0, primary_address=ours)
        actions = machine.advert_received(0.5, peer, 100, 1.0)
        assert actions == [SendAdvert(100), SendGratuitous(GarpKind.LOWER_PRIORITY)]
        assert machine.state is VrrpState.MASTER

    def test_equal_priority_from_our_own_address_is_ignored(self) -> None:
        machine = as_master(0.0)
        assert machine.advert_received(0.5, "10.0.0.1", 100, 1.0) == []
        assert machine.state is VrrpState.MASTER

    def test_unknown_own_address_yields_ties(self) -> None:
        machine = as_master(0.0, primary_address=None)
        machine.advert_received(0.5, "10.0.0.1", 100, 1.0)
        assert machine.state is VrrpState.BACKUP

    def test_priority_change_is_advertised_with_the_next_advert(self) -> None:
        machine = as_master(0.0)
        assert machine.set_effective_priority(0.5, 70) == []
        assert machine.state is VrrpState.MASTER
        assert machine.timer_expired(1.0) == [SendAdvert(70)]
        assert machine.master_priority == 70

    def test_effective_priority_is_clamped(self) -> None:
        machine = started()
        machine.set_effective_priority(0.0, -40)
        assert machine.effective_priority == 1
        machine.set_effective_priority(0.0, 300)
        assert machine.effective_priority == 254
        with pytest.raises(TypeError, match="priority"):
            machine.set_effective_priority(0.0, 1.5)  # type: ignore[arg-type]

    def test_owner_ignores_priority_changes(self) -> None:
        machine = VrrpMachine(make_params(base_priority=255, address_owner=True))
        machine.start(0.0)
        machine.set_effective_priority(0.1, 10)
        assert machine.effective_priority == 255
        assert machine.timer_expired(1.0) == [SendAdvert(255)]


# --------------------------------------------------------------------------- stop / fault


class TestStopFaultRecover:
    def test_stop_master_releases_with_priority_zero(self) -> None:
        machine = as_master(0.0)
        actions = machine.stop(1.0, "SIGTERM")
        assert kinds(actions) == [Transition, SendAdvert, RemoveVips]
        assert actions[1] == SendAdvert(0)
        assert str(head(actions)) == "(VI_1) MASTER -> STOPPED: SIGTERM"
        assert machine.next_deadline() is None
        assert machine.counters.priority_zero_sent == 1
        assert machine.counters.released_master == 1
        assert machine.stop(2.0) == []

    def test_stop_backup_just_stops(self) -> None:
        machine = started()
        actions = machine.stop(1.0)
        assert kinds(actions) == [Transition]
        assert machine.state is VrrpState.STOPPED
        assert machine.advert_received(2.0, "10.0.0.2", 100, 1.0) == []
        assert machine.timer_expired(100.0) == []

    def test_restart_after_stop(self) -> None:
        machine = as_master(0.0)
        machine.stop(1.0)
        actions = machine.start(2.0)
        assert (head(actions).old, head(actions).new) == (VrrpState.STOPPED, VrrpState.BACKUP)
        assert machine.master_address is None

    def test_fault_from_master_sends_priority_zero_then_removes_vips(self) -> None:
        machine = as_master(0.0)
        actions = machine.fault(1.0, "eth0 down")
        assert kinds(actions) == [Transition, SendAdvert, RemoveVips]
        assert actions[1] == SendAdvert(0)
        assert machine.state is VrrpState.FAULT
        assert machine.fault_reason == "eth0 down"
        assert machine.next_deadline() is None

    def test_fault_ignores_adverts_and_timers_and_keeps_the_latest_reason(self) -> None:
        machine = started()
        machine.fault(1.0, "eth0 down")
        assert machine.advert_received(2.0, "10.0.0.2", 0, 1.0) == []
        assert machine.counters.adverts_received == 1
        assert machine.fault(3.0, "chk_haproxy failed") == []
        assert machine.fault_reason == "chk_haproxy failed"
        assert machine.state is VrrpState.FAULT

    def test_recover_goes_backup_and_rearms(self) -> None:
        machine = started()
        machine.fault(1.0, "eth0 down")
        actions = machine.recover(5.0, "eth0 up")
        assert str(head(actions)) == "(VI_1) FAULT -> BACKUP: eth0 up"
        assert machine.next_deadline() == pytest.approx(5.0 + 3 + 156 / 256)
        assert machine.fault_reason is None
        assert machine.recover(6.0, "again") == []

    def test_owner_recovers_straight_to_master(self) -> None:
        machine = VrrpMachine(make_params(base_priority=255, address_owner=True))
        machine.start(0.0)
        machine.fault(1.0, "eth0 down")
        actions = machine.recover(2.0, "eth0 up")
        assert kinds(actions) == MASTER_ACTIONS
        assert machine.counters.became_master == 2

    def test_fault_before_start(self) -> None:
        machine = VrrpMachine(make_params())
        actions = machine.fault(0.0, "eth0 has no carrier")
        assert (head(actions).old, head(actions).new) == (VrrpState.INIT, VrrpState.FAULT)
        machine.recover(1.0, "carrier")
        assert machine.state is VrrpState.BACKUP

    def test_stop_from_fault_and_fault_after_stop(self) -> None:
        machine = started()
        machine.fault(1.0, "down")
        assert kinds(machine.stop(2.0)) == [Transition]
        assert machine.fault(3.0, "down") == []
        assert machine.state is VrrpState.STOPPED


# --------------------------------------------------------------------------- table


class TestTransitionTable:
    def test_no_state_transitions_to_itself(self) -> None:
        assert all(old is not new for old, new in TRANSITIONS)

    def test_nothing_leads_back_to_init(self) -> None:
        assert all(new is not VrrpState.INIT for _, new in TRANSITIONS)

    def test_is_allowed_reads_the_table(self) -> None:
        assert is_allowed(VrrpState.BACKUP, VrrpState.MASTER, Trigger.MASTER_DOWN)
        assert not is_allowed(VrrpState.FAULT, VrrpState.MASTER, Trigger.FORCE_MASTER)
        assert not is_allowed(VrrpState.MASTER, VrrpState.BACKUP, Trigger.MASTER_DOWN)

    def test_start_twice_raises(self) -> None:
        machine = started()
        with pytest.raises(IllegalTransition, match=r"BACKUP -> BACKUP on start"):
            machine.start(1.0)
        assert machine.state is VrrpState.BACKUP

    @pytest.mark.parametrize("setup", ["fault", "stop", "init"])
    def test_force_master_outside_backup_raises(self, setup: str) -> None:
        machine = VrrpMachine(make_params())
        if setup != "init":
            machine.start(0.0)
            getattr(machine, setup)(1.0, "test")
        with pytest.raises(IllegalTransition, match="force_master applies in: BACKUP"):
            machine.force_master(2.0, "sync group")

    def test_owner_start_twice_raises(self) -> None:
        machine = VrrpMachine(make_params(base_priority=255, address_owner=True))
        machine.start(0.0)
        with pytest.raises(IllegalTransition):
            machine.start(1.0)

    def test_every_transition_is_recorded(self) -> None:
        machine = started()
        machine.fault(1.0, "x")
        record = machine.last_transition
        assert record is not None
        assert (record.time, record.reason, record.new) == (1.0, "x", VrrpState.FAULT)


# --------------------------------------------------------------------------- sync/handover


class TestForce:
    def test_force_backup_releases_with_priority_zero(self) -> None:
        machine = as_master(0.0)
        actions = machine.force_backup(1.0, "sync group G1: VI_2 went BACKUP")
        assert kinds(actions) == [Transition, SendAdvert, RemoveVips]
        assert actions[1] == SendAdvert(0)
        assert head(actions).trigger is Trigger.FORCE_BACKUP
        assert machine.master_address is None

    def test_force_backup_without_release(self) -> None:
        machine = as_master(0.0)
        actions = machine.force_backup(1.0, "handover", release=False)
        assert kinds(actions) == [Transition, RemoveVips]

    def test_hold_stops_preemption_until_it_ends(self) -> None:
        machine = as_master(0.0, base_priority=200)
        clock = FakeClock(machine)
        machine.force_backup(0.0, "planned handover", hold_until=10.0)
        for tick in range(1, 10):
            assert clock.advance_to(float(tick)) == []
            machine.advert_received(float(tick), "10.0.0.2", 100, 1.0)
        assert machine.state is VrrpState.BACKUP
        clock.advance_to(11.0)
        machine.advert_received(11.0, "10.0.0.2", 100, 1.0)  # hold over: discarded
        assert kinds(clock.advance(5.0))[:1] == [Transition]
        assert machine.state is VrrpState.MASTER

    def test_hold_never_blocks_takeover_from_a_dead_master(self) -> None:
        machine = as_master(0.0, base_priority=200)
        machine.force_backup(0.0, "maintenance", hold_until=math.inf)
        actions = FakeClock(machine).advance(10.0)
        assert kinds(actions)[:4] == MASTER_ACTIONS
        assert head(actions).time == pytest.approx(3 + 56 / 256)

    def test_release_hold(self) -> None:
        machine = started(base_priority=200)
        machine.force_backup(0.0, "maintenance", hold_until=math.inf)
        assert machine.preempt_hold_until == math.inf
        machine.release_hold(1.0)
        assert machine.preempt_hold_until is None

    def test_force_master_from_backup(self) -> None:
        machine = started()
        actions = machine.force_master(1.0, "sync group G1: VI_2 went MASTER")
        assert kinds(actions) == MASTER_ACTIONS
        assert head(actions).trigger is Trigger.FORCE_MASTER
        assert machine.force_master(2.0, "again") == []


# --------------------------------------------------------------------------- reload


class TestReload:
    def test_priority_change_keeps_mastership_and_tracker_offset(self) -> None:
        machine = as_master(0.0, base_priority=100)
        machine.set_effective_priority(0.1, 80)  # a tracker takes 20 off
        new = dataclasses.replace(machine.params, base_priority=50)
        assert machine.params_changed(0.5, new) == []
        assert machine.state is VrrpState.MASTER
        assert machine.effective_priority == 30
        assert machine.timer_expired(1.0) == [SendAdvert(30)]

    def test_shorter_interval_applies_to_the_next_advert(self) -> None:
        machine = as_master(0.0, advert_interval=2.0)
        assert machine.interval_changed(0.5, 0.5) == []
        assert machine.next_deadline() == pytest.approx(1.0)
        FakeClock(machine, 0.5).advance_to(1.0)
        assert machine.next_deadline() == pytest.approx(1.5)

    def test_longer_interval_never_postpones_a_pending_timer(self) -> None:
        machine = started(advert_interval=1.0)
        deadline = machine.next_deadline()
        machine.interval_changed(0.5, 5.0)
        assert machine.next_deadline() == deadline
        assert machine.learned_interval == 5.0

    def test_backup_keeps_the_interval_learned_from_the_master(self) -> None:
        machine = started(advert_interval=1.0)
        machine.advert_received(0.5, "10.0.0.2", 200, 0.3)
        machine.interval_changed(0.6, 2.0)
        assert machine.learned_interval == 0.3

    def test_becoming_address_owner_takes_over(self) -> None:
        machine = started()
        new = dataclasses.replace(machine.params, address_owner=True, base_priority=255)
        actions = machine.params_changed(1.0, new)
        assert kinds(actions) == MASTER_ACTIONS
        assert head(actions).trigger is Trigger.RELOAD
        assert machine.effective_priority == 255

    @pytest.mark.parametrize("changes", [{"vrid": 52}, {"version": 2}])
    def test_vrid_or_version_change_needs_a_new_machine(self, changes: dict[str, Any]) -> None:
        machine = started()
        with pytest.raises(MachineParamsError, match="replace the instance"):
            machine.params_changed(1.0, dataclasses.replace(machine.params, **changes))

    def test_dropping_preempt_delay_allows_preemption_at_once(self) -> None:
        machine = started(0.0, base_priority=200, preempt_delay=100.0)
        machine.advert_received(1.0, "10.0.0.2", 100, 1.0)
        machine.params_changed(1.5, dataclasses.replace(machine.params, preempt_delay=0.0))
        assert machine.preempt_time is None
        deadline = machine.next_deadline()
        machine.advert_received(2.0, "10.0.0.2", 100, 1.0)
        assert machine.next_deadline() == deadline


# --------------------------------------------------------------------------- input / API


class TestInputAndApi:
    @pytest.mark.parametrize(
        ("src", "priority", "interval", "field"),
        [
            ("not-an-address", 100, 1.0, "src_address"),
            ("fe80::1", 100, 1.0, "src_address"),  # IPv6 advert for an IPv4 instance
            ("10.0.0.2", 256, 1.0, "priority"),
            ("10.0.0.2", -1, 1.0, "priority"),
            ("10.0.0.2", 100, 0.0, "adver_int_seconds"),
        ],
    )
    def test_bad_advert_input_names_the_field(
        self, src: str, priority: int, interval: float, field: str
    ) -> None:
        machine = started()
        with pytest.raises(ValueError, match=field):
            machine.advert_received(1.0, src, priority, interval)
        assert machine.counters.adverts_received == 0

    def test_snapshot_is_json_and_complete(self) -> None:
        machine = started(base_priority=120)
        machine.advert_received(1.0, "10.0.0.2", 200, 1.0)
        snapshot = json.loads(json.dumps(machine.to_dict()))
        assert snapshot["state"] == "BACKUP"
        assert snapshot["base_priority"] == 120
        assert snapshot["effective_priority"] == 120
        assert snapshot["master_address"] == "10.0.0.2"
        assert snapshot["master_priority"] == 200
        assert snapshot["learned_interval"] == 1.0
        assert snapshot["last_transition"]["to"] == "BACKUP"
        assert snapshot["counters"]["adverts_received"] == 1

    def test_counters_over_a_master_lifetime(self) -> None:
        machine = started()
        clock = FakeClock(machine)
        clock.advance(4.0)  # -> MASTER at 3.61, advert; another at 4.61 is not yet due
        machine.advert_received(4.2, "10.0.0.2", 0, 1.0)  # answered at once
        clock.advance_to(6.0)
        machine.advert_received(6.1, "10.0.0.2", 200, 1.0)  # -> BACKUP, step-back notice
        clock.advance_to(6.5)
        machine.stop(6.5)
        assert machine.counters.to_dict() == {
            "adverts_sent": 4,
            "adverts_received": 2,
            "became_master": 1,
            "released_master": 1,
            "priority_zero_sent": 0,
            "priority_zero_received": 1,
        }
