"""The netlink event monitor: link and address events from the kernel, never lost silently.

A socket subscribed to the link and IPv4/IPv6 address groups. pyroute2 reads it into its
own queue whenever the event loop runs, so the kernel buffer does not fill while the loop
is healthy; if it still overflows (ENOBUFS, events were lost) the monitor reopens the
socket, lists links and addresses again and yields a :class:`Resync` carrying the full
picture. The agent runs one (``vigil.kernel``) and fans its events out to subsystems.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as errno_mod
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

from vigil.net.model import (
    AddrEvent,
    IPInterface,
    LinkEvent,
    LinkState,
    NetlinkEvent,
    NetlinkFailure,
    Resync,
    _addr_from_msg,
    _link_from_msg,
)

if TYPE_CHECKING:
    from pyroute2.iproute import AsyncIPRoute

    from vigil.net.netlink import Netlink

__all__ = ["NetlinkMonitor"]

log = logging.getLogger("vigil.net.netlink")

_SO_RCVBUFFORCE = 33
_EVENT_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR


class NetlinkMonitor:
    """Link and address events from a dedicated, always-drained netlink socket.

    Link events are reported only when something a consumer cares about changed (up,
    carrier, name, appearance, removal): the kernel also sends RTM_NEWLINK for
    statistics and IPv6 protocol updates. Address events are reported when an address
    appears or disappears (not for flag updates such as the end of DAD).

    pyroute2 moves datagrams from the kernel into its queue whenever the event loop runs,
    so the kernel buffer only overflows if the loop is blocked; the queue itself grows
    if nobody iterates, so iterate continuously from one task, or close the monitor.
    """

    def __init__(self, nl: Netlink, *, rcvbuf: int = 1 << 20) -> None:
        self._nl = nl
        self._rcvbuf = rcvbuf
        self._sock: AsyncIPRoute | None = None
        self._links: dict[int, LinkState] = {}
        self._addrs: set[tuple[int, IPInterface]] = set()
        self._pending: deque[NetlinkEvent] = deque()
        self._closed = False
        self.resyncs = 0

    async def start(self) -> None:
        """Subscribe, then take a snapshot so later events can be told apart from noise."""
        if self._sock is not None:
            return
        if self._closed:
            raise RuntimeError("this NetlinkMonitor is closed; call nl.events() again")
        await self._subscribe()
        await self._snapshot()

    async def _subscribe(self) -> None:
        sock = self._nl._new_socket(rcvbuf=self._rcvbuf)
        try:
            await sock.bind(groups=_EVENT_GROUPS)
        except FileNotFoundError:
            sock.close()
            raise NetlinkFailure(
                "subscribe to events in namespace",
                repr(self._nl.netns),
                errno_mod.ENOENT,
                "no such netns",
            ) from None
        except BaseException:
            sock.close()
            raise
        # SO_RCVBUF is capped by net.core.rmem_max; as root, force the size asked for.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self._rcvbuf)
        self._sock = sock

    async def _snapshot(self) -> Resync:
        links = await self._nl.links()
        addresses = await self._nl.addresses()
        self._links = {link.index: link for link in links}
        self._addrs = {(a.index, a.address) for a in addresses}
        return Resync(tuple(links), tuple(addresses))

    async def close(self) -> None:
        self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> NetlinkMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[NetlinkEvent]:
        return self

    async def __anext__(self) -> NetlinkEvent:
        if self._closed and not self._pending:
            raise StopAsyncIteration
        await self.start()
        while not self._pending:
            if self._closed or self._sock is None:
                raise StopAsyncIteration
            await self._fill()
        return self._pending.popleft()

    async def _fill(self) -> None:
        """Read one batch (one datagram) from the socket into the pending list."""
        assert self._sock is not None
        got = False
        try:
            async for msg in self._sock.get():
                got = True
                self._pending.extend(self._translate(msg))
        except (OSError, NetlinkError) as exc:
            code = exc.code if isinstance(exc, NetlinkError) else exc.errno
            if self._closed:
                return  # close() from another task aborts the read with ECONNRESET
            if code == errno_mod.ENOBUFS:
                await self._recover("the netlink event socket overflowed; events were lost")
                return
            if code == errno_mod.ECONNRESET:
                await self._recover("the netlink event socket was reset")
                return
            raise NetlinkFailure("read", "netlink events", code or errno_mod.EIO) from None
        if not got and not self._closed:
            # pyroute2 ends get() empty-handed only when its socket went away.
            await self._recover("the netlink event socket closed")

    async def _recover(self, why: str) -> None:
        """Reopen the socket (unusable after an overflow) and report the full state."""
        log.warning("%s; resynchronising links and addresses", why)
        self.resyncs += 1
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._pending.clear()
        await self._subscribe()
        self._pending.append(await self._snapshot())

    def _translate(self, msg: Any) -> Iterable[NetlinkEvent]:
        event = msg.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            yield from self._link_event(msg, removed=event == "RTM_DELLINK")
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            yield from self._addr_event(msg, added=event == "RTM_NEWADDR")

    def _link_event(self, msg: Any, *, removed: bool) -> Iterable[LinkEvent]:
        index = int(msg["index"])
        if removed:
            old = self._links.pop(index, None)
            name = msg.get("ifname") or (old.name if old else str(index))
            self._addrs = {key for key in self._addrs if key[0] != index}
            yield LinkEvent(str(name), index, False, False, removed=True)
            return
        if msg.get("ifname") is None:
            return  # a per-family update without the link attributes
        state = _link_from_msg(msg)
        old = self._links.get(index)
        self._links[index] = state
        if old is not None and (old.name, old.up, old.carrier) == (
            state.name,
            state.up,
            state.carrier,
        ):
            return
        yield LinkEvent(state.name, index, state.up, state.carrier)

    def _addr_event(self, msg: Any, *, added: bool) -> Iterable[AddrEvent]:
        if msg["family"] not in (socket.AF_INET, socket.AF_INET6):
            return
        index = int(msg["index"])
        link = self._links.get(index)
        info = _addr_from_msg(msg, link.name if link else str(index))
        key = (index, info.address)
        if added:
            if key in self._addrs:
                return
            self._addrs.add(key)
        else:
            if key not in self._addrs:
                return
            self._addrs.discard(key)
        yield AddrEvent(info.ifname, info.address, added, index, info.label)

    async def wait_for(
        self, predicate: Callable[[NetlinkEvent], bool], *, timeout: float
    ) -> NetlinkEvent:
        """The first event matching predicate within timeout (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            async for ev in self:
                if predicate(ev):
                    return ev
        raise TimeoutError("event stream ended")
