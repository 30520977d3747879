"""Machine rules added for issue 15 (defect 2): a stalled master re-announces, and a
priority-0 advert carrying our own address is answered while master. Fake clock only."""

from __future__ import annotations

import pytest
from test_vrrp_machine import as_master, started

from vigil.vrrp.machine import STALL_INTERVALS, GarpKind, SendAdvert, SendGratuitous

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
