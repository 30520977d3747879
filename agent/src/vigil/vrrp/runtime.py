"""The VRRP subsystem: binds pure state machines to sockets, netlink and the agent.

This is the adapter around :mod:`vigil.vrrp.machine` (the protocol logic) and
:mod:`vigil.vrrp.packet` (the codec). It owns:

- one :class:`InstanceRuntime` per configured instance: its machine, its share of the
  per-(family, interface) raw socket, its timer, its VIPs and routes;
- one netlink connection for address/route changes and one monitor of link and address
  events (interface down -> FAULT, a VIP deleted by someone else while master -> put
  back, an interface that disappears and comes back -> socket reopened);
- the state journal (:mod:`vigil.vrrp.journal`) so a successor can clean up after a crash.

Timing rules: the machine's clock is the event loop's monotonic clock; the timer is one
``call_at`` re-armed after every input. Adverts are sent synchronously from the timer or
receive callback, so nothing slow (netlink, GARP bursts, later scripts) can delay them:
address changes run as ordered background tasks per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.net.garp import GarpSender
from vigil.net.netlink import (
    AddrEvent,
    IPInterface,
    LinkEvent,
    Netlink,
    NetlinkEvent,
    NetlinkFailure,
    Resync,
    RouteSpec,
)
from vigil.net.transport import RawReceived, SocketRegistry, VrrpSocket
from vigil.net.vmac import VmacManager, VmacSpec
from vigil.timerfd import PreciseTimer
from vigil.vrrp import packet as codec
from vigil.vrrp.control import ControlManager
from vigil.vrrp.journal import Journal, JournalEntry
from vigil.vrrp.machine import (
    AddVips,
    GarpKind,
    LearnedInterval,
    MachineParams,
    RemoveVips,
    SendAdvert,
    SendGratuitous,
    Transition,
    VrrpMachine,
    VrrpState,
)
from vigil.vrrp.notify import NotifyManager
from vigil.vrrp.reload import plan_reload
from vigil.vrrp.syncgroup import SyncGroupManager
from vigil.vrrp.tracking import InstanceTracking

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.metrics_core import Metric

    from vigil.subsystem import SubsystemContext
    from vigil.vrrp.config import VrrpConfig, VrrpDiff, VrrpInstanceConfig

log = logging.getLogger("vigil.vrrp")

IPAddress = IPv4Address | IPv6Address

# A burst of rejected packets is logged once, then summarised at most this often.
REJECT_LOG_INTERVAL = 10.0
# Rejections that are routine (our own adverts seen again): counted, never logged.
QUIET_REASONS = frozenset({"own"})


def _machine_params(cfg: VrrpInstanceConfig, primary: IPAddress | None) -> MachineParams:
    return MachineParams(
        name=cfg.name,
        vrid=cfg.vrid,
        version=cfg.version,
        base_priority=cfg.priority,
        advert_interval=cfg.advert_interval,
        preempt=cfg.preempt,
        preempt_delay=cfg.preempt_delay,
        address_owner=cfg.address_owner,
        primary_address=primary,
    )


def _clock_order(actions: Iterable[Any]) -> list[Any]:
    """Becoming master is on the clock: the advert, the VIPs and the first GARP/NA go out
    before the transition's log line, event and hooks (notify scripts, sync group)."""
    return sorted(actions, key=lambda a: isinstance(a, Transition) and a.new is VrrpState.MASTER)


def _promote_secondaries(dev: str, value: str | None = None) -> str | None:
    """Read (and with ``value`` set) net.ipv4.conf.DEV.promote_secondaries of our netns.

    Returns the value before, or None when it cannot be read (no such device).
    """
    path = Path("/proc/sys/net/ipv4/conf") / dev / "promote_secondaries"
    try:
        before = path.read_text().strip()
        if value is not None and before != value:
            path.write_text(value)
    except OSError as exc:
        log.warning("cannot read/set promote_secondaries on %s: %s", dev, exc)
        return None
    return before


class _RejectLog:
    """Counts rejected packets per reason and logs the first of a burst, then summaries."""

    def __init__(self, name: str, publish: Callable[..., Any]) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self._publish = publish
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def add(self, reason: str, detail: str, now: float) -> None:
        self.counts[reason] += 1
        if reason in QUIET_REASONS:
            return
        last = self._last_logged.get(reason)
        if last is not None and now - last < REJECT_LOG_INTERVAL:
            self._suppressed[reason] += 1
            return
        more = self._suppressed.pop(reason, 0)
        suffix = f" ({more} more since the last report)" if more else ""
        self._last_logged[reason] = now
        self._publish(
            "vrrp_rejected",
            self.name,
            f"rejected advert ({reason}): {detail}{suffix}",
            reason=reason,
            suppressed=more,
        )


