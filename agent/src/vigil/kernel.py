"""The agent's one view of the kernel's links and addresses, shared by every subsystem.

One netlink connection and one monitor of link and address events serve the whole agent:
VRRP needs them (an interface going down means FAULT, a VIP someone deleted is put back),
BFD needs link events (a path is down the moment its interface is), the trackers follow
links. A subsystem subscribes a coroutine; events reach subscribers in kernel order, one
at a time, and a failing subscriber is logged without stopping the others. After the
monitor's buffer overflowed, subscribers get a :class:`~vigil.net.netlink.Resync` with a
fresh snapshot instead of the events that were lost.

``link_problem(ifname)`` asks the kernel directly (not a cache), which is also how a
subsystem reconciles link state it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from vigil.log import RateLimitedLog
from vigil.net.netlink import Netlink, NetlinkEvent, NetlinkMonitor

log = logging.getLogger("vigil.kernel")
# A handler that fails on every event (out of descriptors, say) logs once per burst.
_handler_log = RateLimitedLog(log)

__all__ = ["KernelEvents", "Subscriber"]

Subscriber = Callable[[NetlinkEvent], Awaitable[None]]


class KernelEvents:
    """A netlink connection and its event monitor, fanned out to subscribers."""

    def __init__(self, netns: str | None = None) -> None:
        self.netlink = Netlink(netns)
        self._monitor: NetlinkMonitor | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribers: list[tuple[int, str, Subscriber]] = []
        self.started = False

    def subscribe(self, name: str, callback: Subscriber, *, order: int = 0) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns an unsubscribe function.

        Subscribers with a lower ``order`` see each event first (the subsystems react to a
        link change before the trackers that follow it; ties keep subscription order).
        """
        entry = (order, name, callback)
        self._subscribers.append(entry)
        self._subscribers.sort(key=lambda e: e[0])

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    async def start(self) -> None:
        """Open netlink and start watching (before any subsystem starts)."""
        await self.netlink.open()
        self._monitor = self.netlink.events()
        await self._monitor.start()
        self._task = asyncio.get_running_loop().create_task(self._watch())
        self.started = True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                await self._monitor.close()
            self._monitor = None
        with contextlib.suppress(Exception):
            await self.netlink.close()
        self.started = False

    async def _watch(self) -> None:
        assert self._monitor is not None
        try:
            async for ev in self._monitor:
                for _order, name, callback in list(self._subscribers):
                    try:
                        await callback(ev)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        _handler_log.error(
                            f"{name}:{type(ev).__name__}",
                            "kernel: %s failed handling %s",
                            name,
                            ev,
                            exc_info=True,
                        )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kernel: the netlink monitor stopped")

    async def link_problem(self, ifname: str) -> str | None:
        """Why ``ifname`` cannot carry traffic now (asked of the kernel), or None."""
        state = await self.netlink.find_link(ifname)
        if state is None:
            return f"interface {ifname} does not exist"
        if not state.up:
            return f"interface {ifname} is administratively down"
        if not state.carrier:
            return f"interface {ifname} has no carrier"
        return None
