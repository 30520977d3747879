"""Machine rules added for issue 15: a stalled master re-announces, a priority-0 advert
carrying our own address is answered while master (defect 2), and immediate answers are
rate-limited (defect 6). Fake clock only."""

from __future__ import annotations

import pytest
from test_vrrp_machine import as_master, started

from vigil.vrrp.machine import (
    ANSWER_BURST,
    STALL_INTERVALS,
    GarpKind,
    SendAdvert,
    SendGratuitous,
)

pytestmark = pytest.mark.unit


def test_an_advert_on_time_announces_nothing() -> None:
    machine = as_master(0.0)
    deadline = machine.next_deadline()
    assert deadline is not None
    assert machine.timer_expired(deadline + 0.5) == [SendAdvert(100)]


def test_a_stalled_master_announces_its_vips_after_the_advert() -> None:
    machine = as_master(0.0)
    deadline = machine.next_deadline()
    assert deadline is not None
    late = STALL_INTERVALS * 1.0 + 3.0  # the process was stopped for 5 s
    actions = machine.timer_expired(deadline + late)
    assert actions[0] == SendAdvert(100)
    assert isinstance(actions[1], SendGratuitous) and actions[1].kind is GarpKind.STALLED
    assert actions[1].late == pytest.approx(late)


def test_own_address_priority_zero_is_answered_only_while_master() -> None:
    machine = as_master(0.0)
    assert machine.own_address_received(0.3, 0) == [SendAdvert(100)]
    assert machine.own_address_received(0.4, 100) == []  # not a threat: ignored
    backup = started(0.0)
    assert backup.own_address_received(0.3, 0) == []
    assert backup.next_deadline() == pytest.approx(3 + 156 / 256)  # nothing re-armed


def test_answers_to_a_flood_are_rate_limited() -> None:
    machine = as_master(0.0)
    answers = [machine.advert_received(0.5 + i * 0.001, "10.0.0.2", 50, 1.0) for i in range(100)]
    adverts = sum(SendAdvert(100) in a for a in answers)
    garps = sum(SendGratuitous(GarpKind.LOWER_PRIORITY) in a for a in answers)
    assert (adverts, garps) == (ANSWER_BURST, 1)
    assert machine.answers_suppressed == 100 - ANSWER_BURST + 99


def test_a_peer_at_its_interval_is_always_answered() -> None:
    machine = as_master(0.0)
    for i in range(20):
        actions = machine.advert_received(0.5 + i * 1.0, "10.0.0.2", 50, 1.0)
        assert SendAdvert(100) in actions, i
    assert machine.answers_suppressed == 0
