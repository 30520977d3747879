"""vigil.promtext writes what prometheus_client's generate_latest writes, byte for byte,
for every kind of family (the agent's own metrics and awkward names, labels and values)."""

from __future__ import annotations

import math

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
    UnknownMetricFamily,
)

from vigil.metrics import AgentMetrics
from vigil.promtext import exposition


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _same(registry: CollectorRegistry) -> bytes:
    # collected once: process_* and other live values may change between two collections
    families = list(registry.collect())
    ours = exposition(families)
    assert ours == generate_latest(_Fixed(families))  # type: ignore[arg-type]
    return ours


def test_every_kind_of_family_is_written_as_generate_latest_writes_it() -> None:
    reg = CollectorRegistry()
    c = Counter("t_requests", "Requests\nwith a \\ newline", ["path", "code"], registry=reg)
    c.labels('/a"b', "200").inc(3)
    c.labels("back\\slash\nline", "5xx").inc(0.5)
    Gauge("t_temp", "A gauge", registry=reg).set(-1.5e-7)
    Gauge("t_big", "Large", registry=reg).set(123456789012.0)
    Gauge("t_inf", "Infinite", registry=reg).set(math.inf)
    Gauge("t_nan", "NaN", registry=reg).set(math.nan)
    Histogram("t_latency", "Latency", buckets=(0.1, 1.0), registry=reg).observe(0.3)
    Summary("t_size", "Size", registry=reg).observe(12)
    Info("t_build", "Build", registry=reg).info({"version": "1.2", "python": "3.11"})
    Enum("t_state", "State", states=["up", "down"], registry=reg).state("down")
    fams: list[Metric] = [
        CounterMetricFamily("t_custom", "Custom counter", labels=["x"]),
        GaugeMetricFamily("t_stamped", "With a timestamp", value=2),
        GaugeHistogramMetricFamily(
            "t_gh", "Gauge histogram", buckets=[("1.0", 4), ("+Inf", 5)], gsum_value=3
        ),
        StateSetMetricFamily("t_ss", "Stateset", value={"a": True, "b": False}),
        UnknownMetricFamily("t_unknown", "Untyped", value=7),
    ]
    fams[0].add_metric(["é ü"], 1.0)  # type: ignore[attr-defined]
    fams[1].samples[0] = fams[1].samples[0]._replace(timestamp=1700000000.5)
    reg.register(_Fixed(fams))  # type: ignore[arg-type]
    text = _same(reg)
    assert b't_requests_total{code="200",path="/a\\"b"} 3.0' in text
    assert b"t_requests_created" in text  # OpenMetrics-only samples, written after


def test_the_agents_own_registry_is_written_the_same() -> None:
    metrics = AgentMetrics(router_id="n1")
    metrics.loop_lag.set(0.004)
    text = _same(metrics.registry)
    assert b"vigil_up" in text and b"process_" in text

    def types(body: bytes) -> list[bytes]:
        return [line for line in body.splitlines() if line.startswith(b"# TYPE")]

    assert types(metrics.exposition()) == types(text)
