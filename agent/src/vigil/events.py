"""The agent's ordered, replayable event stream.

Everything that matters to an operator (state transitions, reloads, faults) is published
here once. The bus keeps the last `capacity` events so a client that reconnects can ask
for everything after the last sequence number it saw, and it fans events out to live
subscribers (the SSE endpoint) through bounded queues: a subscriber that cannot keep up
is cut off with a final "overflow" marker instead of slowing down the publisher, because
the publisher is the protocol loop and must never wait on a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OVERFLOW", "Event", "EventBus", "Subscription"]

log = logging.getLogger("vigil.events")

#: kind of the marker that ends a subscription whose consumer fell behind
OVERFLOW = "overflow"

#: kinds logged at WARNING instead of INFO
WARNING_KINDS = frozenset(
    {
        "reload_failed",
        "fault",
        "overflow",
        "error",
        "vip_restored",
        "vip_error",
        "route_error",
        "vip_cleanup",
        "vrrp_rejected",
        "vrrp_tx_failed",
        "vrrp_stalled",
        "journal_failed",
    }
)


@dataclass(frozen=True)
class Event:
    """One published event. `seq` orders events; `time` is wall-clock (epoch seconds)."""

    seq: int
    time: float
    kind: str
    instance: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "instance": self.instance,
            "message": self.message,
            "data": dict(self.data),
        }

    def log_line(self) -> str:
        """`(VI_1) BACKUP -> MASTER: ...` for an instance, `agent: ...` otherwise."""
        text = self.message or self.kind
        if self.instance:
            return f"({self.instance}) {text}"
        return f"agent: {text}"


class Subscription:
    """A live view of the bus: an async iterator of events, bounded in memory.

    Events buffered before the subscription (the replay) are not counted against the
    bound; live events are. When a live event does not fit, the subscription is
    detached from the bus and, after the events already queued, yields one OVERFLOW
    event naming the last delivered seq, then ends.
    """

    def __init__(self, bus: EventBus, maxsize: int, replay: list[Event], start_seq: int) -> None:
        self._bus = bus
        self._maxsize = maxsize
        self._replay: deque[Event] = deque(replay)
        self._items: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._overflowed = False
        self._finished = False
        #: seq of the last event handed to the consumer (or where it started)
        self.last_seq = start_seq

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    def _push(self, event: Event) -> bool:
        """Called by the bus; False means the subscriber is dropped."""
        if self._closed:
            return False
        if len(self._items) >= self._maxsize:
            self._overflowed = True
            self._closed = True
            self._wakeup.set()
            return False
        self._items.append(event)
        self._wakeup.set()
        return True

    def close(self) -> None:
        """End the iteration after what is already queued (used at shutdown)."""
        self._closed = True
        self._bus._unsubscribe(self)
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._finished:
                raise StopAsyncIteration
            if self._replay:
                ev = self._replay.popleft()
                self.last_seq = ev.seq
                return ev
            if self._items:
                ev = self._items.popleft()
                self.last_seq = ev.seq
                return ev
            if self._overflowed:
                self._finished = True
                return Event(
                    seq=self.last_seq,
                    time=time.time(),
                    kind=OVERFLOW,
                    message=(
                        f"subscriber too slow: events after seq {self.last_seq} were "
                        f"dropped; reconnect with since={self.last_seq}"
                    ),
                    data={"last_seq": self.last_seq},
                )
            if self._closed:
                self._finished = True
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()


class EventBus:
    """Ring buffer of the last `capacity` events plus live fan-out.

    Must be used from the event loop's thread (publish is synchronous and never waits).
    `listeners` are plain callables run on every publish (the metrics counter uses one).
    """

    def __init__(
        self,
        capacity: int = 1000,
        subscriber_queue: int = 256,
        logger: logging.Logger | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if subscriber_queue < 1:
            raise ValueError("subscriber_queue must be at least 1")
        self.capacity = capacity
        self.subscriber_queue = subscriber_queue
        self._buffer: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._subscribers: list[Subscription] = []
        self._log = logger or log
        self.listeners: list[Callable[[Event], None]] = []

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def first_seq(self) -> int:
        """The oldest seq still buffered (last_seq + 1 when empty)."""
        return self._buffer[0].seq if self._buffer else self._seq + 1

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(
        self, kind: str, instance: str | None = None, message: str = "", **data: Any
    ) -> Event:
        """Record, log and fan out one event; returns it."""
        self._seq += 1
        event = Event(
            seq=self._seq,
            time=time.time(),
            kind=kind,
            instance=instance,
            message=message,
            data=data,
        )
        self._buffer.append(event)
        level = logging.WARNING if kind in WARNING_KINDS else logging.INFO
        self._log.log(level, "%s", event.log_line())
        for sub in list(self._subscribers):
            if not sub._push(event):
                self._unsubscribe(sub)
                self._log.warning(
                    "agent: event subscriber dropped: too slow (last delivered seq %d)",
                    sub.last_seq,
                )
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                self._log.exception("event listener failed")
        return event

    def since(self, seq: int = 0) -> list[Event]:
        """Buffered events with a seq greater than `seq`, oldest first."""
        return [ev for ev in self._buffer if ev.seq > seq]

    def subscribe(self, since: int | None = None) -> Subscription:
        """Live events from now; with `since`, buffered events after it come first.

        Replay and live hand-over are gapless because publish runs on the same loop.
        """
        replay = self.since(since) if since is not None else []
        start = self._seq if since is None else min(since, self._seq)
        sub = Subscription(self, self.subscriber_queue, replay, start)
        self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def close(self) -> None:
        """End every live subscription (shutdown)."""
        for sub in list(self._subscribers):
            sub.close()
