"""vigil.incremental: the sliced JSON and Prometheus encoders give the one-shot bytes, and
hand the loop back while they work; the IPVS status and metrics built that way match the
synchronous ones for a thousand real servers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from loop_turns import LoopTurns
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from vigil.incremental import Slicer, dumps_async, exposition_async

pytestmark = pytest.mark.unit


def one_shot(obj: Any) -> str:
    return json.dumps(obj, indent=None, separators=(",", ":"), default=str)


class Odd:
    def __str__(self) -> str:
        return "odd ✓"


DOCS: list[Any] = [
    {},
    [],
    {"a": 1},
    [1, 2.5, None, True, "x"],
    {
        "agent": {"ready": True},
        "ipvs": {"virtual_servers": [{"name": f"vs{i}"} for i in range(50)]},
    },
    {"t": (1, 2, [3, {"k": float("inf")}])},
    {1: "int key", None: "none key", 2.5: "float key"},  # not str keys: encoded whole
    {"deep": [[[[[{"x": [1, {"y": Odd()}]}]]]]]},
    {"ünïcode": "snow ☃", "esc": 'quote " backslash \\ newline \n'},
    [{"a": [i, {"b": list(range(i))}]} for i in range(30)],
]


@pytest.mark.parametrize("doc", DOCS, ids=range(len(DOCS)))
async def test_dumps_async_gives_the_one_shot_bytes(doc: Any) -> None:
    assert await dumps_async(doc, Slicer(0.0)) == one_shot(doc)


async def test_dumps_async_hands_the_loop_back_on_a_big_document() -> None:
    doc = {"ipvs": {"virtual_servers": [{"rs": [{"n": j, "s": "x" * 50} for j in range(10)]}
                                        for _ in range(3000)]}}  # fmt: skip
    slicer = Slicer(0.001)
    async with LoopTurns(limit=100000) as turns:
        text = await dumps_async(doc, slicer)
    assert text == one_shot(doc)
    assert slicer.yields > 0 and turns.count > 0  # the other task ran while it encoded


def registry_with_big_families() -> tuple[CollectorRegistry, list[Any]]:
    reg = CollectorRegistry()
    c = Counter("plain_events", "a counter with _created samples", ["kind"], registry=reg)
    for k in ("a", "b"):
        c.labels(k).inc()
    Gauge("plain_gauge", "help with \\ and\nnewline", registry=reg).set(3)
    big_gauge = GaugeMetricFamily("big_gauge", "many samples", labels=["vs", "rs"])
    big_counter = CounterMetricFamily("big_runs", "many counters", labels=["vs", "rs"])
    for i in range(1234):
        big_gauge.add_metric([f"vs{i // 10}", f"10.0.0.{i % 250}:80"], i / 7)
        big_counter.add_metric([f"vs{i // 10}", f'r"s{i}'], i)

    class Fixed:
        def collect(self) -> list[Any]:
            return [big_gauge, big_counter]

    reg.register(Fixed())  # type: ignore[arg-type]
    return reg, list(reg.collect())


async def test_exposition_async_gives_generate_latest_bytes() -> None:
    reg, families = registry_with_big_families()
    slicer = Slicer(0.0)
    assert await exposition_async(families, slicer) == generate_latest(reg)
    assert slicer.yields > 4  # the two big families went in chunks


async def test_slicer_yields_only_when_the_slice_is_used_up() -> None:
    slicer = Slicer(10.0)
    for _ in range(1000):
        await slicer.tick()
    assert slicer.yields == 0
    slicer = Slicer(0.0)
    start = time.monotonic()
    for _ in range(10):
        await slicer.tick()
    assert slicer.yields == 10 and time.monotonic() - start < 5
