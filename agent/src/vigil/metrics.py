"""Prometheus metrics of the agent core, on the agent's own registry.

A private CollectorRegistry (not the global default) keeps several agents in one test
process apart and lets subsystems add collectors without import-time side effects.
Subsystem metrics are pulled at scrape time through `SubsystemCollector`.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterable, Iterator

# From prometheus_client's modules, not its package: the package imports its HTTP, WSGI
# and push-gateway clients too (see vigil.promtext).
from prometheus_client.metrics import Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from vigil import __version__
from vigil.events import Event
from vigil.promtext import CONTENT_TYPE as CONTENT_TYPE_LATEST
from vigil.promtext import exposition

__all__ = ["CONTENT_TYPE_LATEST", "AgentMetrics", "SubsystemCollector"]

log = logging.getLogger("vigil.metrics")


class SubsystemCollector(Collector):
    """Calls each subsystem's `collect_metrics()` at scrape time; one failing is logged."""

    def __init__(self, sources: Callable[[], Iterable[tuple[str, Callable[[], Iterable[Metric]]]]]):
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for name, collect in self._sources():
            try:
                yield from collect()
            except Exception:
                log.exception("metrics of subsystem %s failed", name)


class AgentMetrics:
    """The core metrics: build info, up, reloads, events by kind, process stats."""

    def __init__(self, registry: CollectorRegistry | None = None, router_id: str = "") -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.build_info = Gauge(
            "vigil_build_info",
            "vigild build: always 1; the labels carry the version",
            ["version", "python", "router_id"],
            registry=self.registry,
        )
        self.build_info.labels(__version__, platform.python_version(), router_id).set(1)
        self.up = Gauge(
            "vigil_up", "1 while the agent is ready (subsystems started)", registry=self.registry
        )
        self.degraded = Gauge(
            "vigil_degraded",
            "1 while the agent runs but cannot fully do its job (GET /v1/health says why)",
            registry=self.registry,
        )
        self.reloads = Counter(
            "vigil_config_reloads",
            "Config reloads by result (success, failure)",
            ["result"],
            registry=self.registry,
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self.last_reload = Gauge(
            "vigil_config_last_reload_timestamp_seconds",
            "Time of the last successful config load (start or reload)",
            registry=self.registry,
        )
        self.events = Counter(
            "vigil_events",
            "Events published, by kind and the subsystem that published them",
            ["kind", "subsystem"],
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "vigil_event_loop_lag_seconds",
            "Worst lateness of the event loop over the last 10-20 s (timers, adverts and BFD "
            "packets are late by as much)",
            registry=self.registry,
        )
        self.loop_stalls = Gauge(
            "vigil_event_loop_stalls",
            "Times the event loop ran more than 0.25 s late since the start",
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)

    def count_event(self, event: Event) -> None:
        """EventBus listener."""
        self.events.labels(event.kind, event.subsystem).inc()

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        return exposition(self.registry.collect())
