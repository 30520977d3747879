"""Waiting for an instance to reach a state, woken by the instance itself, never by polling.

A verified action (handover, takeover, maintenance) waits until what it asked for is
observed: the machine in a state, a new master's advert, the VIPs gone from the kernel.
The instance fires its :class:`Pulse` whenever something it knows changed (a machine
input was handled, an address operation finished, a kernel address event arrived); a
waiter re-checks its condition on each pulse and gives up at its deadline. Nothing
sleeps on a fixed interval, and an action sees a change the moment it happens.

``fire()`` is what the hot path pays: with nobody waiting it is one truth test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

__all__ = ["Pulse"]


class Pulse:
    """Wakes every current waiter; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []
        self.fired = 0  # how often it fired (for tests and curiosity)

    def fire(self) -> None:
        self.fired += 1
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def next(self, timeout: float) -> bool:
        """Wait for the next pulse: True when one came, False when ``timeout`` passed."""
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)
        return True

    async def wait_until(
        self,
        check: Callable[[], bool],
        timeout: float,
        *,
        clock: Callable[[], float] | None = None,
    ) -> bool:
        """Return True as soon as ``check()`` holds, False when ``timeout`` passed first.

        ``check`` runs now and after every pulse; bounded by the deadline, whatever the
        number of pulses. ``clock`` is the loop's clock unless given (tests).
        """
        loop = asyncio.get_running_loop()
        now = clock or loop.time
        deadline = now() + timeout
        while True:
            if check():
                return True
            remaining = deadline - now()
            if remaining <= 0:
                return check()
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await asyncio.wait_for(asyncio.shield(fut), remaining)
            except TimeoutError:
                return check()
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
