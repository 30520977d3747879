"""The IPVS subsystem: checker engine + planner + kernel adapter, and nothing clever.

Who does what:

- :class:`~vigil.ipvs.checkers.CheckEngine` checks every real server and reports each
  one's state (alive, effective weight) through ``on_change``;
- :mod:`vigil.ipvs.quorum` folds those into each virtual server's quorum (published as
  tracker ``ipvs_quorum:<name>``, so VRRP instances can track it);
- :mod:`vigil.ipvs.planner` turns config + health + drains + quorum into the IPVS table
  this agent wants, and the difference to the kernel's into netlink operations;
- :class:`~vigil.ipvs.kernel.IpvsKernel` sends them, one request each.

All kernel work happens in one worker task, one pass at a time, so the kernel never sees
two writers and the picture of the kernel kept here (``table``: what was programmed,
updated op by op) stays true. A pass is triggered by a change (a real server going down,
a drain, a VRRP transition, a reload) and every ``delay_loop`` (the smallest of the
virtual servers'), when the kernel's table is compared with ``table``: a difference is
someone else's doing (``ipvsadm -C``, an edited weight), corrected at once and reported
as a ``drift_corrected`` event. That drift check reads ``/proc/net/ip_vs`` (one read, no
netlink: services, schedulers, destinations, forwarding methods, weights) and dumps the
table over netlink only when that differs, while an operation is failing, and every
``FULL_CHECK_EVERY``-th time for what /proc does not show (scheduler flags, persistence,
thresholds, tunnel settings); a dump costs one request per service, parsed in Python.
Changes are applied before a drift check, never after it. Nothing here blocks the loop: checks are
callbacks, netlink requests are awaited, scripts are subprocesses.

The journal (``ipvs`` namespace) names every service before it is added and every sync
daemon before it is started, so a crash leaves nothing the clean-up hook does not know.
Services a previous run left that the config still wants are adopted at start (see
:mod:`vigil.ipvs.journal`) and corrected in place.

Without IPVS in the kernel (or its netns) the subsystem still runs its checkers and its
API, says so in its status (``kernel.available: false`` and why) and tries again every
pass; a config without virtual servers and sync daemon never opens IPVS at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.incremental import SLICE_S, Slicer, run_steps
from vigil.ipvs.checkers import CheckEngine, RealServer, ServerChange
from vigil.ipvs.config import (
    Endpoint,
    IpvsConfig,
    IpvsDiff,
    RealServerConfig,
    VirtualServerConfig,
)
from vigil.ipvs.control import DrainControl, DrainStore, standby_reason
from vigil.ipvs.journal import (
    adopt_at_startup,
    daemon_entry,
    daemon_key,
    service_entry,
    service_key_text,
)
from vigil.ipvs.kernel import (
    IpvsError,
    IpvsKernel,
    ServiceKey,
    ServiceState,
    SyncDaemon,
    parse_proc_table,
    proc_service_id,
    proc_view,
)
from vigil.ipvs.notify import Notifier, NotifyJob
from vigil.ipvs.planner import (
    Entry,
    Op,
    OpKind,
    ServerView,
    apply_op,
    desired_entries,
    dest_key,
    entries_from_kernel,
    live_weight,
    plan_entry,
    plan_steps,
    service_key,
)
from vigil.ipvs.quorum import Quorum, QuorumChange
from vigil.ipvs.startplan import (
    assumed_view,
    build_plan,
    current_key,
    is_alpha,
    take_checked,
    write_plan,
    written_key,
)
from vigil.journal import JournalWriteError
from vigil.track.base import Tracker, TrackerState

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.metrics_core import Metric

    from vigil.subsystem import SubsystemContext

log = logging.getLogger("vigil.ipvs")

__all__ = ["IpvsSubsystem", "QuorumTracker", "factory"]

#: drift checks run every delay_loop (the smallest), within these bounds (seconds)
DRIFT_MIN, DRIFT_MAX, DRIFT_IDLE = 0.2, 60.0, 5.0
#: a drift check dumps the table over netlink at least every this many; in between it
#: reads /proc/net/ip_vs and dumps only when that differs from what was programmed
FULL_CHECK_EVERY = 10
#: how long start and reload wait for the kernel to be programmed
SETTLE_TIMEOUT = 60.0
VRRP_KIND = "vrrp"
BFD_KIND = "bfd"


class QuorumTracker(Tracker):
    """``ipvs_quorum:<virtual server>``: OK while the virtual server has quorum."""

    kind = "ipvs_quorum"

    def set(self, up: bool, reason: str) -> None:
        self._set_state(TrackerState.OK if up else TrackerState.FAILED, reason)


@dataclass(slots=True)
class RsState:
    """One real server of one virtual server, as the runtime knows it."""

    cfg: RealServerConfig
    engine_name: str
    alive: bool | None = None  # None: no report yet
    weight: int = 0  # effective weight (configured + dynamic), whatever its state
    view: ServerView | None = None  # what IPVS should hold (before drain)
    frozen: ServerView | None = None  # held while checks are suspended (ha_suspend)
    reason: str = ""
    changed_at: float | None = None  # epoch
    #: (the config it was built from, the config-only part of its API view)
    view_static: tuple[RealServerConfig, dict[str, Any]] | None = None


@dataclass
class VsState:
    cfg: VirtualServerConfig
    quorum: Quorum
    tracker: QuorumTracker
    servers: dict[str, RsState] = field(default_factory=dict)
    suspended: bool = False
    want_suspended: bool = False
    #: the last desired entries and what they were computed from (views, quorum, config)
    cache: tuple[Any, dict[ServiceKey, Entry]] | None = None
    _keys: tuple[Any, list[ServiceKey]] | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def keys(self) -> list[ServiceKey]:
        """Its IPVS services (computed once per config: parsing addresses is not free)."""
        if self._keys is None or self._keys[0] is not self.cfg.services:
            self._keys = (self.cfg.services, [service_key(ep) for ep in self.cfg.services])
        return self._keys[1]


class IpvsSubsystem:
    """The agent's IPVS subsystem (implements :class:`vigil.subsystem.Subsystem`)."""

    name = "ipvs"
    #: the checker engine's slice: at most this much work between yields to the loop
    #: while it takes on servers (10,000 at start are seconds of work under emulation)
    slice_s = SLICE_S

    def __init__(self, ctx: SubsystemContext) -> None:
        self.ctx = ctx
        self.section: IpvsConfig = ctx.section if ctx.section is not None else IpvsConfig()
        self.kernel = IpvsKernel(ctx.kernel.netlink.netns)
        self.kernel_ok = False
        self.kernel_error: str | None = None
        self.engine: CheckEngine | None = None
        self.vs: dict[str, VsState] = {}
        self._by_engine: dict[str, tuple[VsState, RsState]] = {}
        #: what this agent programmed, as the kernel holds it (its services only)
        self.table: dict[ServiceKey, Entry] = {}
        #: the last dump of our services (counters, connections), and when
        self.observed: dict[ServiceKey, ServiceState] = {}
        self.observed_at: float | None = None
        #: services this agent owns: configured or journalled -> their endpoint
        self.owned: dict[ServiceKey, Endpoint] = {}
        self.drains = DrainStore(ctx.state_dir)
        self.drained: dict[str, set[str]] = self.drains.load()
        self.notifier = Notifier(self.publish)
        self.control = DrainControl(self)
        self.daemons: dict[str, SyncDaemon] = {}  # the sync daemons we run, by state
        self.stats: dict[str, int] = {
            "passes": 0,
            "drift_checks": 0,
            "light_checks": 0,
            "proc_misreads": 0,  # /proc differed where netlink did not
            "drift_corrections": 0,
            "ops": 0,
            "op_failures": 0,
        }
        self._failing: dict[str, str] = {}  # op -> error, reported once until it works
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._delete: set[ServiceKey] = set()
        self._resync = True
        self._synced_once = False
        # An op failed because the kernel no longer matched our picture: someone else
        # changed the table while we corrected it. The dump that follows reports what it
        # finds as drift (a resync for any other reason adopts quietly).
        self._stale = False
        self._light_left = 0  # light drift checks before the next full one
        self._proc_warned = False
        self._op_failed = False  # an op failed since the last full check: retry in one
        self._waiters: list[asyncio.Future[None]] = []
        self._worker: asyncio.Task[None] | None = None
        self._watches: dict[str, Callable[[], None]] = {}
        self._bfd_watches: dict[str, Callable[[], None]] = {}
        self._stopping = False
        #: while servers report their first state together, the quorum waits for all
        self._batch = False
        #: the start plan (vigil.ipvs.startplan) is to be written after the next pass
        self._plan_due = False
        self._plan_warned = False
        adopt_at_startup(ctx.journal, self._journal_keys(self.section))

    # ------------------------------------------------------------------ helpers

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None:
        self.ctx.events.publish(kind, instance, message, **data)

    @staticmethod
    def _journal_keys(section: IpvsConfig) -> list[str]:
        keys = [service_key_text(ep) for vs in section.virtual_servers for ep in vs.services]
        if section.ipvs_sync_daemon is not None:
            keys += [daemon_key("master"), daemon_key("backup")]
        return keys

    def _needs_kernel(self) -> bool:
        return bool(self.vs or self.section.ipvs_sync_daemon or self.owned or self.daemons)

    def drift_interval(self) -> float:
        loops = [vs.cfg.delay_loop for vs in self.vs.values()]
        if not loops:
            return DRIFT_IDLE
        return max(DRIFT_MIN, min(DRIFT_MAX, min(loops)))

    def is_drained(self, vs: str, rs: str) -> bool:
        return rs in self.drained.get(vs, set())

    # ------------------------------------------------------------------ life cycle

    async def start(self, section: IpvsConfig) -> None:
        self.section = section
        self._load_journal()
        await self.notifier.configure(section.script_user, section.script_security)
        self.engine = CheckEngine(
            on_change=self._on_change, bfd_state=self.bfd_state, slice_s=self.slice_s
        )
        for cfg in section.virtual_servers:
            self._add_vs(cfg)
        self._watch_vrrp()
        for vs in self.vs.values():
            self._initial_suspension(vs)
            if not vs.suspended:
                for rs in vs.servers.values():
                    await self.engine.add_server(self._real_server(vs.cfg, rs.cfg))
        self._batch = True
        try:
            await self.engine.start()
        finally:
            self._batch = False
        self._watch_bfd()
        for vs in self.vs.values():
            self._update_quorum(vs)
        self._plan_due = True
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="ipvs worker")
        if self._needs_kernel():
            await self.settle()

    def _load_journal(self) -> None:
        for key, entry in self.ctx.journal.entries.items():
            if not isinstance(entry, dict):
                continue
            try:
                if entry.get("kind") == "service":
                    ep = Endpoint.from_dict(entry["service"])
                    self.owned[service_key(ep)] = ep
                elif entry.get("kind") == "sync_daemon":
                    state = str(entry["state"])
                    self.daemons[state] = SyncDaemon(
                        state=state,  # type: ignore[arg-type]
                        interface=str(entry["interface"]),
                        syncid=int(entry.get("syncid", 0)),
                    )
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ipvs: ignoring damaged journal entry %s: %s", key, exc)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
        async with self._lock:
            await self._omega()
            if self.engine is not None:
                await self.engine.stop()
            for unwatch in [*self._watches.values(), *self._bfd_watches.values()]:
                unwatch()
            self._watches.clear()
            self._bfd_watches.clear()
            for vs in self.vs.values():
                self.ctx.trackers.withdraw(vs.tracker.key)
            if self.kernel_ok:
                for key in list(self.table) + [k for k in self.owned if k not in self.table]:
                    await self._send_quietly(Op(OpKind.DELETE_SERVICE, key, why="agent stopping"))
                for state in list(self.daemons):
                    await self._stop_daemon(state, "agent stopping")
            with contextlib.suppress(JournalWriteError):
                self.ctx.journal.flush()
            await self.kernel.close()
            await self.notifier.close()
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _omega(self) -> None:
        """keepalived's ``omega``: at shutdown, run the down notifiers that apply."""
        jobs: list[NotifyJob] = []
        for vs in self.vs.values():
            cfg = vs.cfg
            if not cfg.omega:
                continue
            for rs in vs.servers.values():
                if rs.alive and rs.cfg.notify_down:
                    jobs.append(self._job(cfg, "down", rs.cfg.notify_down, rs.cfg.label))
            if vs.quorum.up and cfg.quorum_down:
                jobs.append(self._job(cfg, "quorum_down", cfg.quorum_down))
        for job in jobs:
            with contextlib.suppress(Exception):
                await self.notifier.run(job)

    async def apply(self, section: IpvsConfig, diff: IpvsDiff) -> None:
        """A reload: touch only what changed, then wait for the kernel to follow.

        Unchanged virtual servers are not looked at. A changed one keeps its checkers
        unless its real server's checks changed; a weight or forwarding change is a
        ``set`` in the kernel; services it no longer stands for are deleted.
        """
        assert self.engine is not None
        async with self._lock:
            old = self.section
            self.section = section
            if diff.settings_changed:
                await self.notifier.configure(section.script_user, section.script_security)
            new = {cfg.name: cfg for cfg in section.virtual_servers}
            for name in diff.removed:
                await self._remove_vs(name)
            for name in diff.changed:
                await self._change_vs(new[name], diff.details[name].rs_changed)
            for name in diff.added:
                vs = self._add_vs(new[name])
                self._initial_suspension(vs)
                if not vs.suspended:
                    self._batch = True
                    try:
                        for rs in vs.servers.values():
                            await self.engine.add_server(self._real_server(vs.cfg, rs.cfg))
                    finally:
                        self._batch = False
                self._update_quorum(vs)
                self._dirty.add(name)
            self._watch_vrrp()
            self._watch_bfd()
            if old.ipvs_sync_daemon != section.ipvs_sync_daemon:
                self._resync = True
            self._plan_due = True
        await self.settle()

    # ------------------------------------------------------------------ virtual servers

    def _real_server(self, vs: VirtualServerConfig, rs: RealServerConfig) -> RealServer:
        return RealServer(
            address=str(rs.address),
            port=rs.port or None,
            weight=rs.weight,
            inhibit_on_failure=rs.inhibit_on_failure,
            checks=tuple(c.settings for c in rs.checks if c.settings is not None),
            name=f"{vs.name}/{rs.label}",
        )

    def _add_vs(self, cfg: VirtualServerConfig) -> VsState:
        assert self.engine is not None
        tracker = QuorumTracker(cfg.name)
        tracker.reason = "checks starting"
        vs = VsState(cfg, Quorum(cfg.name, cfg.quorum, cfg.hysteresis), tracker)
        self.vs[cfg.name] = vs
        for rs_cfg in cfg.real_servers:
            self._add_rs(vs, rs_cfg)
        for ep in cfg.services:
            self.owned[service_key(ep)] = ep
        self.ctx.trackers.publish(tracker)
        return vs

    def _add_rs(self, vs: VsState, rs_cfg: RealServerConfig) -> RsState:
        rs = RsState(rs_cfg, f"{vs.name}/{rs_cfg.label}")
        vs.servers[rs_cfg.label] = rs
        self._by_engine[rs.engine_name] = (vs, rs)
        return rs

    async def _remove_vs(self, name: str) -> None:
        assert self.engine is not None
        vs = self.vs.pop(name, None)
        if vs is None:
            return
        for rs in vs.servers.values():
            self._by_engine.pop(rs.engine_name, None)
            if not vs.suspended:
                with contextlib.suppress(KeyError):
                    await self.engine.remove_server(rs.engine_name)
        for key in vs.keys:
            self._delete.add(key)
        self.ctx.trackers.withdraw(vs.tracker.key)
        self.drained.pop(name, None)
        self._dirty.discard(name)

    async def _change_vs(self, cfg: VirtualServerConfig, rs_changed: Iterable[str]) -> None:
        assert self.engine is not None
        vs = self.vs[cfg.name]
        old = vs.cfg
        vs.cfg = cfg
        change = vs.quorum.configure(cfg.quorum, cfg.hysteresis)
        new_keys = {service_key(ep) for ep in cfg.services}
        for ep in old.services:
            key = service_key(ep)
            if key not in new_keys:
                self._delete.add(key)
        for ep in cfg.services:
            self.owned[service_key(ep)] = ep
        before = {rs.label: rs for rs in old.real_servers}
        after = {rs.label: rs for rs in cfg.real_servers}
        changed = set(rs_changed)
        for label, rs_cfg in before.items():
            state = vs.servers.get(label)
            if state is None:
                continue
            if label not in after or (label in changed and rs_cfg.checks != after[label].checks):
                vs.servers.pop(label)
                self._by_engine.pop(state.engine_name, None)
                if not vs.suspended:
                    with contextlib.suppress(KeyError):
                        await self.engine.remove_server(state.engine_name)
        for label, rs_cfg in after.items():
            state = vs.servers.get(label)
            if state is None:
                state = self._add_rs(vs, rs_cfg)
                if vs.suspended:
                    state.frozen = assumed_view(rs_cfg)
                else:
                    await self.engine.add_server(self._real_server(cfg, rs_cfg))
            else:
                state.cfg = rs_cfg
                if label in changed and not vs.suspended:
                    self.engine.reconfigure(
                        state.engine_name, rs_cfg.weight, rs_cfg.inhibit_on_failure
                    )
        drained = self.drained.get(cfg.name)
        if drained:
            drained &= set(after)
        if change is not None:
            self._quorum_changed(vs, change)
        self._update_quorum(vs)
        self._dirty.add(cfg.name)

    # ------------------------------------------------------------------ health

    def _on_change(self, change: ServerChange) -> None:
        """From the checker engine: a real server's state or weight (never blocks)."""
        found = self._by_engine.get(change.server)
        if found is None:
            return
        vs, rs = found
        was = rs.alive
        rs.alive, rs.weight = change.alive, change.weight
        rs.view = ServerView(change.present, change.ipvs_weight)
        rs.frozen = None
        rs.reason = change.reason
        rs.changed_at = time.time()
        label = rs.cfg.label
        data = {"real_server": label, "weight": change.weight, "reason": change.reason}
        if was is None and change.was_alive is not None:
            was = change.was_alive
        if was is None:
            if not change.alive:
                self.publish(
                    "real_server_down", vs.name, f"{label} starts down: {change.reason}", **data
                )
        elif was != change.alive:
            if change.alive:
                self.publish("real_server_up", vs.name, f"{label} is up: {change.reason}", **data)
                if rs.cfg.notify_up:
                    self.notifier.submit(self._job(vs.cfg, "up", rs.cfg.notify_up, label))
            else:
                where = "kept with weight 0" if change.present else "taken out of IPVS"
                self.publish(
                    "real_server_down",
                    vs.name,
                    f"{label} is down ({where}): {change.reason}",
                    **data,
                )
                if rs.cfg.notify_down:
                    self.notifier.submit(self._job(vs.cfg, "down", rs.cfg.notify_down, label))
        elif change.was_weight is not None and change.was_weight != change.weight:
            self.publish(
                "real_server_weight",
                vs.name,
                f"{label} weight {change.was_weight} -> {change.weight}: {change.reason}",
                was_weight=change.was_weight,
                **data,
            )
        if not self._batch:
            self._update_quorum(vs)
        self.mark(vs.name)

    def _job(
        self, cfg: VirtualServerConfig, event: str, command: str, rs: str | None = None
    ) -> NotifyJob:
        target = f"{cfg.name}/{rs}" if rs else cfg.name
        return NotifyJob(target, cfg.name, event, command, cfg.notify_timeout, rs)

    def views(self, vs: VsState) -> dict[str, ServerView]:
        """What IPVS should hold for each real server now (health, suspension, drain)."""
        out: dict[str, ServerView] = {}
        drained = self.drained.get(vs.name, set())
        for label, rs in vs.servers.items():
            view = rs.frozen if rs.frozen is not None else rs.view
            if view is None:
                continue
            if label in drained:
                view = ServerView(view.present, 0)
            out[label] = view
        return out

    def _update_quorum(self, vs: VsState) -> None:
        weight = live_weight(vs.cfg, self.views(vs))
        change = vs.quorum.update(weight)
        if change is not None:
            self._quorum_changed(vs, change)
        else:
            vs.tracker.set(vs.quorum.up, f"live weight {weight}, quorum {vs.cfg.quorum}")

    def _quorum_changed(self, vs: VsState, change: QuorumChange) -> None:
        vs.tracker.set(change.up, change.reason)
        cfg = vs.cfg
        sorry = ""
        if cfg.sorry_server is not None:
            sorry = (
                f"; sorry server {cfg.sorry_server.label} takes over"
                if not change.up
                else f"; sorry server {cfg.sorry_server.label} steps back"
            )
        self.publish(
            "quorum_gained" if change.up else "quorum_lost",
            vs.name,
            f"quorum {change.old} -> {change.new}: {change.reason}{sorry}",
            up=change.up,
            live_weight=change.weight,
            quorum=cfg.quorum,
            hysteresis=cfg.hysteresis,
        )
        command = cfg.quorum_up if change.up else cfg.quorum_down
        if command:
            self.notifier.submit(
                self._job(cfg, "quorum_up" if change.up else "quorum_down", command)
            )

    def mark(self, vs_name: str) -> None:
        """Something about this virtual server changed: reconcile it soon."""
        self._dirty.add(vs_name)
        self._wake.set()

    # ------------------------------------------------------------------ ha_suspend + sync

    def _vrrp_instances(self) -> set[str]:
        names = {vs.cfg.ha_suspend for vs in self.vs.values() if vs.cfg.ha_suspend}
        sync = self.section.ipvs_sync_daemon
        if sync is not None and sync.instance is not None:
            names.add(sync.instance)
        return {n for n in names if n}

    def _watch_vrrp(self) -> None:
        wanted = {f"{VRRP_KIND}:{name}" for name in self._vrrp_instances()}
        for key in list(self._watches):
            if key not in wanted:
                self._watches.pop(key)()
        for key in wanted:
            if key not in self._watches:
                self._watches[key] = self.ctx.trackers.watch(key, self._vrrp_changed)
        for vs in self.vs.values():
            vs.want_suspended = self._should_suspend(vs.cfg)

    def vrrp_state(self, instance: str) -> str | None:
        tracker = self.ctx.trackers.get(f"{VRRP_KIND}:{instance}")
        if tracker is None:
            return None
        state = tracker.details().get("vrrp_state")
        return str(state) if state is not None else ("MASTER" if tracker.ok else "BACKUP")

    async def standby_reason(self, vs: VirtualServerConfig) -> str | None:
        """Why this director carries none of ``vs``'s traffic now (see
        :func:`vigil.ipvs.control.standby_reason`), or None; asked of the kernel."""
        try:
            local = {a.address.ip for a in await self.ctx.kernel.netlink.addresses()}
        except Exception as exc:  # cannot tell: wait as if it carried the traffic
            log.debug("ipvs: cannot list the local addresses: %s", exc)
            return None
        return standby_reason(vs, local, self.vrrp_state)

    def _is_master(self, instance: str) -> bool:
        tracker = self.ctx.trackers.get(f"{VRRP_KIND}:{instance}")
        return tracker is not None and tracker.ok

    def _should_suspend(self, cfg: VirtualServerConfig) -> bool:
        return cfg.ha_suspend is not None and not self._is_master(cfg.ha_suspend)

    def _vrrp_changed(self, key: str, tracker: Tracker | None, what: str) -> None:
        for vs in self.vs.values():
            vs.want_suspended = self._should_suspend(vs.cfg)
        self._wake.set()

    # ------------------------------------------------------------------ BFD checks

    def bfd_state(self, session: str) -> tuple[bool, str]:
        """A BFD session's state for BFD checks, from the ``bfd:<name>`` tracker the BFD
        subsystem publishes (subsystems never import each other)."""
        tracker = self.ctx.trackers.get(f"{BFD_KIND}:{session}")
        if tracker is None:
            return False, "no such session is running"
        return tracker.ok, tracker.reason or ("Up" if tracker.ok else "Down")

    def _watch_bfd(self) -> None:
        """Watch exactly the sessions some BFD check reads, so a change runs it at once."""
        wanted = set() if self.engine is None else self.engine.bfd_sessions()
        for session in list(self._bfd_watches):
            if session not in wanted:
                self._bfd_watches.pop(session)()
        for session in wanted - set(self._bfd_watches):
            self._bfd_watches[session] = self.ctx.trackers.watch(
                f"{BFD_KIND}:{session}", self._bfd_changed
            )
            # it may have changed while the watch did not exist yet
            self.engine.bfd_changed(session)  # type: ignore[union-attr]

    def _bfd_changed(self, key: str, tracker: Tracker | None, what: str) -> None:
        if self.engine is not None:
            self.engine.bfd_changed(key.partition(":")[2])

    def _initial_suspension(self, vs: VsState) -> None:
        """A virtual server that starts suspended: not in the engine, assumed state."""
        vs.want_suspended = self._should_suspend(vs.cfg)
        if not vs.want_suspended:
            return
        vs.suspended = True
        for rs in vs.servers.values():
            rs.frozen = assumed_view(rs.cfg)
            rs.alive = not is_alpha(rs.cfg)
            rs.weight = rs.cfg.weight
        self._update_quorum(vs)
        self.publish(
            "ha_suspend",
            vs.name,
            f"checks suspended: VRRP instance {vs.cfg.ha_suspend} is "
            f"{self.vrrp_state(vs.cfg.ha_suspend or '') or 'not running'}",
            suspended=True,
        )

    async def _apply_suspension(self, vs: VsState) -> None:
        assert self.engine is not None
        instance = vs.cfg.ha_suspend or ""
        state = self.vrrp_state(instance) or "not running"
        if vs.want_suspended and not vs.suspended:
            vs.suspended = True
            for rs in vs.servers.values():
                rs.frozen = rs.view or assumed_view(rs.cfg)
                with contextlib.suppress(KeyError):
                    await self.engine.remove_server(rs.engine_name)
            self.publish(
                "ha_suspend",
                vs.name,
                f"checks suspended: VRRP instance {instance} is {state}; the pool is held",
                suspended=True,
            )
        elif vs.suspended and not vs.want_suspended:
            vs.suspended = False
            self.publish(
                "ha_suspend",
                vs.name,
                f"checks resumed: VRRP instance {instance} is {state}",
                suspended=False,
            )
            for rs in vs.servers.values():
                await self.engine.add_server(self._real_server(vs.cfg, rs.cfg))
        self._dirty.add(vs.name)

    def wanted_daemons(self) -> dict[str, SyncDaemon]:
        cfg = self.section.ipvs_sync_daemon
        if cfg is None:
            return {}
        if cfg.instance is None:
            states = ["master", "backup"]
        else:
            states = ["master" if self._is_master(cfg.instance) else "backup"]
        return {
            state: SyncDaemon(
                state=state,  # type: ignore[arg-type]
                interface=cfg.interface,
                syncid=cfg.syncid,
                maxlen=cfg.maxlen,
                group=cfg.group,
                port=cfg.port,
                ttl=cfg.ttl,
            )
            for state in states
        }

    # ------------------------------------------------------------------ the worker

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wake the worker and wait until it finished a pass that started after now."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        while not self._stopping:
            delay = max(0.0, next_check - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            full = loop.time() >= next_check
            try:
                async with self._lock:
                    await self._pass(full)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ipvs: a pass failed; the next one tries again")
                self._resync = True
            finally:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            if full:
                next_check = loop.time() + self.drift_interval()
            if self._plan_due and self._synced_once and not self._stopping:
                try:
                    await self._write_plan()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug here must not stop the kernel work
                    log.exception("ipvs: writing the start plan failed")

    async def _pass(self, full: bool) -> None:
        self.stats["passes"] += 1
        for vs in self.vs.values():
            if vs.want_suspended != vs.suspended:
                await self._apply_suspension(vs)
        if not self._needs_kernel():
            return
        if not await self._open():
            return
        # This pass handles what is dirty now. What a check marks while the pass awaits the
        # kernel stays marked (and the wake set) for the next pass, which runs at once:
        # clearing it afterwards lost a real server's death until the next drift check.
        dirty_now, self._dirty = self._dirty, set()
        delete_now, self._delete = self._delete, set()
        dumped = False  # did this pass read the kernel over netlink?
        if self._resync or not self._synced_once:
            await self._full_check()
            dumped = True
        else:
            # What changed goes first, ahead of a drift check (a dead real server leaves
            # IPVS without waiting for a dump of the whole table).
            ops: list[Op] = [
                Op(OpKind.DELETE_SERVICE, key, why="not configured any more")
                for key in sorted(delete_now, key=str)
                if key in self.table
            ]
            for name in sorted(dirty_now):
                dirty = self.vs.get(name)
                if dirty is not None:
                    ops += self._plan_vs(dirty)
            await self._apply(ops)
            if full:
                dumped = await self._drift_check()
        # The sync daemons are read back with the netlink dumps, not on every light check:
        # listing them costs as much as a dump (a fifth of the agent's CPU samples under QEMU
        # at delay_loop 1), and /proc shows nothing of them. A change of state is applied
        # at once all the same (want != daemons).
        await self._sync_daemons(check=dumped)

    async def _drift_check(self) -> bool:
        """Every delay_loop: read /proc/net/ip_vs (one read, no netlink) and compare it
        with what was programmed; dump and correct over netlink when it differs, when an
        operation is failing (to retry it), and every FULL_CHECK_EVERY checks anyway for
        what /proc does not show (scheduler flags, persistence, thresholds, tunnels).
        True when it dumped."""
        due = self._resync or self._op_failed or self._light_left <= 0
        if due or not self._proc_matches():
            self._light_left = FULL_CHECK_EVERY - 1
            corrections, read_at = self.stats["drift_corrections"], self.observed_at
            await self._full_check()
            dumped = self.observed_at != read_at  # (a failed dump proves nothing)
            if not due and dumped and self.stats["drift_corrections"] == corrections:
                self._proc_misread()
            return True
        self._light_left -= 1
        self.stats["light_checks"] += 1
        return False

    def _proc_misread(self) -> None:
        """/proc/net/ip_vs differed from what was programmed and the netlink dump did
        not: the kernel misread it. It does while another network namespace holds IPVS
        services (half of a 10,000-destination table shown, measured in the VM on 6.1),
        and every drift check is then a netlink dump. Counted, and said once."""
        self.stats["proc_misreads"] += 1
        if not self._proc_warned:
            self._proc_warned = True
            log.warning(
                "ipvs: /proc/net/ip_vs does not show this namespace's whole IPVS table "
                "although netlink does (the kernel misreads it while another network "
                "namespace holds IPVS services); drift checks dump over netlink every "
                "delay_loop instead, which costs more CPU"
            )

    def _proc_matches(self) -> bool:
        """/proc/net/ip_vs shows our services exactly as ``table`` holds them."""
        text = self.kernel.proc_table()
        if text is None:
            return False
        shown = parse_proc_table(text)
        for key in set(self.table) | set(self.owned):
            entry = self.table.get(key)
            if entry is None:
                if proc_service_id(key) in shown:
                    return False  # ours, not programmed, yet there: let the dump see it
                continue
            ident, want = proc_view(key, entry.service, entry.destinations.values())
            if shown.get(ident) != want:
                return False
        return True

    async def _open(self) -> bool:
        if self.kernel_ok:
            return True
        try:
            await self.kernel.open()
        except IpvsError as exc:
            message = str(exc)
            if self.kernel_error != message:
                self.kernel_error = message
                self.publish("ipvs_unavailable", None, f"IPVS is not available: {message}")
            return False
        if self.kernel_error is not None:
            self.publish("ipvs_available", None, "IPVS is available again")
        self.kernel_ok, self.kernel_error = True, None
        self._resync = True
        return True

    async def _write_plan(self) -> None:
        """Write the start plan for the running config if the state dir's is not for it
        (after the start's first pass, a reload or a drain: never in their way)."""
        self._plan_due = False
        getter = self.ctx.config
        config = getter() if getter is not None else None
        digest = getattr(config, "digest", None)
        if config is None or self.kernel.netns is not None:
            return  # no agent (tests), or a namespace the vigild command does not start in
        if digest is None:
            return  # the running config was not read from a file
        if config.sections.get(self.name, self.section) is not self.section:
            self._plan_due = True  # a reload under way: the agent takes its config after
            return
        state_dir = Path(self.ctx.state_dir)
        key, inputs = current_key(state_dir, digest)
        if written_key(state_dir) == key:
            return
        try:
            if not self.section.virtual_servers:
                write_plan(state_dir, None)
                return
            if take_checked(state_dir, key, self.kernel.family):
                log.debug("ipvs: start plan taken from vigild --check's")
                return
            plan = await build_plan(
                self.section, self.drains.parse(inputs[0]), key, family_id=self.kernel.family
            )
            # (encoding and writing 1.5 MB is half a second under TCG: not on the loop)
            await asyncio.to_thread(write_plan, state_dir, plan)
        except OSError as exc:
            if not self._plan_warned:
                self._plan_warned = True
                log.warning(
                    "ipvs: cannot write the start plan in %s (%s): the next start "
                    "programs IPVS only after it read its config",
                    state_dir,
                    exc.strerror or exc,
                )
            return
        self._plan_warned = False
        log.debug("ipvs: start plan written (%d services)", len(plan.services))

    def _desired(self, vs: VsState) -> dict[ServiceKey, Entry]:
        """The virtual server's desired entries, recomputed only when their inputs change
        (a drift check of a thousand services then costs a dump and a comparison)."""
        views = self.views(vs)
        basis = (vs.cfg, vs.quorum.up, tuple(views.items()))
        if vs.cache is not None and vs.cache[0] == basis:
            return vs.cache[1]
        entries = desired_entries(vs.cfg, views, vs.quorum.up)
        vs.cache = (basis, entries)
        return entries

    def _plan_vs(self, vs: VsState) -> list[Op]:
        ops: list[Op] = []
        for key, want in self._desired(vs).items():
            ops += plan_entry(want, self.table.get(key))
        return ops

    def desired(self) -> dict[ServiceKey, Entry]:
        out: dict[ServiceKey, Entry] = {}
        for vs in self.vs.values():
            out.update(self._desired(vs))
        return out

    async def _full_check(self) -> None:
        """Dump our services, report what someone else changed, correct everything."""
        self.stats["drift_checks"] += 1
        self._op_failed = False  # this check retries them; a new failure sets it again
        wanted = self.desired()
        keys = set(wanted) | set(self.owned) | set(self.table)
        expected = dict(self.table)
        try:
            states = await self.kernel.services(only=keys)
        except IpvsError as exc:
            self._report_failure("dump the IPVS table", str(exc))
            return
        # A thousand services are a lot of pure work: hand the loop back between slices
        # (VRRP adverts and checks must not wait for a drift check).
        slicer = Slicer()
        observed: dict[ServiceKey, Entry] = {}
        for st in states:
            observed.update(entries_from_kernel((st,)))
            await slicer.tick()
        self.observed = {st.service.key: st for st in states}
        self.observed_at = time.time()
        if self._synced_once and (self._stale or not self._resync):
            drift: list[Op] = []
            await run_steps(plan_steps(expected, observed, set(expected), drift), slicer)
            if drift:
                self.stats["drift_corrections"] += 1
                findings = [op.describe() for op in drift]
                self.publish(
                    "drift_corrected",
                    None,
                    f"the IPVS table was changed by someone else; correcting: "
                    f"{'; '.join(findings[:5])}"
                    + (f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""),
                    findings=findings,
                )
        elif not self._synced_once:
            adopted = [str(k) for k in observed if k in wanted]
            if adopted:
                self.publish(
                    "ipvs_adopted",
                    None,
                    f"adopted {len(adopted)} service(s) already in the kernel: "
                    f"{', '.join(adopted[:5])}",
                    services=adopted,
                )
        # leftovers we own that the kernel no longer has: nothing to delete there
        for key in [k for k in self.owned if k not in observed and k not in wanted]:
            self._forget_service(key)
        self.table = dict(observed)
        self._synced_once = True
        self._resync = self._stale = False  # an op below that finds the table changed sets them
        ops: list[Op] = []
        owned = set(self.owned) | set(self.table)
        await run_steps(plan_steps(wanted, observed, owned, ops), slicer)
        await self._apply(ops)

    async def _apply(self, ops: list[Op]) -> None:
        adds = [op.key for op in ops if op.kind is OpKind.ADD_SERVICE]
        skip: set[ServiceKey] = set(self._journal_services(adds)) if adds else set()
        for op in ops:
            if op.key in skip:
                continue
            try:
                await self._send(op)
            except IpvsError as exc:
                self.stats["op_failures"] += 1
                self._op_failed = True
                if op.kind is OpKind.ADD_SERVICE:
                    skip.add(op.key)
                if exc.errno in (errno.EEXIST, errno.ESRCH, errno.ENOENT):
                    self._resync = True  # our picture is stale: dump next pass
                    self._stale = True
                    self._wake.set()
                self._report_failure(str(op), str(exc))
                continue
            self.stats["ops"] += 1
            if self._failing:  # (the op's text is built only when something failed)
                self._failing.pop(str(op), None)
            apply_op(self.table, op)
            if op.kind is OpKind.DELETE_SERVICE:
                self._forget_service(op.key)

    def _journal_services(self, keys: list[ServiceKey]) -> list[ServiceKey]:
        """Journal every service about to be added, in one write (a thousand services at
        start are one write, not a thousand); the ones that must not be added."""
        names = {key: vs.name for vs in self.vs.values() for key in vs.keys}
        refused = []
        for key in keys:
            ep = self.owned.get(key)
            if ep is None:
                refused.append(key)
                continue
            self.ctx.journal.record(service_key_text(ep), service_entry(ep, names.get(key, "")))
        try:
            self.ctx.journal.flush()  # journal first, then the kernel
        except JournalWriteError as exc:
            self._report_failure(f"add {len(keys)} service(s)", f"not added: {exc}")
            return keys
        return refused

    def _forget_service(self, key: ServiceKey) -> None:
        ep = self.owned.get(key)
        configured = any(key in vs.keys for vs in self.vs.values())
        if ep is not None:
            self.ctx.journal.forget(service_key_text(ep))
            if not configured:
                self.owned.pop(key, None)

    async def _send(self, op: Op) -> None:
        k = self.kernel
        if op.kind is OpKind.ADD_SERVICE:
            assert op.service is not None
            await k.add_service(op.service)
        elif op.kind is OpKind.SET_SERVICE:
            assert op.service is not None
            await k.set_service(op.service)
        elif op.kind is OpKind.DELETE_SERVICE:
            await k.delete_service(op.key)
        elif op.kind is OpKind.ADD_DEST:
            assert op.dest is not None
            await k.add_destination(op.key, op.dest)
        elif op.kind is OpKind.SET_DEST:
            assert op.dest is not None
            await k.set_destination(op.key, op.dest)
        else:
            assert op.dest is not None
            await k.delete_destination(op.key, op.dest.addr, op.dest.port)

    async def _send_quietly(self, op: Op) -> None:
        try:
            await self._send(op)
        except IpvsError as exc:
            if exc.errno not in (errno.ESRCH, errno.ENOENT):
                log.warning("ipvs: %s: %s", op, exc)
                return
        self.table.pop(op.key, None)
        ep = self.owned.get(op.key)
        if ep is not None:
            self.ctx.journal.forget(service_key_text(ep))

    def _report_failure(self, what: str, error: str) -> None:
        if self._failing.get(what) == error:
            return
        self._failing[what] = error
        self.publish("ipvs_error", None, f"cannot {what}: {error}", operation=what, error=error)

    async def _sync_daemons(self, *, check: bool) -> None:
        want = self.wanted_daemons()
        if not check and want == self.daemons:
            return
        reason = self._daemon_reason()  # now: the state the daemons follow may change
        try:
            running: dict[str, SyncDaemon] = {d.state: d for d in await self.kernel.sync_daemons()}
        except IpvsError as exc:
            self._report_failure("list the sync daemons", str(exc))
            return
        for state in list(self.daemons):
            if state not in want:
                await self._stop_daemon(state, reason)
        for state, daemon in want.items():
            have = running.get(state)
            if have is not None and _same_daemon(have, daemon):
                if state not in self.daemons:
                    self._journal_daemon(daemon)
                self.daemons[state] = daemon
                continue
            if have is not None:
                await self._stop_daemon(state, "its settings differ", force=True)
            elif state in self.daemons and check:
                self.stats["drift_corrections"] += 1
                self.publish(
                    "drift_corrected",
                    "sync_daemon",
                    f"the {state} sync daemon was stopped by someone else; starting it again",
                    findings=[f"{state} sync daemon missing"],
                )
            if not self._journal_daemon(daemon):
                continue
            try:
                await self.kernel.start_sync_daemon(daemon)
            except IpvsError as exc:
                self._report_failure(f"start {daemon}", str(exc))
                continue
            self._failing.pop(f"start {daemon}", None)
            self.daemons[state] = daemon
            self.publish(
                "sync_daemon",
                "sync_daemon",
                f"{daemon} started: {reason}",
                state=state,
                running=True,
                interface=daemon.interface,
                syncid=daemon.syncid,
            )

    def _daemon_reason(self) -> str:
        cfg = self.section.ipvs_sync_daemon
        if cfg is None:
            return "no sync daemon configured"
        if cfg.instance is None:
            return "no VRRP instance given: master and backup both run"
        return f"VRRP instance {cfg.instance} is {self.vrrp_state(cfg.instance) or 'not running'}"

    def _journal_daemon(self, daemon: SyncDaemon) -> bool:
        self.ctx.journal.record(
            daemon_key(daemon.state), daemon_entry(daemon.state, daemon.interface, daemon.syncid)
        )
        try:
            self.ctx.journal.flush()
        except JournalWriteError as exc:
            self._report_failure(f"start {daemon}", f"not started: {exc}")
            return False
        return True

    async def _stop_daemon(self, state: str, reason: str, *, force: bool = False) -> None:
        daemon = self.daemons.get(state)
        try:
            await self.kernel.stop_sync_daemon(state)  # type: ignore[arg-type]
        except IpvsError as exc:
            if exc.errno != errno.ESRCH:
                self._report_failure(f"stop the {state} sync daemon", str(exc))
                return
        self.daemons.pop(state, None)
        self.ctx.journal.forget(daemon_key(state))
        if daemon is not None or force:
            what = str(daemon) if daemon is not None else f"{state} sync daemon"
            self.publish(
                "sync_daemon",
                "sync_daemon",
                f"{what} stopped: {reason}",
                state=state,
                running=False,
            )

    # ------------------------------------------------------------------ control helpers

    def drained_changed(self, vs_name: str) -> None:
        """A drain was set or lifted: the quorum and the pool follow (and the plan)."""
        self._plan_due = True
        vs = self.vs.get(vs_name)
        if vs is not None:
            self._update_quorum(vs)
            self.mark(vs_name)

    def real_server_state(self, vs_name: str, label: str) -> str:
        """``UP``, ``DOWN`` or ``INIT`` (not reported yet)."""
        vs = self.vs.get(vs_name)
        rs = vs.servers.get(label) if vs is not None else None
        if rs is None or rs.alive is None:
            return "INIT"
        return "UP" if rs.alive else "DOWN"

    def expected_weight(self, vs_name: str, label: str) -> int | None:
        """The weight the planner wants in IPVS for this real server (None: not in IPVS)."""
        vs = self.vs.get(vs_name)
        if vs is None:
            return None
        rs = vs.servers.get(label)
        if rs is None:
            return None
        from vigil.ipvs.planner import desired_pool

        dest = desired_pool(vs.cfg, self.views(vs), vs.quorum.up).get((rs.cfg.address, rs.cfg.port))
        return None if dest is None else dest.weight

    async def real_server_in_kernel(
        self, vs: VirtualServerConfig, rs: RealServerConfig
    ) -> dict[ServiceKey, tuple[int, int, int]]:
        """Per service of ``vs``: (weight, active, inactive connections) of ``rs`` now."""
        out: dict[ServiceKey, tuple[int, int, int]] = {}
        if not self.kernel_ok:
            return out
        async with self._lock:
            for ep in vs.services:
                key = service_key(ep)
                try:
                    dests = await self.kernel.destinations(key)
                except IpvsError:
                    continue
                for d in dests:
                    if (d.destination.addr, d.destination.port) == dest_key(
                        key, rs.address, rs.port, rs.forwarding
                    ):
                        out[key] = (d.destination.weight, d.active_conns, d.inactive_conns)
        return out

    # ------------------------------------------------------------------ reading

    async def refresh(self) -> None:
        """A fresh dump of our services' counters (for the API), if IPVS is there."""
        if not self.kernel_ok:
            return
        async with self._lock:
            keys = set(self.table) | {k for vs in self.vs.values() for k in vs.keys}
            try:
                states = await self.kernel.services(only=keys)
            except IpvsError as exc:
                self._report_failure("dump the IPVS table", str(exc))
                return
            self.observed = {st.service.key: st for st in states}
            self.observed_at = time.time()

    def status(self) -> dict[str, Any]:
        from vigil.ipvs.api import status_section

        return status_section(self)

    async def status_async(self) -> dict[str, Any]:
        from vigil.ipvs.api import status_section_async

        return await status_section_async(self)

    async def collect_metrics_async(self) -> list[Metric]:
        from vigil.ipvs.api import ipvs_metrics_async

        return await ipvs_metrics_async(self)

    def routes(self) -> list[web.RouteDef]:
        from vigil.ipvs.api import ipvs_routes

        return ipvs_routes(self)

    def openapi_paths(self) -> dict[str, Any]:
        from vigil.ipvs.api import IPVS_OPENAPI_PATHS

        return IPVS_OPENAPI_PATHS

    def collect_metrics(self) -> Iterable[Metric]:
        from vigil.ipvs.api import ipvs_metrics

        return ipvs_metrics(self)


def _same_daemon(have: SyncDaemon, want: SyncDaemon) -> bool:
    """A running daemon matches what we want (the kernel fills in what we left out)."""
    if (have.interface, have.syncid) != (want.interface, want.syncid):
        return False
    for attr in ("maxlen", "group", "port", "ttl"):
        if getattr(want, attr) is not None and getattr(want, attr) != getattr(have, attr):
            return False
    return True


def factory(ctx: SubsystemContext) -> IpvsSubsystem:
    return IpvsSubsystem(ctx)