class InstanceRuntime:
    """One VRRP instance: machine + socket + timer + addresses."""

    def __init__(self, cfg: VrrpInstanceConfig, owner: VrrpSubsystem) -> None:
        self.cfg = cfg
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        self.ifname = cfg.use_vmac or cfg.interface  # where adverts and VIPs live
        self.machine = VrrpMachine(_machine_params(cfg, None))
        self.sock: VrrpSocket | None = None
        self.rejects = _RejectLog(cfg.name, owner.publish)
        # Why this instance must be in FAULT, by source ("link", "script:chk", ...).
        self.faults: dict[str, str] = {}
        # Priority contributions by source (tracker weights); see effective_priority().
        self.priority_deltas: dict[str, int] = {}
        self.priority_override: int | None = None
        self._timer: PreciseTimer | None = None  # the machine's next deadline
        self._ops: asyncio.Task[None] | None = None  # tail of the ordered address ops
        self._garp_tasks: set[asyncio.Task[object]] = set()
        self._garp_refreshing = False  # a _garp_refresh loop runs
        self._vmac: VmacSpec | None = None
        # Built adverts by (priority, source, destination); they only change with the
        # config or the source, so a master builds each once instead of every interval.
        self._adverts: dict[tuple[int, IPAddress, IPAddress], bytes] = {}
        # The last advert that passed every check, by RawReceived.decode_key: a backup
        # hears the same bytes from its master every interval and need not decode them
        # again. Only accepted adverts are kept, so a rejection is counted every time.
        self._accepted: tuple[object, codec.Received] | None = None
        self._set_expectation(None)
        self._source: IPAddress | None = None
        # Runtime control (vigil.vrrp.control): why the VIPs are kept in the kernel while
        # not master (make-before-break handover / takeover), else None.
        self.vips_kept: str | None = None
        self._keep_vips_once = False

    # ------------------------------------------------------------ set-up / tear-down

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def vmac(self) -> VmacSpec | None:
        """The instance's macvlan (use_vmac), once it started; None without one."""
        return self._vmac

    @property
    def family(self) -> int:
        return self.cfg.family

    def now(self) -> float:
        return self.loop.time()

    async def start(self) -> None:
        if self.cfg.use_vmac:
            self._vmac = VmacSpec(
                name=self.cfg.use_vmac,
                parent=self.cfg.interface,
                vrid=self.cfg.vrid,
                family=4 if self.family == 4 else 6,
            )
            try:
                await self.owner.vmacs.ensure(self._vmac)
            except (NetlinkFailure, OSError, ValueError) as exc:
                log.error("(%s) cannot set up VMAC %s: %s", self.name, self.cfg.use_vmac, exc)
        self.sock = self.owner.sockets.acquire(self.family, self.ifname)
        if self.cfg.use_vmac:
            # keepalived sends a VMAC instance's adverts from the parent's address.
            self.sock.source_interface = self.cfg.interface
        self.sock.register(self.cfg.vrid, self._on_datagram)
        self._mark_vips_not_sources()
        await self.refresh_source()
        # Journal the VIPs now, not when they are added: the write (a quarter of a
        # millisecond and more) stays off the path from Master_Down to the first GARP/NA.
        self._record_added(self._owned_addresses(), self._routes())
        self._run(self.machine.start(self.now()))
        self._apply_priority()
        problem = await self.owner.link_problem(self.cfg.interface)
        if problem is not None:
            self.set_fault("link", problem)

    async def stop(self, reason: str = "agent stopping") -> None:
        """Clean stop: priority 0 if master, then VIPs removed, socket released."""
        self._run(self.machine.stop(self.now(), reason))
        self._cancel_timer()
        for task in list(self._garp_tasks):
            task.cancel()
        await self.drain_ops()
        # Stopped: nothing of this instance is in the kernel any more.
        self.owner.journal.forget(self.name)
        if self.sock is not None:
            self.sock.unregister(self.cfg.vrid)
            self.sock.not_sources.difference_update(self._vip_ips())
            self.owner.sockets.release(self.sock)
            self.sock = None
        if self._vmac is not None:
            with contextlib.suppress(NetlinkFailure, OSError):
                await self.owner.vmacs.remove(self._vmac)

    def _vip_ips(self) -> set[IPAddress]:
        return {vip.address.ip for vip in (*self.cfg.vips, *self.cfg.excluded_vips)}

    def _mark_vips_not_sources(self) -> None:
        """Our VIPs must never become the advert source (a link-local IPv6 VIP would)."""
        if self.sock is not None:
            self.sock.not_sources.update(self._vip_ips())
            self.sock.refresh_source()

    async def drain_ops(self) -> None:
        while self._ops is not None and not self._ops.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._ops)

    # ------------------------------------------------------------ inputs

    def _on_datagram(self, raw: RawReceived) -> None:
        now = self.now()
        key = raw.decode_key
        accepted = self._accepted
        if accepted is not None and accepted[0] == key:
            result = accepted[1]  # the same bytes as the last advert we accepted
        else:
            checked = self._check(raw, now)
            if checked is None:
                return
            result = checked
        pkt = result.packet
        self._run(self.machine.advert_received(now, result.src, pkt.priority, pkt.interval_seconds))

    def _check(self, raw: RawReceived, now: float) -> codec.Received | None:
        """Decode and validate an advert; None (counted and logged) if it is rejected."""
        # Unicast peers may be routed, so their TTL is not 255 (keepalived skips it too).
        result = codec.decode_raw(raw, check_ttl=self.cfg.unicast is None)
        if isinstance(result, codec.Rejection):
            self.rejects.add(result.reason.name.lower(), result.detail, now)
            return None
        if self.cfg.unicast is not None and result.src not in self.cfg.unicast.peers:
            self.rejects.add(
                "unknown_peer",
                f"advert from {result.src} is not from a configured unicast peer "
                f"({', '.join(map(str, self.cfg.unicast.peers))}); ignored",
                now,
            )
            return None
        if self.cfg.version == 3 and self.family == 4:
            mode = codec.check_checksum_mode(
                result, pseudo_header=self.cfg.v3_checksum_pseudo_header
            )
            if mode is not None:
                self.rejects.add(mode.reason.name.lower(), mode.detail, now)
                return None
        rejection = codec.check_for_instance(result, self._expect)
        if rejection is None:
            self._accepted = (raw.decode_key, result)
            return result
        self.rejects.add(rejection.reason.name.lower(), rejection.detail, now)
        return None if rejection.drop else result

    def _on_timer(self) -> None:
        self._run(self.machine.timer_expired(self.now()))

    def link_changed(self, problem: str | None) -> None:
        """The owner saw our interface change; ``problem`` None means usable again."""
        if problem is None:
            self.clear_fault("link", f"interface {self.cfg.interface} is up again")
        else:
            self.set_fault("link", problem)

    # ------------------------------------------------------------ faults and priority

    @property
    def link_fault(self) -> str | None:
        return self.faults.get("link")

    def set_fault(self, source: str, reason: str) -> None:
        """A source (link, tracker) demands FAULT; the first one moves the machine."""
        first = not self.faults
        self.faults[source] = reason
        if first:
            self._run(self.machine.fault(self.now(), reason))
        self.owner.faults_changed(self)

    def clear_fault(self, source: str, reason: str) -> None:
        """A source no longer demands FAULT; the last one to clear recovers the machine."""
        if self.faults.pop(source, None) is None:
            return
        if not self.faults:
            self._run(self.machine.recover(self.now(), reason))
        self.owner.faults_changed(self)

    def set_priority_delta(self, source: str, delta: int) -> None:
        """A tracker's weight contribution (0 removes it); applied at once."""
        if delta:
            self.priority_deltas[source] = delta
        else:
            self.priority_deltas.pop(source, None)
        self._apply_priority()

    def set_priority_override(self, value: int | None) -> None:
        """A runtime override of the effective priority (None: back to base + trackers)."""
        self.priority_override = value
        self._apply_priority()

    def wanted_priority(self) -> int:
        """Base priority plus tracker weights, or the override; the machine clamps it."""
        if self.priority_override is not None:
            return self.priority_override
        return self.cfg.priority + sum(self.priority_deltas.values())

    def _apply_priority(self, before: int | None = None) -> None:
        """Push wanted_priority() to the machine; ``before`` is the value to compare with
        for the event when the caller already changed it (a reload's new base priority)."""
        if before is None:
            before = self.machine.effective_priority
        self._run(self.machine.set_effective_priority(self.now(), self.wanted_priority()))
        after = self.machine.effective_priority
        if after != before and self.machine.state is not VrrpState.INIT:
            self.owner.publish(
                "vrrp_priority",
                self.name,
                f"effective priority {before} -> {after}",
                old=before,
                new=after,
                deltas=dict(self.priority_deltas),
                override=self.priority_override,
            )

    async def address_removed(self, ev: AddrEvent) -> None:
        """Someone removed an address; put back a VIP we own while master."""
        if self.machine.state is not VrrpState.MASTER:
            return
        for dev, addr in self._owned_addresses():
            if dev == ev.ifname and addr == ev.address:
                self.owner.publish(
                    "vip_restored",
                    self.name,
                    f"VIP {addr} was removed from {dev} by someone else; restoring it",
                    address=str(addr),
                    dev=dev,
                )
                self._queue(self._add_addresses([(dev, addr)]))

    async def refresh_source(self) -> None:
        """Learn this node's advert source (for ties and own-packet checks)."""
        if self.cfg.unicast is not None and self.cfg.unicast.source is not None:
            source: IPAddress | None = self.cfg.unicast.source
        elif self.sock is not None:
            self.sock.refresh_source()
            source = self.sock.default_source()
        else:
            source = None
        if source != self._source:
            self._source = source
            self._set_expectation(source)
            params = _machine_params(self.cfg, source)
            self._run(self.machine.params_changed(self.now(), params))

    def _set_expectation(self, source: IPAddress | None) -> None:
        """The config or our source changed: what we accept and what we send with it."""
        self._expect = self._expectation(source)
        self._adverts.clear()
        self._accepted = None

    def _expectation(self, source: IPAddress | None) -> codec.InstanceExpectation:
        cfg = self.cfg
        auth = cfg.authentication
        return codec.InstanceExpectation(
            version=cfg.version,
            vrid=cfg.vrid,
            adver_int=codec.interval_to_wire(cfg.version, cfg.advert_interval),
            auth_type=codec.VrrpPacket.AUTH_PASS if auth is not None else 0,
            auth_data=auth.password.encode() if auth is not None else b"",
            addresses=tuple(vip.address.ip for vip in cfg.vips),
            own_addresses=frozenset() if source is None else frozenset({source}),
        )

    # ------------------------------------------------------------ reload

    def update(self, cfg: VrrpInstanceConfig) -> None:
        """Apply a changed config in place (same identity): no transition unless needed.

        The timer is only re-armed, never restarted, so the next advert goes out on time.
        The effective priority is recomputed from the new base priority plus the tracker
        weights (or the runtime override, which survives reloads), and a change of it is
        published like any other priority change. A master adds and removes only the VIPs
        and routes that differ; the ones in both configs are never touched.
        """
        old = self.cfg
        before = self.machine.effective_priority
        if self.sock is not None:
            self.sock.not_sources.difference_update(self._vip_ips())
        self.cfg = cfg
        self._mark_vips_not_sources()
        self._set_expectation(self._source)
        self._run(self.machine.params_changed(self.now(), _machine_params(cfg, self._source)))
        self._apply_priority(before)
        self._record_added(self._owned_addresses(cfg), self._routes(cfg))
        if self.machine.state is not VrrpState.MASTER and self.vips_kept is None:
            # Not in the kernel: VIPs and routes the new config dropped leave the journal.
            self._journal_drop(
                [a for a in self._owned_addresses(old) if a not in self._owned_addresses(cfg)],
                [r for r in self._routes(old) if r not in self._routes(cfg)],
            )
        if self.machine.state is VrrpState.MASTER:
            old_addrs = set(self._owned_addresses(old))
            new_addrs = set(self._owned_addresses(cfg))
            gone = [a for a in self._owned_addresses(old) if a not in new_addrs]
            added = [a for a in self._owned_addresses(cfg) if a not in old_addrs]
            old_routes = set(self._routes(old))
            new_routes = self._routes(cfg)
            if gone or old_routes - set(new_routes):
                self._queue(
                    self._remove_keeping_secondaries(
                        gone, [r for r in old_routes if r not in new_routes]
                    )
                )
            if added or set(new_routes) - old_routes:
                self._queue(
                    self._add_addresses(added, [r for r in new_routes if r not in old_routes])
                )
                if added:
                    self._queue(self._garp_burst([a.ip for _, a in added], cfg.garp.master_repeat))
            if cfg.garp.master_refresh > 0 and not self._garp_refreshing:
                self._garp_task(self._garp_refresh([]))

    async def _remove_keeping_secondaries(
        self, gone: list[tuple[str, IPInterface]], routes: list[RouteSpec]
    ) -> None:
        """Remove some VIPs on reload without taking the kept ones with them.

        Deleting the kernel's primary IPv4 address of a subnet deletes that subnet's
        secondaries too, unless ``promote_secondaries`` is set on the device: a VIP in a
        subnet the interface has no address in would vanish with its removed neighbour.
        So around the removal the sysctl is 1 where that can happen, then as it was.
        """
        present = self.owner.kernel_addresses
        devs = {
            dev
            for dev, addr in gone
            if addr.version == 4
            and any(
                d == dev and a != addr and a.version == 4 and a.ip in addr.network
                for d, a in present
            )
        }
        saved = {dev: _promote_secondaries(dev, "1") for dev in sorted(devs)}
        try:
            await self._remove_addresses(gone, routes)
        finally:
            for dev, before in saved.items():
                if before is not None and before != "1":
                    _promote_secondaries(dev, before)

    # ------------------------------------------------------------ actions

    def _run(self, actions: list[Any]) -> None:
        for action in _clock_order(actions) if len(actions) > 1 else actions:
            if isinstance(action, SendAdvert):
                self._send_advert(action.priority)
            elif isinstance(action, Transition):
                self.owner.transition(self, action)
                if self.vips_kept and action.new in (VrrpState.FAULT, VrrpState.STOPPED):
                    self.withdraw_vips()
            elif isinstance(action, AddVips):
                self.vips_kept = None
                self._add_vips(self._owned_addresses(), self._routes())
            elif isinstance(action, RemoveVips):
                if self._keep_vips_once:
                    self.vips_kept = "handover"
                else:
                    self._queue(
                        self._remove_addresses(
                            self._owned_addresses(),
                            self._routes(),
                            forget=self.machine.state is VrrpState.STOPPED,
                        )
                    )
                for task in list(self._garp_tasks):
                    task.cancel()
            elif isinstance(action, SendGratuitous):
                self._schedule_garp(action.kind)
            elif isinstance(action, LearnedInterval):
                self.owner.publish(
                    "vrrp_interval_learned",
                    self.name,
                    f"master advertises every {action.interval:g}s "
                    f"(was {action.previous:g}s); adopted",
                    interval=action.interval,
                    previous=action.previous,
                )
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.machine.next_deadline()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
            return
        if self._timer is None:
            # Not a bare call_at: asyncio wakes up to 1 ms after a deadline, which a
            # Master_Down expiry would add to every failover (vigil.timerfd).
            self._timer = PreciseTimer(self.loop, self._on_timer, on_lead=self._prepare_takeover)
        # Master_Down and the other backup-side deadlines decide a failover: to the
        # microsecond. A master's next advert can be a millisecond late.
        self._timer.arm(deadline, precise=self.machine.state is not VrrpState.MASTER)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def _send_advert(self, priority: int) -> None:
        sock = self.sock
        if sock is None:
            return
        sock.send(self._advert_builder(priority), *self._advert_route())

    def _advert_route(self) -> tuple[list[IPAddress] | None, IPAddress | None]:
        """(destinations, source) of adverts: the unicast peers and source, or (None,
        None) for the VRRP group from the interface's own address."""
        unicast = self.cfg.unicast
        if unicast is None:
            return None, None
        return list(unicast.peers), unicast.source

    def _advert_builder(self, priority: int) -> Callable[[IPAddress, IPAddress], bytes]:
        """Adverts by (source, destination) for ``priority``, built once and cached."""
        cache = self._adverts

        def build(src: IPAddress, dst: IPAddress) -> bytes:
            key = (priority, src, dst)
            data = cache.get(key)
            if data is None:
                if len(cache) > 64:  # sources and priorities come and go: stay small
                    cache.clear()
                data = cache[key] = self._build_advert(priority, src, dst)
            return data

        return build

    def _prepare_takeover(self) -> None:
        """A backup's deadline is a few milliseconds away (the timer's lead): get ready.

        If it makes us master, the first advert, the VIPs and their GARP/NA are on the
        clock. Finding the advert's source, building the advert, checking each VIP's
        arguments and packing its netlink request, reading the MAC and building the
        frames cost more than sending all of them, so they are done now and the
        takeover only sends. Nothing here changes state; if the deadline moves on, the
        prepared requests and frames expire unused.
        """
        if self.machine.state is not VrrpState.BACKUP or self.sock is None:
            return
        self.sock.prepare(
            self._advert_builder(self.machine.effective_priority), *self._advert_route()
        )
        owned = self._owned_addresses()
        for dev, addr in owned:
            label, scope = self._vip_attributes(dev, addr)
            self.owner.nl.prepare_address(dev, addr, label=label, scope=scope)
        addrs = [addr.ip for _, addr in owned]
        for dev, vips, mac in self._garp_targets(addrs):
            try:
                self.owner.garp.prepare(dev, vips, mac)
            except ValueError as exc:
                log.debug("(%s) cannot prepare GARP/NA on %s: %s", self.name, dev, exc)

    def _build_advert(self, priority: int, src: IPAddress, dst: IPAddress) -> bytes:
        cfg = self.cfg
        auth = cfg.authentication
        fields: dict[str, Any] = {
            "version": cfg.version,
            "vrid": cfg.vrid,
            "priority": priority,
            "adver_int": codec.interval_to_wire(cfg.version, cfg.advert_interval),
            "addresses": self._expect.addresses,
            "pseudo_header": cfg.v3_checksum_pseudo_header,
        }
        if auth is not None:
            fields["auth_type"] = codec.VrrpPacket.AUTH_PASS
            fields["auth_data"] = codec.pass_auth_data(auth.password)
        return codec.build_advert(src=src, dst=dst, **fields)

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

    def _add_vips_now(self, addrs: list[tuple[str, IPInterface]]) -> None:
        self.owner.journal.flush()  # the journal names them before the kernel has them
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
        self.owner.journal.flush()  # the journal names them before the kernel has them
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

    def _schedule_garp(self, kind: GarpKind) -> None:
        garp = self.cfg.garp
        addrs = [addr.ip for _, addr in self._owned_addresses()]
        if kind is GarpKind.LOWER_PRIORITY:
            # As keepalived: a burst now (the other master may have drawn traffic away),
            # and another lower_prio_delay later if that is set.
            if garp.lower_prio_repeat > 0:
                self._garp_task(self._garp_burst(addrs, garp.lower_prio_repeat))
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
        if garp.master_delay > 0:
            self._garp_task(self._garp_later(garp.master_delay, addrs, garp.master_repeat))
        if garp.master_refresh > 0:
            self._garp_task(self._garp_refresh(addrs))

    def _garp_task(self, coro: Coroutine[Any, Any, object]) -> None:
        task = self.loop.create_task(coro)
        self._garp_tasks.add(task)
        task.add_done_callback(self._garp_tasks.discard)

    async def _garp_burst(self, addrs: list[IPAddress], count: int) -> None:
        if self.machine.state is not VrrpState.MASTER:
            return
        await self._announce(addrs, count)

    def _garp_now(self, addrs: list[IPAddress], count: int) -> None:
        """A master burst whose first round goes out now and the rest from a task."""
        if self.machine.state is not VrrpState.MASTER or count < 1 or not addrs:
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

    # ------------------------------------------------------------ runtime control

    @property
    def source_address(self) -> IPAddress | None:
        """This node's advert source (what peers see as master_address when we lead)."""
        return self._source

    def vip_presence(self) -> list[tuple[str, bool]]:
        """Every VIP and excluded VIP (as ``addr/len``) and whether it is in the kernel."""
        present = self.owner.kernel_addresses
        return [(str(addr), (dev, addr) in present) for dev, addr in self._owned_addresses()]

    def force_backup(self, reason: str, *, hold_until: float | None, keep_vips: bool) -> None:
        """Leave MASTER on request, sending priority 0 (see VrrpMachine.force_backup).

        ``keep_vips`` makes it make-before-break: the VIPs stay in the kernel (and keep
        answering) until :meth:`withdraw_vips`, which the caller runs once it saw the new
        master's advert. Leaving for FAULT or STOPPED meanwhile withdraws them at once.
        """
        self._keep_vips_once = keep_vips
        try:
            self._run(
                self.machine.force_backup(self.now(), reason, release=True, hold_until=hold_until)
            )
        finally:
            self._keep_vips_once = False

    def force_master(self, reason: str) -> None:
        """BACKUP -> MASTER on request (takeover, handover roll-back)."""
        self._run(self.machine.force_master(self.now(), reason))

    def peer_down(self, reason: str, peer: IPAddress | None) -> None:
        """Fast peer detection: the master's BFD session went Down (VrrpMachine.peer_down)."""
        self._run(self.machine.peer_down(self.now(), reason, peer=peer))

    def release_hold(self) -> None:
        """End a preemption hold (handover, maintenance); normal preemption applies."""
        self._run(self.machine.release_hold(self.now()))

    def withdraw_vips(self) -> None:
        """Remove VIPs kept by a make-before-break step (no-op if none are kept)."""
        if self.vips_kept is None or self.machine.state is VrrpState.MASTER:
            self.vips_kept = None
            return
        self.vips_kept = None
        self._queue(self._remove_addresses(self._owned_addresses(), self._routes(), forget=False))

    async def claim_vips(self, reason: str) -> int:
        """Add the VIPs now, while still BACKUP, and announce them (takeover's first step).

        Clients move to this node while the old master still answers, so nothing is lost
        when the old master drops the VIPs on our advert. Returns the GARP/NA frames sent.
        """
        self.vips_kept = reason
        self._queue(self._add_addresses(self._owned_addresses(), self._routes()))
        await self.drain_ops()
        addrs = [a.ip for _, a in self._owned_addresses()]
        return await self._announce(addrs, max(1, self.cfg.garp.master_repeat))

    async def announce_now(self) -> int:
        """Resend the master GARP/NA burst and wait for it; frames sent (0 unless MASTER)."""
        if self.machine.state is not VrrpState.MASTER:
            return 0
        addrs = [a.ip for _, a in self._owned_addresses()]
        return await self._announce(addrs, max(1, self.cfg.garp.master_repeat))

    # ------------------------------------------------------------ state for the API

    def to_dict(self) -> dict[str, Any]:
        m = self.machine.to_dict()
        present = self.owner.kernel_addresses
        wall = time.time() - self.now()

        def vip_view(dev: str, addr: IPInterface) -> dict[str, Any]:
            return {"address": str(addr), "dev": dev, "present": (dev, addr) in present}

        default = self.cfg.use_vmac or self.cfg.interface
        last = m["last_transition"]
        if last is not None:
            last = {**last, "time": last["time"] + wall}
        counters = dict(m["counters"])
        counters["rejected"] = dict(sorted(self.rejects.counts.items()))
        return {
            "name": self.name,
            "interface": self.cfg.interface,
            "vmac": self.cfg.use_vmac,
            "vrid": self.cfg.vrid,
            "version": self.cfg.version,
            "family": self.family,
            "state": m["state"],
            "priority": m["base_priority"],
            "effective_priority": m["effective_priority"],
            "master_address": m["master_address"],
            "master_priority": m["master_priority"],
            "source_address": None if self._source is None else str(self._source),
            "advert_interval": self.cfg.advert_interval,
            "learned_interval": m["learned_interval"],
            "master_down_interval": m["master_down_interval"],
            "preempt": self.cfg.preempt,
            "preempt_delay": self.cfg.preempt_delay,
            "unicast_peers": (
                None if self.cfg.unicast is None else [str(p) for p in self.cfg.unicast.peers]
            ),
            "vips": [vip_view(vip.dev or default, vip.address) for vip in self.cfg.vips],
            "excluded_vips": [
                vip_view(vip.dev or default, vip.address) for vip in self.cfg.excluded_vips
            ],
            "fault_reason": m["fault_reason"],
            "faults": dict(self.faults),
            "priority_deltas": dict(self.priority_deltas),
            "priority_override": self.priority_override,
            "trackers": self.owner.trackers.view(self.name),
            "fast_takeover_bfd": self.cfg.fast_takeover_bfd,
            "last_transition": last,
            "counters": counters,
            **self.owner.control.instance_view(self),
        }


