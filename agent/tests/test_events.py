"""EventBus: ordering, ring buffer, replay, live fan-out, slow-subscriber overflow, logging."""

from __future__ import annotations

import asyncio
import logging

import pytest

from vigil.events import OVERFLOW, Event, EventBus


def test_seq_starts_at_one_and_increases() -> None:
    bus = EventBus()
    a = bus.publish("x", message="a")
    b = bus.publish("y", "VI_1", "b", prio=100)
    assert (a.seq, b.seq) == (1, 2)
    assert b.time >= a.time
    assert b.to_dict() == {
        "seq": 2,
        "time": b.time,
        "subsystem": "agent",
        "kind": "y",
        "instance": "VI_1",
        "message": "b",
        "data": {"prio": 100},
    }
    assert bus.last_seq == 2


def test_ring_buffer_keeps_the_last_capacity_events() -> None:
    bus = EventBus(capacity=5)
    for n in range(12):
        bus.publish("t", message=str(n))
    assert [e.seq for e in bus.since(0)] == [8, 9, 10, 11, 12]
    assert bus.first_seq == 8
    assert [e.seq for e in bus.since(10)] == [11, 12]
    assert bus.since(12) == []


def test_default_capacity_is_1000() -> None:
    bus = EventBus()
    for _ in range(1005):
        bus.publish("t")
    events = bus.since(0)
    assert len(events) == 1000
    assert events[0].seq == 6


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="capacity"):
        EventBus(capacity=0)
    with pytest.raises(ValueError, match="subscriber_queue"):
        EventBus(subscriber_queue=0)


def test_log_line_names_the_instance(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    with caplog.at_level(logging.INFO, logger="vigil.events"):
        bus.publish("state_change", "VI_1", "BACKUP -> MASTER: master down timer expired")
        bus.publish("config_reloaded", None, "config reloaded (changed: VI_1)")
        bus.publish("reload_failed", None, "config reload failed")
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.INFO, "(VI_1) BACKUP -> MASTER: master down timer expired"),
        (logging.INFO, "agent: config reloaded (changed: VI_1)"),
        (logging.WARNING, "agent: config reload failed"),
    ]


def test_listeners_see_every_event_and_a_failing_one_is_contained() -> None:
    bus = EventBus()
    seen: list[int] = []

    def broken(ev: Event) -> None:
        raise RuntimeError("listener bug")

    bus.listeners.extend([broken, lambda ev: seen.append(ev.seq)])
    bus.publish("a")
    bus.publish("b")
    assert seen == [1, 2]


async def test_subscribe_replays_then_goes_live_without_gaps() -> None:
    bus = EventBus()
    for n in range(3):
        bus.publish("old", message=str(n))
    sub = bus.subscribe(since=1)
    bus.publish("new")
    got = [await anext(sub) for _ in range(3)]
    assert [(e.seq, e.kind) for e in got] == [(2, "old"), (3, "old"), (4, "new")]
    assert sub.last_seq == 4


async def test_subscribe_without_since_is_live_only() -> None:
    bus = EventBus()
    bus.publish("old")
    sub = bus.subscribe()
    waiter = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)  # let the waiter block on an empty subscription
    assert not waiter.done()
    bus.publish("new")
    ev = await asyncio.wait_for(waiter, 5)
    assert (ev.seq, ev.kind) == (2, "new")


async def test_slow_subscriber_is_dropped_with_overflow_marker() -> None:
    bus = EventBus(subscriber_queue=3)
    slow = bus.subscribe()
    fast_seen: list[int] = []
    fast = bus.subscribe()
    for _ in range(5):
        bus.publish("t")  # publish never blocks, even with a full subscriber
        fast_seen.append((await anext(fast)).seq)
    assert fast_seen == [1, 2, 3, 4, 5]
    assert bus.subscriber_count == 1  # the slow one is detached
    got = [e async for e in slow]
    assert [e.seq for e in got[:3]] == [1, 2, 3]
    marker = got[3]
    assert marker.kind == OVERFLOW
    assert marker.data["last_seq"] == 3
    assert "since=3" in marker.message
    assert len(got) == 4
    assert slow.overflowed


async def test_close_ends_subscriptions_after_queued_events() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish("a")
    bus.close()
    assert [e.kind async for e in sub] == ["a"]
    assert bus.subscriber_count == 0


async def test_replay_does_not_count_against_the_bound() -> None:
    bus = EventBus(subscriber_queue=2)
    for _ in range(10):
        bus.publish("old")
    sub = bus.subscribe(since=0)
    bus.publish("new")
    got = [await anext(sub) for _ in range(11)]
    assert [e.seq for e in got] == list(range(1, 12))
    assert not sub.overflowed
