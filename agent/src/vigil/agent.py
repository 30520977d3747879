"""The running agent: config, events, metrics, shared services and subsystems.

`Agent` is the core that outlives reloads and knows no protocol. It owns the running
Config, the EventBus, the metrics registry and the services every subsystem shares (the
netlink monitor, the crash journal, the tracker registry and the trackers the core runs),
builds each subsystem listed in :mod:`vigil.subsystems` with a context of those services,
and is the only place a config is swapped (start, SIGHUP and POST /v1/reload all end in
:meth:`Agent.reload_from_file`).

Order matters to operators: the shared services start first; then, for each subsystem in
its declared order, its crash clean-up runs (what a killed predecessor left in the kernel)
and it starts with its own section of the config; on stop, subsystems stop in reverse
order, then the services.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric

from vigil import __version__, subsystems
from vigil.config import Config, ConfigError, diff_configs, load_config
from vigil.events import EventBus, EventPublisher
from vigil.journal import CleanupReport, Journal, JournalWriteError
from vigil.kernel import KernelEvents
from vigil.log import LEVELS, set_level
from vigil.looplag import LoopLag
from vigil.metrics import AgentMetrics, SubsystemCollector
from vigil.sched import apply_realtime_priority, current_policy
from vigil.sdnotify import SdNotifier
from vigil.subsystem import StartError, Subsystem, SubsystemContext, SubsystemSpec
from vigil.track.registry import TrackerRegistry
from vigil.track.service import TrackerService, tracker_metrics

__all__ = ["Agent", "ReloadResult"]

log = logging.getLogger("vigil.daemon")

#: the section of the trackers the core runs (see vigil.track.config)
TRACK_SECTION = "track"
#: A failed reload logs at most this many of its issues (all of them are in the event).
MAX_LOGGED_ISSUES = 20


def freeze_heap() -> None:
    """Move what is alive now (the config, the subsystems' state) out of the cyclic
    garbage collector's sight (``gc.freeze``). With thousands of real servers that is a
    million objects, and every full collection walked them all: a pause of up to a second
    on the event loop. Reference counting still frees them; only a reference cycle among
    them that becomes garbage later (an old config after a reload) is kept.

    Then hand the C heap's free pages back to the system (glibc's ``malloc_trim``): what
    reading the config used and freed, about 3 MB of resident memory with a thousand
    real servers, would otherwise stay with the process."""
    gc.collect()
    gc.freeze()
    _malloc_trim()


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        pass


@dataclass
class ReloadResult:
    """Outcome of one reload attempt, as the API and SIGHUP report it."""

    ok: bool
    changed: bool = False
    diff: dict[str, Any] = field(default_factory=dict)
    issues: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: HTTP status the API answers with: 200, 409 would stop everything and was not
    #: confirmed, 422 invalid config, 500 apply failed, 503 not running (starting or stopping)
    code: int = 200

    def to_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"changed": self.changed, "diff": self.diff}
        return {"error": self.error, "issues": self.issues}


class Agent:
    """The running agent: config, events, metrics, services and subsystems, across reloads."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str,
        socket_path: str,
        state_dir: Path,
        specs: Sequence[SubsystemSpec] | None = None,
        sections: Sequence[Any] | None = None,
        notifier: SdNotifier | None = None,
        log_level_fixed: bool = False,
        netns: str | None = None,
    ) -> None:
        self.config = config
        # router_id names this agent in metrics labels and the subsystems' context, which
        # are fixed at start: a reload changing it takes effect at the next restart.
        self._router_id = str(getattr(config.globals, "router_id", "") or socket.gethostname())
        self.config_path = config_path
        self.socket_path = socket_path
        self.state_dir = state_dir
        self.loaded_at = time.time()
        #: why global.realtime_priority is not in force (None: it is, or it is 0)
        self.scheduling_problem: str | None = None
        self.notifier = notifier or SdNotifier(address="")
        self.log_level_fixed = log_level_fixed
        self.phase = "starting"  # starting -> running -> stopping -> stopped
        self._started_mono = time.monotonic()
        self._reload_lock = asyncio.Lock()
        self.specs = list(subsystems.specs() if specs is None else specs)
        self.sections = list(
            sections
            if sections is not None
            else [
                *(subsystems.resolve(ref) for ref in subsystems.CORE_SECTIONS),
                *(s for s in (spec.load_section() for spec in self.specs) if s is not None),
            ]
        )
        self.events = EventBus()
        self.metrics = AgentMetrics(router_id=self.router_id)
        #: subsystem families built ahead by metrics_exposition(), during its collect()
        self._prefetched_metrics: dict[str, list[Any]] | None = None
        self.events.listeners.append(self.metrics.count_event)
        # the services every subsystem shares
        self.journal = Journal(state_dir, on_error=self._journal_error)
        self.kernel = KernelEvents(netns)
        self.trackers = TrackerRegistry()
        self.tracker_service = TrackerService(self.trackers, self.kernel.link_problem)
        self._kernel_unsubscribe = self.kernel.subscribe(
            "trackers", self.tracker_service.on_kernel_event, order=100
        )
        self.subsystems: list[Subsystem] = []
        self._spec_of: dict[str, SubsystemSpec] = {}
        for spec in self.specs:
            sub = spec.load_factory()(self._context(spec))
            self.subsystems.append(sub)
            self._spec_of[sub.name] = spec
        self._running: list[Subsystem] = []
        self._services_started = False
        self.loop_lag = LoopLag()
        self.metrics.loop_lag.set_function(self.loop_lag.worst)
        self.metrics.loop_stalls.set_function(lambda: float(self.loop_lag.stalls))
        self.metrics.degraded.set_function(lambda: 1.0 if self.ready and self.problems() else 0.0)
        self.metrics.add_collector(
            SubsystemCollector(
                lambda: [
                    ("trackers", lambda: tracker_metrics(self.trackers.trackers())),
                    *((s.name, self._collector_of(s)) for s in self.subsystems),
                ]
            )
        )

    def _collector_of(self, sub: Subsystem) -> Callable[[], Iterable[Metric]]:
        """The subsystem's families: those ``metrics_exposition`` built ahead, if it did."""

        def collect() -> Iterable[Metric]:
            ready = self._prefetched_metrics
            if ready is not None and sub.name in ready:
                return ready[sub.name]
            return sub.collect_metrics()

        return collect

    def _journal_error(self, namespace: str, message: str | None) -> None:
        """A journal's writes started failing (an event at WARNING), or work again."""
        if message is not None:
            self.events.publish(
                "journal_write_failed",
                None,
                f"{namespace}: {message}; nothing new is added to the kernel until it can "
                f"be written: free space in or fix the permissions of {self.state_dir}",
                warning=True,
                namespace=namespace,
                error=message,
            )
        else:
            self.events.publish(
                "journal_writable",
                None,
                f"{namespace}: the state journal can be written again",
                namespace=namespace,
            )

    def _context(self, spec: SubsystemSpec) -> SubsystemContext:
        return SubsystemContext(
            name=spec.name,
            events=EventPublisher(self.events, spec.name, spec.warning_kinds),
            registry=self.metrics.registry,
            state_dir=self.state_dir,
            router_id=self.router_id,
            globals=self.config.globals,
            journal=self.journal.namespace(spec.name),
            kernel=self.kernel,
            trackers=self.trackers,
            section=self.config.sections.get(spec.name),
            config=lambda: self.config,
        )

    # -- read side (the API uses these) -------------------------------------------

    @property
    def router_id(self) -> str:
        return self._router_id

    @property
    def ready(self) -> bool:
        return self.phase == "running"

    @property
    def uptime_s(self) -> float:
        return round(time.monotonic() - self._started_mono, 3)

    def section(self, name: str, config: Config | None = None) -> Any:
        """A subsystem's section of the running (or the given) config; None if it has none."""
        return (config or self.config).sections.get(name)

    def problems(self) -> list[str]:
        """Why a running agent cannot fully do its job (subsystems' ``degraded()``)."""
        out: list[str] = []
        for sub in self.subsystems:
            degraded = getattr(sub, "degraded", None)
            if degraded is None:
                continue
            try:
                out.extend(str(p) for p in degraded())
            except Exception as exc:
                out.append(f"{sub.name}: cannot tell its health: {exc}")
        return out

    def health(self) -> dict[str, Any]:
        """Liveness and readiness; ``status`` is ``degraded`` (and ``problems`` says why)
        when a running agent cannot do its job, e.g. a master that cannot send adverts."""
        problems = self.problems() if self.ready else []
        body: dict[str, Any] = {
            "status": ("degraded" if problems else "ok") if self.ready else self.phase,
            "live": True,
            "ready": self.ready,
            "version": __version__,
            "router_id": self.router_id,
            "uptime_s": self.uptime_s,
            "pid": os.getpid(),
        }
        if problems:
            body["problems"] = problems
        return body

    def status(self, skip: set[str] | None = None) -> dict[str, Any]:
        """The agent's own section, then one section per subsystem under its name (the
        ones in ``skip`` as None: the caller has them)."""
        out: dict[str, Any] = {
            "agent": {
                "router_id": self.router_id,
                "version": __version__,
                "pid": os.getpid(),
                "phase": self.phase,
                "ready": self.ready,
                "uptime_s": self.uptime_s,
                "config_source": self.config_path,
                "config_loaded_at": self.loaded_at,
                "socket": self.socket_path,
                "state_dir": str(self.state_dir),
                "last_event_seq": self.events.last_seq,
                "subsystems": [sub.name for sub in self.subsystems],
                "scheduling": self._scheduling_view(),
                "trackers": self.tracker_service.views(),
            }
        }
        for sub in self.subsystems:
            if skip and sub.name in skip:
                out[sub.name] = None
                continue
            try:
                out[sub.name] = dict(sub.status())
            except Exception as exc:
                log.exception("status of subsystem %s failed", sub.name)
                out[sub.name] = {"error": str(exc)}
        return out

    async def status_async(self) -> dict[str, Any]:
        """``status()`` for the API: a subsystem with ``status_async()`` builds its section
        between yields to the loop (IPVS with thousands of real servers)."""
        out: dict[str, Any] = {}
        for sub in self.subsystems:
            build = getattr(sub, "status_async", None)
            if build is None:
                continue
            try:
                out[sub.name] = dict(await build())
            except Exception as exc:
                log.exception("status of subsystem %s failed", sub.name)
                out[sub.name] = {"error": str(exc)}
        full = self.status(skip=set(out))
        return {k: out.get(k, v) for k, v in full.items()}

    async def metrics_exposition(self) -> bytes:
        """The /metrics text: ``generate_latest`` of the registry, with the families of a
        subsystem that has ``collect_metrics_async()`` built between yields, and the text
        formatted in slices (vigil.incremental)."""
        from vigil.incremental import Slicer, exposition_async

        ready: dict[str, list[Any]] = {}
        for sub in self.subsystems:
            build = getattr(sub, "collect_metrics_async", None)
            if build is not None:
                try:
                    ready[sub.name] = list(await build())
                except Exception:
                    log.exception("metrics of subsystem %s failed", sub.name)
                    ready[sub.name] = []
        self._prefetched_metrics = ready
        try:
            families = list(self.metrics.registry.collect())
        finally:
            self._prefetched_metrics = None
        return await exposition_async(families, Slicer())

    def config_view(self) -> dict[str, Any]:
        return {
            "source": self.config_path,
            "loaded_at": self.loaded_at,
            "config": self.config.to_dict(redact=True),
        }

    def summary(self, config: Config | None = None) -> str:
        """What the config runs: ``2 VRRP instances`` (for log lines and events)."""
        config = config or self.config
        parts = []
        for section in self.sections:
            if section.name in self._spec_of and section.name in config.sections:
                count, what = section.summary(config.sections[section.name])
                parts.append(f"{count} {what}")
        return ", ".join(parts) or "no subsystems"

    def counts(self, config: Config | None = None) -> dict[str, int]:
        config = config or self.config
        return {
            section.name: section.summary(config.sections[section.name])[0]
            for section in self.sections
            if section.name in self._spec_of and section.name in config.sections
        }

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the services, then every subsystem in order (each after its clean-up).

        If one fails, the ones already started are stopped and the error is raised.
        """
        self.notifier.status("starting subsystems")
        self._apply_scheduling(None, self.config)
        try:
            await self._start_services()
            for sub in self.subsystems:
                await self._cleanup(self._spec_of[sub.name])
                await sub.start(self.section(sub.name))
                self._running.append(sub)
        except Exception as exc:
            if isinstance(exc, StartError):
                log.error("agent: cannot start: %s", exc)
            else:
                log.exception("agent: start-up failed")
            await self._stop_running()
            await self._stop_services()
            self.phase = "stopped"
            raise
        self.phase = "running"
        self.metrics.up.set(1)
        self.metrics.last_reload.set(self.loaded_at)
        freeze_heap()
        self.events.publish(
            "agent_started",
            message=f"started (router_id {self.router_id}, {self.summary()}, "
            f"config {self.config_path})",
            router_id=self.router_id,
            version=__version__,
            counts=self.counts(),
        )

    async def _start_services(self) -> None:
        self.loop_lag.start()
        await self.kernel.start()
        self._services_started = True
        track = self.section(TRACK_SECTION)
        if track is not None:
            self.tracker_service.configure(track)

    async def _stop_services(self) -> None:
        if not self._services_started:
            return
        self._services_started = False
        self.loop_lag.stop()
        try:
            await self.tracker_service.stop()
        except Exception:
            log.exception("agent: stopping the trackers failed")
        await self.kernel.stop()
        self.journal.flush()

    async def _cleanup(self, spec: SubsystemSpec) -> None:
        """Run a subsystem's crash clean-up against its journal namespace."""
        hook = spec.load_cleanup()
        if hook is None:
            return
        ns = self.journal.namespace(spec.name)
        if not ns.load():
            return
        publisher = EventPublisher(self.events, spec.name, spec.warning_kinds)

        def emit(kind: str, key: str | None, message: str, data: dict[str, Any]) -> None:
            if kind:
                publisher.publish(kind, key, message, **data)
            else:
                log.info("(%s) %s", key, message)

        report = CleanupReport(spec.name, emit)
        await hook(ns, report, self.kernel.netlink.netns)
        try:
            ns.flush()
        except JournalWriteError as exc:
            log.error("agent: %s: %s", spec.name, exc)

    async def stop(self) -> None:
        """Stop subsystems in reverse order, then the services; each gets its chance."""
        if self.phase in ("stopping", "stopped"):
            return
        self.phase = "stopping"
        self.metrics.up.set(0)
        self.events.publish("agent_stopping", message="stopping")
        await self._stop_running()
        await self._stop_services()
        self.phase = "stopped"
        self.events.close()

    async def _stop_running(self) -> None:
        while self._running:
            sub = self._running.pop()
            try:
                await sub.stop()
            except Exception:
                log.exception("agent: subsystem %s failed to stop cleanly", sub.name)

    async def reload(self, new_config: Config) -> ReloadResult:
        """Apply an already validated config: each part gets its section's diff, then swap."""
        old = self.config
        diff = diff_configs(old, new_config, self.sections)
        changed = (old != new_config) or not diff.empty
        if changed:
            track = self.section(TRACK_SECTION, new_config)
            if track is not None:
                await self.tracker_service.apply(track)
            for sub in self._running:
                section_diff = diff.section(sub.name)
                if section_diff is None or section_diff.empty:
                    continue
                await sub.apply(self.section(sub.name, new_config), section_diff)
        self.config = new_config
        self.loaded_at = time.time()
        self._warn_restart_only(old, new_config)
        self._apply_scheduling(old, new_config)
        if not self.log_level_fixed:
            level = str(getattr(new_config.globals, "log_level", "info"))
            if level in LEVELS:
                set_level(level)
        self.metrics.reloads.labels("success").inc()
        self.metrics.last_reload.set(self.loaded_at)
        if changed:
            freeze_heap()
        diff_dict = diff.to_dict()
        self.events.publish(
            "config_reloaded",
            message=f"config reloaded ({diff.summary() if changed else 'no changes'})",
            changed=changed,
            diff=diff_dict,
        )
        return ReloadResult(ok=True, changed=changed, diff=diff_dict)

    def _scheduling_view(self) -> dict[str, Any]:
        view: dict[str, Any] = dict(zip(("policy", "priority"), current_policy(), strict=True))
        if self.scheduling_problem is not None:
            view["problem"] = self.scheduling_problem
        return view

    def _apply_scheduling(self, old: Config | None, new: Config) -> None:
        """``global.realtime_priority``, at start and when a reload changes it."""
        priority = int(getattr(new.globals, "realtime_priority", 0) or 0)
        before = 0 if old is None else int(getattr(old.globals, "realtime_priority", 0) or 0)
        if priority == before and (old is not None or not priority):
            return
        problem = apply_realtime_priority(priority)
        self.scheduling_problem = (
            None if problem is None else f"global.realtime_priority {priority}: {problem}"
        )
        if problem is not None:
            log.warning("agent: global.realtime_priority: %s; normal policy instead", problem)
        elif priority:
            log.info("agent: running with SCHED_RR priority %d", priority)
        else:
            log.info("agent: running with the normal scheduling policy")

    def _warn_restart_only(self, old: Config, new: Config) -> None:
        for key in ("socket", "state_dir", "router_id"):
            before = getattr(old.globals, key, None)
            after = getattr(new.globals, key, None)
            if before != after:
                log.warning(
                    "agent: global.%s changed from %r to %r; it takes effect at the next "
                    "restart of vigild",
                    key,
                    before,
                    after,
                )

    async def reload_from_file(self, *, confirm_stop_all: bool = False) -> ReloadResult:
        """Reread the configured file; on any problem keep running the old config.

        Used by SIGHUP and POST /v1/reload. Reloads are serialized. A reload that would
        stop everything that runs (the new file keeps none of it) is refused with 409
        unless ``confirm_stop_all`` (the API's ``confirm_stop_all``, ``vigilctl reload
        --confirm-stop-all``; SIGHUP cannot confirm).
        """
        if self.phase != "running":
            log.warning("agent: reload refused: the agent is %s", self.phase)
            return ReloadResult(
                ok=False,
                error=f"the agent is {self.phase}; reload when it is ready (GET /v1/health)",
                code=503,
            )
        async with self._reload_lock:
            self.notifier.reloading(f"reloading {self.config_path}")
            try:
                return await self._reload_from_file(confirm_stop_all)
            finally:
                self.notifier.ready(self.status_line())

    async def _reload_from_file(self, confirm_stop_all: bool) -> ReloadResult:
        try:
            new_config = await asyncio.to_thread(
                load_config, self.config_path, sections=self.sections
            )
        except ConfigError as exc:
            issues = [issue.to_dict() for issue in exc.issues]
            for issue in exc.issues[:MAX_LOGGED_ISSUES]:
                log.warning("agent: reload: %s", issue)
            if len(exc.issues) > MAX_LOGGED_ISSUES:
                log.warning(
                    "agent: reload: ... and %d more issue(s); see vigild --check",
                    len(exc.issues) - MAX_LOGGED_ISSUES,
                )
            return self._reload_failed(
                "config is invalid; the running config is unchanged", issues, 422
            )
        except Exception as exc:  # a loader bug: one line, the same failure path
            log.error("agent: reload: cannot load %s: %r", self.config_path, exc)
            problem = {"path": "", "message": f"cannot load the config: {exc!r}", "line": None}
            return self._reload_failed(
                "config could not be loaded; the running config is unchanged", [problem], 422
            )
        stopped = self._stops_everything(new_config)
        if stopped and not confirm_stop_all:
            names = ", ".join(name for _, name in stopped)
            message = (
                f"this reload would stop everything that runs ({names}) and start none of "
                "it again; the running config is unchanged. If that is what you want, "
                "confirm it: vigilctl reload --confirm-stop-all (POST /v1/reload with "
                '{"confirm_stop_all": true}); SIGHUP cannot confirm'
            )
            log.warning("agent: reload refused: %s", message)
            refusal = {"path": stopped[0][0], "message": message, "line": None}
            return self._reload_failed(message, [refusal], 409)
        try:
            return await self.reload(new_config)
        except Exception as exc:
            log.exception("agent: applying the new config failed")
            return self._reload_failed(
                f"applying the new config failed: {exc}; see the vigild log", [], 500
            )

    def _running_items(self, config: Config) -> list[tuple[str, str]]:
        """(first key of the section, item name) of everything ``config`` runs."""
        out: list[tuple[str, str]] = []
        for section in self.sections:
            if not getattr(section, "configures_work", True) or section.name not in config.sections:
                continue
            items = getattr(section, "items", None)
            if items is None:
                continue
            key = section.keys[0] if section.keys else section.name
            out.extend((key, str(name)) for name in items(config.sections[section.name]))
        return out

    def _stops_everything(self, new: Config) -> list[tuple[str, str]]:
        """What runs now, if the new config keeps none of it; else []."""
        running = self._running_items(self.config)
        keep = set(self._running_items(new))
        return [] if not running or keep.intersection(running) else running

    def _reload_failed(self, message: str, issues: list[dict[str, Any]], code: int) -> ReloadResult:
        self.metrics.reloads.labels("failure").inc()
        self.events.publish(
            "reload_failed",
            message=f"config reload failed: {message} ({len(issues)} issue(s))",
            issues=issues,
        )
        return ReloadResult(ok=False, issues=issues, error=message, code=code)

    def status_line(self) -> str:
        return f"running: router_id {self.router_id}, {self.summary()}"
