"""Waiting on observed conditions: the lab's only way to let time pass.

Tests never sleep for a fixed time hoping something happened; they poll what they can
observe (an address, a state in the API, a file) until it holds or a deadline passes, and
a timeout says what was awaited and what was seen last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["WaitTimeout", "wait_for", "wait_for_async"]


class WaitTimeout(AssertionError):
    """A condition did not hold in time. An AssertionError so pytest shows it as a failure."""

    def __init__(self, what: str, timeout: float, last: object, polls: int) -> None:
        super().__init__(
            f"timed out after {timeout:.2f}s ({polls} polls) waiting for {what}; "
            f"last observed: {last!r}"
        )
        self.what = what
        self.last = last


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str = "condition",
    *,
    observe: Callable[[], object] | None = None,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    An exception raised by the predicate counts as "not yet" and is remembered as the last
    observation, so a socket that is not there yet or a half-written file does not abort
    the wait. ``observe`` (optional) gives the value to report on timeout when the
    predicate's own result (often a bool) says too little. Bounded in time and in polls.
    """
    if timeout <= 0 or interval <= 0:
        raise ValueError("wait_for: timeout and interval must be positive")
    deadline = time.monotonic() + timeout
    max_polls = int(timeout / interval) + 2
    last: object = None
    polls = 0
    while polls < max_polls:
        polls += 1
        try:
            value = predicate()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if observe is not None:
            try:
                last = observe()
            except Exception as exc:
                last = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    raise WaitTimeout(what, timeout, last, polls)


async def wait_for_async(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """``wait_for`` for a coroutine predicate (an async test's own event loop keeps running).

    Same rules: an exception counts as "not yet", bounded in time and in polls, and a
    timeout reports the last value or exception seen.
    """
    if timeout <= 0 or interval <= 0:
        raise ValueError("wait_for_async: timeout and interval must be positive")
    deadline = time.monotonic() + timeout
    max_polls = int(timeout / interval) + 2
    last: object = None
    polls = 0
    while polls < max_polls:
        polls += 1
        try:
            value = await predicate()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(interval, remaining))
    raise WaitTimeout(what, timeout, last, polls)