class VrrpSubsystem:
    """The agent's VRRP subsystem (implements :class:`vigil.subsystem.Subsystem`)."""

    name = "vrrp"

    def __init__(self, ctx: SubsystemContext) -> None:
        self.ctx = ctx
        self.instances: dict[str, InstanceRuntime] = {}
        self.nl = Netlink(ctx.kernel.netlink.netns)
        self.vmacs = VmacManager(self.nl)
        self.garp = GarpSender()
        self.journal = Journal(ctx.journal)
        self.section: VrrpConfig | None = ctx.section
        self.sockets = SocketRegistry(
            on_unknown_vrid=self._on_unknown_vrid, on_status=self._on_socket_status
        )
        self.kernel_addresses: set[tuple[str, IPInterface]] = set()
        self.unknown_vrid: Counter[str] = Counter()
        self._unsubscribe_kernel: Callable[[], None] | None = None
        # Called after each transition is published (notify scripts, sync groups, ...).
        self.transition_hooks: list[Callable[[InstanceRuntime, Transition], None]] = []
        # Called after an instance's fault sources changed (sync groups hold members).
        self.fault_hooks: list[Callable[[InstanceRuntime], None]] = []
        # Notify scripts and sync groups (vigil.vrrp.notify, vigil.vrrp.syncgroup).
        self.notify = NotifyManager(self)
        self.sync_groups = SyncGroupManager(self)
        # What instances track, from the agent's tracker registry (vigil.vrrp.tracking).
        self.trackers = InstanceTracking(self, ctx.trackers)
        # Maintenance, priority overrides, handover/takeover (vigil.vrrp.control).
        self.control = ControlManager(self)

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None:
        self.ctx.events.publish(kind, instance, message, **data)

    # ------------------------------------------------------------ life cycle

    async def start(self, section: VrrpConfig) -> None:
        self.section = section
        await self.nl.open()
        self.garp.open()
        self._unsubscribe_kernel = self.ctx.kernel.subscribe("vrrp", self._on_event)
        await self._snapshot_addresses()
        self.notify.configure(section)
        await self.trackers.start(section)
        for cfg in section.vrrp_instances:
            await self._start_instance(cfg)
        self.sync_groups.configure(section)

    async def _start_instance(self, cfg: VrrpInstanceConfig) -> None:
        inst = InstanceRuntime(cfg, self)
        self.instances[cfg.name] = inst
        await inst.start()
        self.trackers.attach(inst)
        self.control.instance_started(inst)

    async def stop(self) -> None:
        await self.trackers.stop()
        self.control.close()
        await asyncio.gather(
            *(inst.stop() for inst in self.instances.values()), return_exceptions=True
        )
        self.instances.clear()
        self.journal.flush()  # the instances' stops emptied it
        await self.notify.close()
        if self._unsubscribe_kernel is not None:
            self._unsubscribe_kernel()
            self._unsubscribe_kernel = None
        self.sockets.close()
        self.garp.close()
        with contextlib.suppress(Exception):
            await self.nl.close()

    async def apply(self, section: VrrpConfig, diff: VrrpDiff) -> None:
        """Reload: touch only what changed, in the order of :func:`plan_reload`.

        Unchanged instances are not looked at (their timers keep running, so no advert is
        missed); trackers and sync groups reconcile last, against the instances that run.
        """
        self.section = section
        self.notify.configure(section)
        new = {cfg.name: cfg for cfg in section.vrrp_instances}
        plan = plan_reload({n: i.cfg for n, i in self.instances.items()}, section, diff)
        for name, why in plan.stop:
            inst = self.instances.pop(name, None)
            if inst is not None:
                await inst.stop(why)
        for name in plan.update:
            self.instances[name].update(new[name])
            if name in plan.refresh_source:
                await self.instances[name].refresh_source()
        for name in plan.start:
            if name not in self.instances:
                await self._start_instance(new[name])
        await self.trackers.apply(section)
        self.sync_groups.apply(section, diff)

    # ------------------------------------------------------------ kernel events

    async def link_problem(self, ifname: str) -> str | None:
        state = await self.nl.find_link(ifname)
        if state is None:
            return f"interface {ifname} does not exist"
        if not state.up:
            return f"interface {ifname} is administratively down"
        if not state.carrier:
            return f"interface {ifname} has no carrier"
        return None

    async def _snapshot_addresses(self) -> None:
        self.kernel_addresses = {(a.ifname, a.address) for a in await self.nl.addresses()}

    async def _on_event(self, ev: NetlinkEvent) -> None:
        """From the agent's shared netlink monitor (vigil.kernel)."""
        if isinstance(ev, Resync):
            self.kernel_addresses = {(a.ifname, a.address) for a in ev.addresses}
            for inst in self.instances.values():
                inst.link_changed(await self.link_problem(inst.cfg.interface))
            return
        if isinstance(ev, LinkEvent):
            await self._on_link(ev)
        elif isinstance(ev, AddrEvent):
            key = (ev.ifname, ev.address)
            if ev.added:
                self.kernel_addresses.add(key)
            else:
                self.kernel_addresses.discard(key)
            for inst in self.instances.values():
                if inst.ifname == ev.ifname:
                    await inst.refresh_source()
                if ev.removed:
                    await inst.address_removed(ev)

    async def _on_link(self, ev: LinkEvent) -> None:
        if ev.running:
            for sock in self.sockets.link_up(ev.ifname):
                log.info("vrrp: %s socket on %s reopened", f"IPv{sock.family}", ev.ifname)
        elif ev.removed or not ev.up:
            self.sockets.link_down(ev.ifname, "removed" if ev.removed else "down")
        for inst in self.instances.values():
            if ev.ifname in (inst.cfg.interface, inst.ifname):
                if ev.running and inst.vmac is not None and ev.ifname == inst.cfg.interface:
                    with contextlib.suppress(NetlinkFailure, OSError, ValueError):
                        await self.vmacs.ensure(inst.vmac)
                if inst.ifname == ev.ifname:
                    await inst.refresh_source()
                problem = None if ev.running else await self.link_problem(inst.cfg.interface)
                if ev.running and ev.ifname == inst.cfg.interface:
                    problem = await self.link_problem(inst.cfg.interface)
                inst.link_changed(problem)

    def _on_unknown_vrid(self, raw: RawReceived, vrid: int | None) -> None:
        self.unknown_vrid[f"{raw.ifname}/IPv{raw.family}"] += 1

    def _on_socket_status(self, sock: VrrpSocket, up: bool, reason: str) -> None:
        if up:
            log.info("vrrp: IPv%d socket on %s is up", sock.family, sock.ifname)
        else:
            log.warning("vrrp: IPv%d socket on %s is down: %s", sock.family, sock.ifname, reason)

    # ------------------------------------------------------------ transitions

    def transition(self, inst: InstanceRuntime, tr: Transition) -> None:
        """One log line and one event per transition (the event bus logs it); then hooks."""
        self._publish_transition(inst, tr)
        for hook in list(self.transition_hooks):
            try:
                hook(inst, tr)
            except Exception:
                log.exception("(%s) transition hook %r failed", inst.name, hook)

    def faults_changed(self, inst: InstanceRuntime) -> None:
        """An instance's fault sources changed (after the machine moved): run fault hooks."""
        for hook in list(self.fault_hooks):
            try:
                hook(inst)
            except Exception:
                log.exception("(%s) fault hook %r failed", inst.name, hook)

    def _publish_transition(self, inst: InstanceRuntime, tr: Transition) -> None:
        self.publish(
            "vrrp_transition",
            inst.name,
            f"{tr.old} -> {tr.new}: {tr.reason}",
            old=str(tr.old),
            new=str(tr.new),
            reason=tr.reason,
            trigger=str(tr.trigger),
            priority=inst.machine.effective_priority,
        )

    # ------------------------------------------------------------ API + metrics

    def status(self) -> dict[str, Any]:
        """VRRP's section of /v1/status: every configured instance (INIT if not running)."""
        running = {name: inst.to_dict() for name, inst in self.instances.items()}
        configured = self.section.vrrp_instances if self.section is not None else ()
        instances = [
            running.pop(cfg.name) if cfg.name in running else placeholder(cfg) for cfg in configured
        ]
        instances.extend(running.values())  # running but no longer configured (stopping)
        return {
            "instances": instances,
            "unknown_vrid": dict(self.unknown_vrid),
            "sync_groups": self.sync_groups.status(),
        }

    def instance(self, name: str) -> InstanceRuntime | None:
        return self.instances.get(name)

    def routes(self) -> list[web.RouteDef]:
        from vigil.vrrp.api import vrrp_routes

        return vrrp_routes(self)

    def openapi_paths(self) -> dict[str, Any]:
        from vigil.vrrp.api import VRRP_OPENAPI_PATHS

        return VRRP_OPENAPI_PATHS

    def collect_metrics(self) -> Iterable[Metric]:
        from vigil.vrrp.api import vrrp_metrics

        return [
            *vrrp_metrics(self),
            *self.sync_groups.metrics(),
            *self.notify.metrics(),
        ]


def placeholder(cfg: VrrpInstanceConfig) -> dict[str, Any]:
    """A configured instance that is not running (yet): its identity, state INIT.

    Same keys and shapes as a running instance's view, so clients need one parser.
    """
    dev = cfg.use_vmac or cfg.interface

    def vip(v: Any) -> dict[str, Any]:
        return {"address": str(v.address), "dev": v.dev or dev, "present": False}

    return {
        "name": cfg.name,
        "state": "INIT",
        "interface": cfg.interface,
        "vrid": cfg.vrid,
        "version": cfg.version,
        "family": cfg.family,
        "priority": cfg.priority,
        "effective_priority": cfg.priority,
        "master_address": None,
        "vips": [vip(v) for v in cfg.vips],
        "excluded_vips": [vip(v) for v in cfg.excluded_vips],
    }


def factory(ctx: SubsystemContext) -> VrrpSubsystem:
    return VrrpSubsystem(ctx)
