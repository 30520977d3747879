"""An instance's VIPs, virtual routes and gratuitous ARP / unsolicited NA.

Mixed into :class:`vigil.vrrp.instance.InstanceRuntime`: the address half of an instance.
Journal first (a VIP or route is recorded before it is added, and only forgotten after
it is gone), ordered background operations per instance (so the advert path never waits
on netlink), and the GARP/NA bursts and refreshes a new master sends, as keepalived does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from vigil.net.netlink import (
    IPInterface,
    NetlinkFailure,
    RouteSpec,
)
from vigil.net.vmac import VmacSpec
from vigil.vrrp.journal import JournalEntry
from vigil.vrrp.machine import (
    GarpKind,
    VrrpMachine,
    VrrpState,
)
from vigil.vrrp.transport import VrrpSocket
from vigil.vrrp.watch import Pulse

if TYPE_CHECKING:
    from vigil.vrrp.config import VrrpInstanceConfig
    from vigil.vrrp.runtime import VrrpSubsystem

log = logging.getLogger("vigil.vrrp")

IPAddress = IPv4Address | IPv6Address

# After answering a lower priority (or a stall) a master announces its VIPs once more this
# much later: after the peer that was master for a moment has stepped back (issue 15).
LOWER_PRIO_SETTLE = 0.05

# An IPv6 VIP added with IFA_F_NODAD is not usable when the kernel acknowledges the add:
# its local route goes in from the kernel's address worker, which needs the rtnl lock.
# While another process holds that lock (namespaces being created or deleted, a routing
# daemon's burst), packets to the VIP are dropped for milliseconds. The kernel reports the
# address (RTM_NEWADDR) only once it is usable, so an NA waits for that report, this long
# at most: an NA sent earlier draws clients to a node that drops their packets.
V6_READY_MAX = 0.5


class InstanceAddresses:
    """The address half of an instance; the attributes below are the instance's."""

    cfg: VrrpInstanceConfig
    owner: VrrpSubsystem
    loop: asyncio.AbstractEventLoop
    ifname: str
    machine: VrrpMachine
    sock: VrrpSocket | None
    _ops: asyncio.Task[None] | None
    _garp_tasks: set[asyncio.Task[object]]
    _garp_refreshing: bool
    _vmac: VmacSpec | None
    _journal_blocked: bool
    _vips_deferred: bool
    pulse: Pulse

    @property
    def name(self) -> str:
        raise NotImplementedError

    def set_fault(self, source: str, reason: str) -> None:
        raise NotImplementedError

    def now(self) -> float:
        raise NotImplementedError

    # ------------------------------------------------------------ addresses

    def _owned_addresses(
        self, cfg: VrrpInstanceConfig | None = None
    ) -> list[tuple[str, IPInterface]]:
        cfg = cfg or self.cfg
        default = cfg.use_vmac or cfg.interface
        return [(vip.dev or default, vip.address) for vip in (*cfg.vips, *cfg.excluded_vips)]

    def _vip_attributes(self, dev: str, addr: IPInterface) -> tuple[str | None, str]:
        """(label, scope) a VIP is added with."""
        default = self.cfg.use_vmac or self.cfg.interface
        for vip in (*self.cfg.vips, *self.cfg.excluded_vips):
            if (vip.dev or default) == dev and vip.address == addr:
                return vip.label, vip.scope
        return None, "global"

    def _routes(self, cfg: VrrpInstanceConfig | None = None) -> list[RouteSpec]:
        cfg = cfg or self.cfg
        default = cfg.use_vmac or cfg.interface
        return [RouteSpec.from_fields(r, default_dev=default) for r in cfg.routes]

    def _queue(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run address work in order, after whatever was queued before it."""
        previous = self._ops

        async def chained() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await previous
            await coro

        self._ops = self.loop.create_task(chained())
        self._ops.add_done_callback(self._op_done)

    def _op_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("(%s) address change failed: %s", self.name, task.exception())
        self.pulse.fire()

    def _add_vips(self, addrs: list[tuple[str, IPInterface]], routes: list[RouteSpec]) -> None:
        """Add VIPs at once if no address work is queued before them, else in turn.

        At once is the failover path: the advert has just gone out, and the GARP/NA that
        follows can only draw traffic here once the VIPs are in the kernel.
        """
        if self._ops is not None and not self._ops.done():
            self._queue(self._add_addresses(addrs, routes))
            return
        self._record_added(addrs, routes)
        self._add_vips_now(addrs)
        if routes:
            self._queue(self._add_routes(routes))

    async def _add_addresses(
        self, addrs: list[tuple[str, IPInterface]], routes: list[RouteSpec] | None = None
    ) -> None:
        routes = routes or []
        self._record_added(addrs, routes)
        self._add_vips_now(addrs)
        await self._add_routes(routes)

    def _record_added(self, addrs: list[tuple[str, IPInterface]], routes: list[RouteSpec]) -> None:
        """Journal what is about to be added, so a successor can clean up after a crash."""
        if not addrs and not routes:
            return
        journal = self.owner.journal
        entry = journal.entries.get(self.name) or JournalEntry()
        new_addrs = [a for a in addrs if a not in entry.addresses]
        new_routes = [r for r in routes if r not in entry.routes]
        if not new_addrs and not new_routes and self.name in journal.entries:
            return  # all there already: usually so, since start() records every VIP
        entry.addresses.extend(dict.fromkeys(new_addrs))
        entry.routes.extend(dict.fromkeys(new_routes))
        journal.record(self.name, entry)

    def _journal_first(self, what: str) -> bool:
        """Journal first: True once the journal on disk names what is about to be added.

        Else nothing is added: a crash would leave it in the kernel with no record for
        the successor to clean up. The instance then gives up mastership (FAULT
        "journal", from the next loop turn so this turn's transition is published first)
        and the subsystem retries the journal until it can be written.
        """
        journal = self.owner.journal
        if journal.flush():
            return True
        reason = (
            f"cannot record {what} in the state journal ({journal.error}); not adding "
            "them, released mastership until the journal can be written"
        )
        if not self._journal_blocked:
            self._journal_blocked = True
            self.owner.publish("journal_failed", self.name, reason, error=journal.error)
            self.loop.call_soon(self._journal_fault, reason)
        return False

    def _journal_fault(self, reason: str) -> None:
        if self.sock is None and self.machine.state is VrrpState.STOPPED:
            return  # stopped meanwhile
        self.set_fault("journal", reason)
        self.owner.journal_retry()

    def _add_vips_now(self, addrs: list[tuple[str, IPInterface]]) -> None:
        if addrs and not self._journal_first("the VIPs"):
            return
        nl = self.owner.nl
        for dev, addr in addrs:
            label, scope = self._vip_attributes(dev, addr)
            try:
                nl.add_address_now(dev, addr, label=label, scope=scope)
            except (NetlinkFailure, ValueError) as exc:
                self.owner.publish(
                    "vip_error",
                    self.name,
                    f"cannot add VIP {addr} to {dev}: {exc}",
                    address=str(addr),
                    dev=dev,
                )

    async def _add_routes(self, routes: list[RouteSpec]) -> None:
        if routes and not self._journal_first("the routes"):
            return
        nl = self.owner.nl
        for route in routes:
            try:
                await nl.add_route(route, replace=True)
            except NetlinkFailure as exc:
                self.owner.publish(
                    "route_error",
                    self.name,
                    f"cannot add route {route}: {exc}",
                    route=str(route),
                )

    async def _remove_addresses(
        self,
        addrs: list[tuple[str, IPInterface]],
        routes: list[RouteSpec] | None = None,
        *,
        forget: bool = True,
    ) -> None:
        """Remove VIPs and routes; ``forget`` drops them from the journal afterwards.

        An instance that stays configured keeps its VIPs in the journal (``forget=False``)
        so the next takeover does not have to write it first.
        """
        routes = routes or []
        nl = self.owner.nl
        for route in routes:
            try:
                await nl.del_route(route)
            except NetlinkFailure as exc:
                log.warning("(%s) cannot remove route %s: %s", self.name, route, exc)
        for dev, addr in addrs:
            try:
                await nl.del_address(dev, addr)
            except NetlinkFailure as exc:
                log.warning("(%s) cannot remove VIP %s from %s: %s", self.name, addr, dev, exc)
        if forget:
            self._journal_drop(addrs, routes)

    def _journal_drop(self, addrs: list[tuple[str, IPInterface]], routes: list[RouteSpec]) -> None:
        journal = self.owner.journal
        entry = journal.entries.get(self.name)
        if entry is None or not (
            any(a in entry.addresses for a in addrs) or any(r in entry.routes for r in routes)
        ):
            return
        entry.addresses = [a for a in entry.addresses if a not in addrs]
        entry.routes = [r for r in entry.routes if r not in routes]
        if entry.addresses or entry.routes:
            journal.record(self.name, entry)
        else:
            journal.forget(self.name)

    # ------------------------------------------------------------ GARP / NA

    def _schedule_garp(self, kind: GarpKind, late: float = 0.0) -> None:
        garp = self.cfg.garp
        addrs = [addr.ip for _, addr in self._owned_addresses()]
        if kind is GarpKind.STALLED:
            # Announce as on becoming master: a backup may have drawn the clients away.
            self.owner.publish(
                "vrrp_stalled",
                self.name,
                f"advert went out {late:.2f}s late (the agent was stopped or starved); "
                "announcing the VIPs again in case a backup took over meanwhile",
                late=round(late, 3),
            )
        if kind is GarpKind.LOWER_PRIORITY:
            # As keepalived: a burst now (the other master may have drawn traffic away),
            # and another lower_prio_delay later if that is set. And one LOWER_PRIO_SETTLE
            # later: a peer that was master for a moment sends its own GARP/NA a
            # millisecond or two after its advert, often after our answer's burst; once it
            # has heard our advert it steps back and sends no more, so this one is last.
            if garp.lower_prio_repeat > 0:
                self._garp_task(self._garp_burst(addrs, garp.lower_prio_repeat))
                self._garp_task(self._garp_later(LOWER_PRIO_SETTLE, addrs, garp.lower_prio_repeat))
                if garp.lower_prio_delay > 0:
                    self._garp_task(
                        self._garp_later(garp.lower_prio_delay, addrs, garp.lower_prio_repeat)
                    )
            return
        if self._ops is None or self._ops.done():
            # The VIPs went in just now (_add_vips): announce them in the same breath.
            self._garp_now(addrs, garp.master_repeat)
        else:
            # The VIPs are being added by the ordered address queue: announce after them.
            self._queue(self._garp_burst(addrs, garp.master_repeat))
        if kind in (GarpKind.STALLED, GarpKind.REANNOUNCE):
            self._garp_task(self._garp_later(LOWER_PRIO_SETTLE, addrs, garp.master_repeat))
        if garp.master_delay > 0:
            self._garp_task(self._garp_later(garp.master_delay, addrs, garp.master_repeat))
        if garp.master_refresh > 0:
            self._garp_task(self._garp_refresh(addrs))

    def reannounce(self, why: str, cause: str) -> None:
        """A master that learns a backup may have taken over without its knowing (its
        adverts could not go out, or its fast_takeover_bfd session was Down) announces
        its VIPs again, as after a stall: that backup steps back silently on our next
        advert, and clients it drew to its MAC would stay there until their neighbour
        entries go stale (seconds)."""
        if (
            self.machine.state is not VrrpState.MASTER
            or self._vips_deferred
            or self._journal_blocked
        ):
            return
        self.owner.publish(
            "vrrp_reannounce",
            self.name,
            f"{why}; announcing the VIPs again in case a backup took over meanwhile",
            cause=cause,
        )
        self._schedule_garp(GarpKind.REANNOUNCE)

    def _garp_task(self, coro: Coroutine[Any, Any, object]) -> None:
        task = self.loop.create_task(coro)
        self._garp_tasks.add(task)
        task.add_done_callback(self._garp_tasks.discard)

    async def _garp_burst(self, addrs: list[IPAddress], count: int) -> None:
        if self.machine.state is not VrrpState.MASTER:
            return
        await self._until_ready(addrs)
        if self.machine.state is not VrrpState.MASTER:
            return
        await self._announce(addrs, count)

    def _unready(self, addrs: list[IPAddress]) -> list[IPAddress]:
        """IPv6 VIPs among ``addrs`` the kernel has not reported yet (see V6_READY_MAX)."""
        present = self.owner.kernel_addresses
        return [
            addr.ip
            for dev, addr in self._owned_addresses()
            if addr.version == 6 and addr.ip in addrs and (dev, addr) not in present
        ]

    async def _until_ready(self, addrs: list[IPAddress]) -> None:
        """Wait (bounded) until the kernel has reported every IPv6 VIP in ``addrs``."""
        if not self._unready(addrs):
            return
        t0 = self.now()
        deadline = t0 + V6_READY_MAX
        while (pending := self._unready(addrs)) and self.now() < deadline:
            await self.pulse.next(deadline - self.now())
        if pending:
            log.warning(
                "(%s) the kernel has not reported %s after %.1fs; announcing anyway",
                self.name,
                ", ".join(map(str, pending)),
                V6_READY_MAX,
            )
        else:
            log.debug("(%s) IPv6 VIPs usable after %.1f ms", self.name, 1e3 * (self.now() - t0))

    def _garp_now(self, addrs: list[IPAddress], count: int) -> None:
        """A master burst whose first round goes out now and the rest from a task.

        IPv6 VIPs the kernel has not reported yet are announced from the task, once it has.
        """
        if self.machine.state is not VrrpState.MASTER or count < 1 or not addrs:
            return
        later = self._unready(addrs)
        if later:
            self._garp_task(self._garp_burst(later, count))
            addrs = [a for a in addrs if a not in later]
            if not addrs:
                return
        rest: dict[str, int] = {}
        for dev, vips, mac in self._garp_targets(addrs):
            try:
                done, _sent, over = self.owner.garp.send_head(
                    dev, vips, count=count, interval=self.cfg.garp.interval, mac=mac
                )
            except (OSError, ValueError) as exc:
                log.warning("(%s) gratuitous ARP/NA on %s failed: %s", self.name, dev, exc)
                continue
            if not over:
                rest[dev] = done
        if rest:
            self._garp_task(self._announce(addrs, count, skip=rest))

    def _garp_targets(
        self, addrs: list[IPAddress]
    ) -> list[tuple[str, list[IPAddress], str | None]]:
        """(device, its VIPs among ``addrs``, source MAC or None for the device's own)."""
        by_dev: dict[str, list[IPAddress]] = {}
        default = self.cfg.use_vmac or self.cfg.interface
        for vip in (*self.cfg.vips, *self.cfg.excluded_vips):
            if vip.address.ip in addrs:
                by_dev.setdefault(vip.dev or default, []).append(vip.address.ip)
        mac = self._vmac.mac if self._vmac is not None else None
        return [(dev, vips, mac if dev == self.ifname else None) for dev, vips in by_dev.items()]

    async def _announce(
        self, addrs: list[IPAddress], count: int, *, skip: dict[str, int] | None = None
    ) -> int:
        """GARP/NA for ``addrs`` on their devices, whatever the state; frames sent.

        With ``skip``, only those devices, leaving out the frames :meth:`_garp_now` sent.
        """
        if count < 1 or not addrs:
            return 0
        await self._until_ready(addrs)
        sent = 0
        for dev, vips, mac in self._garp_targets(addrs):
            if skip is not None and dev not in skip:
                continue
            try:
                sent += await self.owner.garp.send_burst(
                    dev,
                    vips,
                    count=count,
                    interval=self.cfg.garp.interval,
                    mac=mac,
                    skip=skip.get(dev, 0) if skip is not None else 0,
                )
            except (OSError, ValueError) as exc:
                log.warning("(%s) gratuitous ARP/NA on %s failed: %s", self.name, dev, exc)
        return sent

    async def _garp_later(self, delay: float, addrs: list[IPAddress], count: int) -> None:
        await asyncio.sleep(delay)
        await self._garp_burst(addrs, count)

    async def _garp_refresh(self, addrs: list[IPAddress]) -> None:
        # Settings and addresses are read each round: a reload may have changed them.
        # One loop per instance: a reload that turns the refresh on starts one if none runs.
        if self._garp_refreshing:
            return
        self._garp_refreshing = True
        try:
            while self.machine.state is VrrpState.MASTER and self.cfg.garp.master_refresh > 0:
                await asyncio.sleep(self.cfg.garp.master_refresh)
                addrs = [a.ip for _, a in self._owned_addresses()]
                await self._garp_burst(addrs, self.cfg.garp.master_refresh_repeat)
        finally:
            self._garp_refreshing = False
