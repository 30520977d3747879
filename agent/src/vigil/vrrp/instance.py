"""One VRRP instance at run time: its pure machine bound to a socket, a timer and the kernel.

:class:`InstanceRuntime` feeds the machine (:mod:`vigil.vrrp.machine`) its inputs (adverts
from the shared per-(family, interface) socket, its timer, faults and priority changes
from trackers and control) and carries out the actions it returns: adverts are sent
synchronously from the timer or receive callback, so nothing slow (netlink, GARP bursts,
scripts) can delay them; VIP and route changes run as ordered background tasks
(:mod:`vigil.vrrp.addresses`). The machine's clock is the event loop's monotonic clock;
the timer is one precise deadline re-armed after every input.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.log import RateLimitedLog
from vigil.net.netlink import (
    AddrEvent,
    IPInterface,
    NetlinkFailure,
    RouteSpec,
)
from vigil.net.vmac import VmacSpec
from vigil.timerfd import PreciseTimer
from vigil.vrrp import packet as codec
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
from vigil.vrrp.transport import RawReceived, VrrpSocket

if TYPE_CHECKING:
    from vigil.vrrp.config import VrrpInstanceConfig
    from vigil.vrrp.runtime import VrrpSubsystem

from vigil.vrrp.addresses import InstanceAddresses
from vigil.vrrp.watch import Pulse

log = logging.getLogger("vigil.vrrp")

IPAddress = IPv4Address | IPv6Address

# A burst of rejected packets is logged once, then summarised at most this often.
REJECT_LOG_INTERVAL = 10.0
# A master whose adverts have failed for this many advert intervals gives up mastership
# (FAULT "advert"): a backup takes over after 3 intervals and a skew, so the VIPs leave
# here before they are added there. Failed adverts are retried after RETRY_FRACTION of
# an interval meanwhile.
TX_FAILURE_BOUND = 2.0
TX_RETRY_FRACTION = 0.25
# After giving up, the instance tries again (to BACKUP) after 1 s, then 2, 4, ... 60 s
# while the adverts keep failing; a successful advert resets it.
TX_BACKOFF_FIRST = 1.0
TX_BACKOFF_MAX = 60.0
# Rejections that are routine: counted, never logged. None since issue 15: our own adverts
# are never looped back to us, so one "from us" is spoofed or from a node with our address.
QUIET_REASONS: frozenset[str] = frozenset()


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


_action_log = RateLimitedLog(log, REJECT_LOG_INTERVAL)


def describe_exception() -> str:
    exc = sys.exc_info()[1]
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"


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
    """Counts rejected packets per reason and logs the first of a burst, then summaries.

    The summary of a burst ("N more since the last report") comes from a timer when the
    burst's REJECT_LOG_INTERVAL is over, so a burst that ends is reported too, not only
    when the next rejected packet arrives (issue 15).
    """

    def __init__(
        self,
        name: str,
        publish: Callable[..., Any],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self._publish = publish
        self._loop = loop
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._last_detail: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _summary_due(self, reason: str) -> None:
        self._timers.pop(reason, None)
        more = self._suppressed.pop(reason, 0)
        if not more:
            return
        self._last_logged[reason] = self._loop.time() if self._loop is not None else 0.0
        self._publish(
            "vrrp_rejected",
            self.name,
            f"rejected {more} more advert(s) ({reason}) in the last "
            f"{REJECT_LOG_INTERVAL:g}s; the last: {self._last_detail.get(reason, '')}",
            reason=reason,
            suppressed=more,
        )

    def add(self, reason: str, detail: str, now: float) -> None:
        self.counts[reason] += 1
        if reason in QUIET_REASONS:
            return
        last = self._last_logged.get(reason)
        if last is not None and now - last < REJECT_LOG_INTERVAL:
            self._suppressed[reason] += 1
            self._last_detail[reason] = detail
            if self._loop is not None and reason not in self._timers:
                self._timers[reason] = self._loop.call_later(
                    last + REJECT_LOG_INTERVAL - now, self._summary_due, reason
                )
            return
        timer = self._timers.pop(reason, None)
        if timer is not None:
            timer.cancel()
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


class TxWatch:
    """A master's advert sends: how long they have been failing, and when to give up.

    Pure (the caller passes ``now``): ``sent(ok, now, interval, error)`` returns True
    once the failures have lasted TX_FAILURE_BOUND intervals; ``backoff()`` is how long
    to stay out after giving up (doubling per give-up in a row, reset by a good send).
    """

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.error: str | None = None
        self.failures = 0  # failed sends, ever (a metric)
        self.give_ups = 0  # times mastership was released because of them, ever
        self._level = 0  # give-ups since the last good send

    def sent(self, ok: bool, now: float, interval: float, error: str | None = None) -> bool:
        if ok:
            self.failing_since, self.error, self._level = None, None, 0
            return False
        self.failures += 1
        self.error = error or self.error or "the advert could not be sent"
        if self.failing_since is None:
            self.failing_since = now
        return now - self.failing_since >= TX_FAILURE_BOUND * interval - 1e-9

    def gave_up(self) -> float:
        """Record a give-up; returns the back-off before trying again (seconds)."""
        delay = min(TX_BACKOFF_MAX, TX_BACKOFF_FIRST * 2.0**self._level)
        self._level += 1
        self.give_ups += 1
        self.failing_since = None
        return delay


class InstanceRuntime(InstanceAddresses):
    """One VRRP instance: machine + socket + timer + addresses."""

    def __init__(self, cfg: VrrpInstanceConfig, owner: VrrpSubsystem) -> None:
        self.cfg = cfg
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        self.ifname = cfg.use_vmac or cfg.interface  # where adverts and VIPs live
        self.machine = VrrpMachine(_machine_params(cfg, None))
        # Fired after every input and address change: verified actions wait on it.
        self.pulse = Pulse()
        self.sock: VrrpSocket | None = None
        self.rejects = _RejectLog(cfg.name, owner.publish, self.loop)
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
        # Advert send failures of this master (see TxWatch) and their timers.
        self.tx = TxWatch()
        self._tx_retry: asyncio.TimerHandle | None = None
        self._tx_backoff: asyncio.TimerHandle | None = None
        self._vips_deferred = False  # became master, VIPs wait for an advert to go out
        #: why the peer may have taken over unheard (our fast_takeover_bfd session went
        #: Down while we were master): the next advert that goes out re-announces the VIPs
        self._peer_unheard: str | None = None
        self._journal_blocked = False  # became master, VIPs refused: the journal failed

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
        self.rejects.close()
        for handle in (self._tx_retry, self._tx_backoff):
            if handle is not None:
                handle.cancel()
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
        if rejection.reason is codec.RejectReason.OWN:
            self._own_address(result, now)
            return None
        self.rejects.add(rejection.reason.name.lower(), rejection.detail, now)
        return None if rejection.drop else result

    def _own_address(self, result: codec.Received, now: float) -> None:
        """An advert "from us": logged once per burst; a valid priority 0 is answered."""
        pkt = result.packet
        others = dataclasses.replace(self._expect, own_addresses=frozenset())
        valid = codec.check_for_instance(result, others)
        answered = ""
        if valid is None or not valid.drop:
            actions = self.machine.own_address_received(now, pkt.priority)
            if actions:
                answered = "; answered with our own advert so no backup takes over"
            self._run(actions)
        self.rejects.add(
            "own",
            f"advert with priority {pkt.priority} from {result.src}, this node's own address: "
            f"spoofed, or another node has our address{answered}",
            now,
        )

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
        """Carry out the machine's actions in order; the timer is re-armed whatever happens.

        One action failing (a bug, or the process out of descriptors) is logged once per
        burst and the next ones still run: before issue 15 an exception here skipped the
        re-arm, and a master stopped advertising for good while keeping its VIPs.
        """
        try:
            for action in _clock_order(actions) if len(actions) > 1 else actions:
                try:
                    self._do(action)
                except Exception:
                    _action_log.error(
                        f"{self.name}:{type(action).__name__}",
                        "(%s) %s failed: %s",
                        self.name,
                        type(action).__name__,
                        describe_exception(),
                    )
        finally:
            self._rearm()
            self.pulse.fire()  # whoever waits on this instance (control) looks again

    def _do(self, action: Any) -> None:
        if isinstance(action, SendAdvert):
            self._send_advert(action.priority)
        elif isinstance(action, Transition):
            if action.new is not VrrpState.MASTER:
                self._vips_deferred = False
                self._journal_blocked = False
                self.tx.failing_since = None  # a failure streak belongs to one mastership
            self.owner.transition(self, action)
            if self.vips_kept and action.new in (VrrpState.FAULT, VrrpState.STOPPED):
                self.withdraw_vips()
        elif isinstance(action, AddVips):
            self.vips_kept = None
            if self.tx.failing_since is not None:
                # Our advert did not go out: a peer that cannot hear us keeps the VIPs, so
                # adding them here would make two holders. They follow the first advert
                # that does go out (_advert_sent); past the bound we give up instead.
                self._vips_deferred = True
                return
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
            if not (self._vips_deferred or self._journal_blocked):
                self._schedule_garp(action.kind, action.late)
        elif isinstance(action, LearnedInterval):
            self.owner.publish(
                "vrrp_interval_learned",
                self.name,
                f"master advertises every {action.interval:g}s (was {action.previous:g}s); adopted",
                interval=action.interval,
                previous=action.previous,
            )

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
        sent = sock.send(self._advert_builder(priority), *self._advert_route())
        if priority and self.machine.state is VrrpState.MASTER:
            self._advert_sent(sent > 0, sock)

    def _advert_sent(self, ok: bool, sock: VrrpSocket) -> None:
        """Count a master's advert; retry a failed one soon, give up past the bound."""
        error = sock.down_reason or sock.last_tx_error
        if ok and self.tx.failing_since is not None:
            failed_for = self.now() - self.tx.failing_since
            log.info("(%s) adverts go out again (failed for %.2fs)", self.name, failed_for)
            # Nobody heard us meanwhile: a backup may have taken over and drawn the
            # clients to its MAC, and it steps back silently on this very advert.
            self.reannounce(f"adverts go out again after failing for {failed_for:.2f}s", "tx")
            self._peer_unheard = None
        elif ok and self._peer_unheard is not None:
            # The peer could not hear us a moment ago (fast_takeover_bfd session Down) and
            # may have taken over; this advert makes it step back without a word.
            self.reannounce(f"first advert since {self._peer_unheard}", "bfd")
            self._peer_unheard = None
        if ok and self._vips_deferred:
            self._vips_deferred = False
            self._add_vips(self._owned_addresses(), self._routes())
            self._schedule_garp(GarpKind.MASTER)
        interval = self.machine.learned_interval
        if not self.tx.sent(ok, self.now(), self.cfg.advert_interval, error):
            if not ok and self._tx_retry is None:
                self._tx_retry = self.loop.call_later(
                    TX_RETRY_FRACTION * interval, self._retry_advert
                )
            return
        delay = self.tx.gave_up()
        reason = (
            f"cannot send adverts for {TX_FAILURE_BOUND:g} intervals ({self.tx.error}); "
            f"released mastership, trying again in {delay:g}s"
        )
        self.owner.publish("vrrp_tx_failed", self.name, reason, error=self.tx.error, retry_in=delay)
        self.set_fault("advert", reason)
        if self._tx_backoff is not None:
            self._tx_backoff.cancel()
        self._tx_backoff = self.loop.call_later(delay, self._tx_backoff_over)

    def _retry_advert(self) -> None:
        self._tx_retry = None
        if self.machine.state is VrrpState.MASTER and self.tx.failing_since is not None:
            self._send_advert(self.machine.effective_priority)

    def _tx_backoff_over(self) -> None:
        self._tx_backoff = None
        self.clear_fault("advert", "trying adverts again after the back-off")

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

    def peer_unheard(self, reason: str) -> None:
        """Our fast_takeover_bfd session went Down: the peer may take over at once. A
        master announces its VIPs again with its next advert that goes out."""
        if self.machine.state is VrrpState.MASTER:
            self._peer_unheard = reason

    def peer_up(self, reason: str) -> None:
        """Our fast_takeover_bfd session is Up again after a Down: the peer could not hear
        us meanwhile and may have taken over (and stepped back silently)."""
        self.reannounce(reason, "bfd")

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
        counters["advert_send_failures"] = self.tx.failures
        counters["answers_suppressed"] = self.machine.answers_suppressed
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
