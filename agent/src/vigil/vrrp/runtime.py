"""The VRRP subsystem: its instances, their shared sockets, and the agent's services.

:class:`VrrpSubsystem` (the :class:`vigil.subsystem.Subsystem`) owns one
:class:`~vigil.vrrp.instance.InstanceRuntime` per configured instance, the raw sockets
they share per (family, interface), a netlink connection for address and route changes,
VRRP's journal namespace, notify scripts, sync groups, tracking and runtime control. It
subscribes to the agent's netlink monitor (interface down -> FAULT, a VIP deleted by
someone else while master -> put back, an interface that disappears and comes back ->
socket reopened) and reconciles link state from the kernel periodically. Reloads follow
:func:`vigil.vrrp.reload.plan_reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from vigil.log import RateLimitedLog
from vigil.net.garp import GarpSender
from vigil.net.netlink import (
    AddrEvent,
    IPInterface,
    LinkEvent,
    Netlink,
    NetlinkEvent,
    NetlinkFailure,
    Resync,
)
from vigil.net.vmac import VmacManager
from vigil.subsystem import StartError
from vigil.vrrp.control import ControlManager
from vigil.vrrp.journal import Journal
from vigil.vrrp.machine import (
    Transition,
)
from vigil.vrrp.notify import NotifyManager
from vigil.vrrp.reload import plan_reload
from vigil.vrrp.state_tracker import StatePublisher
from vigil.vrrp.syncgroup import SyncGroupManager
from vigil.vrrp.tracking import InstanceTracking
from vigil.vrrp.transport import RawReceived, SocketRegistry, VrrpSocket

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.metrics_core import Metric

    from vigil.subsystem import SubsystemContext
    from vigil.vrrp.config import VrrpConfig, VrrpDiff, VrrpInstanceConfig

from vigil.vrrp.instance import REJECT_LOG_INTERVAL, InstanceRuntime, describe_exception

log = logging.getLogger("vigil.vrrp")
_action_log = RateLimitedLog(log, REJECT_LOG_INTERVAL)

# While an instance is in FAULT because the journal cannot be written, retry this often.
JOURNAL_RETRY_INTERVAL = 1.0
# Link state is also read from the kernel this often, not only from link events.
LINK_RECONCILE_INTERVAL = 5.0


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
        # Each instance's state as tracker vrrp:<name>, for other subsystems (IPVS).
        self.state_trackers = StatePublisher(self, ctx.trackers)
        self._reconcile_task: asyncio.Task[None] | None = None
        self._journal_timer: asyncio.TimerHandle | None = None

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None:
        self.ctx.events.publish(kind, instance, message, **data)

    # ------------------------------------------------------------ life cycle

    async def start(self, section: VrrpConfig) -> None:
        self.section = section
        # Journal first: with a journal that cannot be written this node could never hold
        # a VIP safely. Say so plainly (one line, exit 1); systemd retries the start.
        self.journal.adopt()
        if not self.journal.write_now():
            raise StartError(
                f"the state journal cannot be written ({self.journal.error}); free space "
                f"in or fix the permissions of {self.journal.path.parent}"
            )
        await self.nl.open()
        self.garp.open()
        self._unsubscribe_kernel = self.ctx.kernel.subscribe("vrrp", self._on_event)
        await self._snapshot_addresses()
        self._reconcile_task = asyncio.get_running_loop().create_task(self._reconcile_links())
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
        if self._journal_timer is not None:
            self._journal_timer.cancel()
        await self.trackers.stop()
        self.control.close()
        await asyncio.gather(
            *(inst.stop() for inst in self.instances.values()), return_exceptions=True
        )
        self.instances.clear()
        self.state_trackers.close()
        self.journal.flush()  # the instances' stops emptied it
        await self.notify.close()
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconcile_task
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

    async def _reconcile_links(self) -> None:
        """Every LINK_RECONCILE_INTERVAL, read each instance's link from the kernel.

        Link events are the fast path; this is the one that cannot be missed. An event
        whose handling failed (before issue 15, out of descriptors during a link-up, which
        left instances in FAULT "administratively down" with the link up until someone
        flapped it) is corrected here, and a socket that could not be reopened is retried.
        """
        while True:
            await asyncio.sleep(LINK_RECONCILE_INTERVAL)
            if self.journal.pending:
                self.journal.flush()  # a write that failed (full disk) is tried again
            try:
                await self.reconcile_links()
            except asyncio.CancelledError:
                raise
            except Exception:
                _action_log.error(
                    "reconcile", "vrrp: link reconciliation failed: %s", describe_exception()
                )

    async def reconcile_links(self) -> None:
        """Bring sockets and link faults in line with the kernel's view of the links."""
        problems: dict[str, str | None] = {}
        for inst in list(self.instances.values()):
            for ifname in {inst.cfg.interface, inst.ifname}:
                if ifname not in problems:
                    problems[ifname] = await self.link_problem(ifname)
        for ifname, problem in problems.items():
            if problem is None:
                for sock in self.sockets.link_up(ifname):
                    log.info("vrrp: IPv%d socket on %s reopened (reconciled)", sock.family, ifname)
        for inst in list(self.instances.values()):
            problem = problems.get(inst.cfg.interface)
            if (problem is None) != (inst.link_fault is None):
                log.info(
                    "(%s) link state reconciled from the kernel: %s",
                    inst.name,
                    problem or f"interface {inst.cfg.interface} is up",
                )
                if problem is None:
                    await inst.refresh_source()
                inst.link_changed(problem)

    def degraded(self) -> list[str]:
        """Why this subsystem cannot fully do its job now (the health endpoint shows it)."""
        out = []
        for inst in self.instances.values():
            for source in ("advert", "journal"):
                reason = inst.faults.get(source)
                if reason is not None:
                    out.append(f"({inst.name}) {reason}")
        if self.journal.error is not None and not out:
            out.append(f"state journal: {self.journal.error}")
        return out

    def journal_retry(self) -> None:
        """While an instance is in FAULT "journal", try to write the journal every second;
        once it can be written, those instances recover (to BACKUP)."""
        if self._journal_timer is None:
            loop = asyncio.get_running_loop()
            self._journal_timer = loop.call_later(JOURNAL_RETRY_INTERVAL, self._journal_retry)

    def _journal_retry(self) -> None:
        self._journal_timer = None
        waiting = [i for i in self.instances.values() if "journal" in i.faults]
        if not waiting:
            return
        if not self.journal.write_now():
            self.journal_retry()
            return
        for inst in waiting:
            inst.clear_fault("journal", "the state journal can be written again")

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
                inst.pulse.fire()  # a VIP came or went: verifications look again

    async def _on_link(self, ev: LinkEvent) -> None:
        if ev.running:
            for sock in self.sockets.link_up(ev.ifname):
                log.info("vrrp: %s socket on %s reopened", f"IPv{sock.family}", ev.ifname)
        elif ev.removed or not ev.up:
            self.sockets.link_down(ev.ifname, "removed" if ev.removed else "down")
        for inst in list(self.instances.values()):
            if ev.ifname in (inst.cfg.interface, inst.ifname):
                # Each step on its own: one failing (out of descriptors, say) must not
                # keep the instance from learning the link's state.
                if ev.running and inst.vmac is not None and ev.ifname == inst.cfg.interface:
                    with contextlib.suppress(NetlinkFailure, OSError, ValueError):
                        await self.vmacs.ensure(inst.vmac)
                if inst.ifname == ev.ifname:
                    with contextlib.suppress(OSError, NetlinkFailure):
                        await inst.refresh_source()
                try:
                    problem = None if ev.running else await self.link_problem(inst.cfg.interface)
                    if ev.running and ev.ifname == inst.cfg.interface:
                        problem = await self.link_problem(inst.cfg.interface)
                except (OSError, NetlinkFailure) as exc:
                    _action_log.error(
                        f"link:{inst.name}",
                        "(%s) cannot read the state of %s (%s); the periodic link "
                        "reconciliation retries",
                        inst.name,
                        inst.cfg.interface,
                        exc,
                    )
                    continue
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
