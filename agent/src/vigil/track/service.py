"""The trackers the core runs: interfaces, check scripts, files and processes.

:class:`TrackerService` is the registry's provider for those four kinds. It holds the
trackers' config section (``vrrp_scripts``, ``track_files``, ``track_processes``) and runs
a tracker only while some consumer wants its key: one tracker per tracked thing however
many instances track it. A reload replaces only trackers whose own definition changed, so
an unrelated reload keeps every state (and causes no priority change at all). Interface
trackers follow the agent's shared netlink monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from vigil.net.netlink import LinkEvent, NetlinkEvent, Resync
from vigil.track.base import Tracker
from vigil.track.config import TrackersConfig
from vigil.track.file import FileTracker
from vigil.track.interface import InterfaceTracker, link_problem
from vigil.track.process import ProcessTracker, ProcScanner
from vigil.track.registry import TrackerRegistry
from vigil.track.script import ScriptTracker

log = logging.getLogger("vigil.track")

__all__ = ["KINDS", "TrackerService"]

KINDS = frozenset({"interface", "script", "file", "process"})

LinkProblem = Callable[[str], Awaitable[str | None]]


class TrackerService:
    """Runs interface, script, file and process trackers on demand and publishes them."""

    kinds = KINDS

    def __init__(self, registry: TrackerRegistry, link_problem: LinkProblem) -> None:
        self.registry = registry
        self.link_problem = link_problem
        self.config = TrackersConfig({}, {}, {})
        self.trackers: dict[str, Tracker] = {}
        self.specs: dict[str, Any] = {}
        self.scanner = ProcScanner()
        self._wanted: set[str] = set()
        self._lock = asyncio.Lock()
        registry.add_provider(self)

    def configure(self, config: TrackersConfig) -> None:
        """The trackers' section at start; ``apply`` after a reload."""
        self.config = config

    async def apply(self, config: TrackersConfig) -> None:
        """After a reload: replace trackers whose definition changed, keep the rest."""
        self.config = config
        await self.ensure(self._wanted)

    def _spec(self, key: str) -> Any:
        kind, _, name = key.partition(":")
        if kind == "interface":
            return name
        spec = self.config.spec(kind, name)
        if spec is None:
            return None
        if kind == "script":
            return (spec, self.config.script_security)
        return spec

    async def ensure(self, keys: set[str]) -> None:
        async with self._lock:
            self._wanted = set(keys)
            wanted = {key: self._spec(key) for key in keys}
            for key in sorted(k for k, spec in wanted.items() if spec is None):
                log.warning("track: %s is tracked but not defined; nothing runs for it", key)
            wanted = {k: spec for k, spec in wanted.items() if spec is not None}
            gone = [k for k in self.specs if k not in wanted]
            changed = [k for k, spec in self.specs.items() if k in wanted and wanted[k] != spec]
            for key in gone:
                await self._remove(key)
            # A changed definition: the new tracker replaces the old one in the registry in
            # one step, so consumers see one change, never "gone, then back".
            replaced = {key: self.trackers[key] for key in changed}
            await self._add({k: wanted[k] for k in changed})
            for old in replaced.values():
                await self._stop_tracker(old)
            if gone or changed:
                log.info("track: stopped or restarted %s", ", ".join(sorted(gone + changed)))
            await self._add({k: s for k, s in wanted.items() if k not in self.trackers})

    async def stop(self) -> None:
        """Stop every tracker (kills running check scripts' process groups)."""
        async with self._lock:
            await asyncio.gather(
                *(self._remove(key) for key in list(self.trackers)), return_exceptions=True
            )
            self._wanted = set()
        await self.scanner.stop()

    async def _add(self, specs: dict[str, Any]) -> None:
        processes: list[ProcessTracker] = []
        for key, spec in specs.items():
            tracker = self._build(key, spec)
            self.trackers[key] = tracker
            self.specs[key] = spec
            if isinstance(tracker, InterfaceTracker):
                tracker.initial(await self.link_problem(tracker.name))
            elif isinstance(tracker, ProcessTracker):
                processes.append(tracker)
            else:
                await tracker.start()
        await self.scanner.add(processes)
        for key in specs:
            self.registry.publish(self.trackers[key])

    @staticmethod
    def _build(key: str, spec: Any) -> Tracker:
        kind = key.partition(":")[0]
        if kind == "interface":
            return InterfaceTracker(spec)
        if kind == "script":
            cfg, secure = spec
            return ScriptTracker(cfg, secure=secure)
        if kind == "file":
            return FileTracker(spec)
        return ProcessTracker(spec)

    async def _remove(self, key: str) -> None:
        tracker = self.trackers.pop(key, None)
        self.specs.pop(key, None)
        if tracker is None:
            return
        self.registry.withdraw(key)
        await self._stop_tracker(tracker)

    async def _stop_tracker(self, tracker: Tracker) -> None:
        if (
            isinstance(tracker, ProcessTracker)
            and self.scanner.trackers.get(tracker.name) is tracker
        ):
            await self.scanner.remove(tracker.name)
        else:
            with contextlib.suppress(Exception):
                await tracker.stop()

    # -- the kernel ---------------------------------------------------------------------

    async def on_kernel_event(self, ev: NetlinkEvent) -> None:
        """Subscribed to the agent's netlink monitor."""
        if isinstance(ev, Resync):
            await self.resync()
        elif isinstance(ev, LinkEvent):
            self.link_event(ev)

    def link_event(self, ev: LinkEvent) -> None:
        tracker = self.trackers.get(f"interface:{ev.ifname}")
        if isinstance(tracker, InterfaceTracker):
            tracker.link_changed(link_problem(not ev.removed, ev.up, ev.carrier, ev.ifname))

    async def resync(self) -> None:
        """After a netlink overflow: ask the kernel for every tracked link again."""
        for tracker in list(self.trackers.values()):
            if isinstance(tracker, InterfaceTracker):
                tracker.link_changed(await self.link_problem(tracker.name))

    # -- API + metrics ------------------------------------------------------------------

    def views(self) -> list[dict[str, Any]]:
        return [t.view() for t in self.registry.trackers()]


def tracker_metrics(trackers: Iterable[Tracker]) -> Iterable[Metric]:
    """``vigil_tracker_up`` for every published tracker, whoever runs it."""
    up = GaugeMetricFamily(
        "vigil_tracker_up",
        "1 while the tracked thing is OK (link up, check passing, quorum met, session up)",
        labels=["tracker", "kind"],
    )
    for tracker in trackers:
        up.add_metric([tracker.name, tracker.kind], 1.0 if tracker.ok else 0.0)
    yield up
