"""The contract between the agent core and the parts that do the work (VRRP, IPVS, BFD).

The daemon knows nothing about protocols. It hands each subsystem the running config,
tells it about reloads with a precomputed diff (so a subsystem touches only what
changed and never flaps an unchanged instance), asks it for status and metrics, and lets
it add API routes. A subsystem is built by a factory that receives a `SubsystemContext`
(event bus, metrics registry, state dir, router id), so it publishes events and counts
things the same way as the rest of the agent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from vigil.config import Config, ConfigDiff
    from vigil.events import EventBus

__all__ = ["StartError", "Subsystem", "SubsystemContext", "SubsystemFactory"]


class StartError(Exception):
    """A subsystem cannot start for a reason an operator fixes (the message says how).

    The agent logs it as one line and exits non-zero, without a traceback.
    """


@dataclass(frozen=True)
class SubsystemContext:
    """What the agent gives every subsystem when it is built."""

    events: EventBus
    registry: CollectorRegistry
    state_dir: Path
    router_id: str


@runtime_checkable
class Subsystem(Protocol):
    """What the agent calls; all coroutine methods run on the agent's event loop.

    - `start(config)`: bring the subsystem up for `config` (called once, before the agent
      reports ready). Raise to abort agent start-up; the agent then stops what started.
    - `apply(new_config, diff)`: a validated reload. `diff` names added / removed /
      changed / unchanged instances; unchanged ones must not be disturbed. Raising here
      is logged and reported as a failed reload (the agent keeps the old config object,
      but the subsystem must leave itself in a consistent state).
    - `stop()`: clean shutdown (e.g. VRRP sends priority 0 and removes its VIPs).
    - `status()`: JSON-able dict. The key "instances", if present, is a list of dicts
      each with at least "name" and "state"; the agent merges them into /v1/status.
    - `routes()`: extra aiohttp routes (e.g. `web.get("/v1/vrrp/instances", h)`), added
      to the API app before it starts. Document them with `openapi_paths()`.
    - `openapi_paths()`: OpenAPI 3.1 path items for `routes()`, merged into the served
      /v1/openapi.json (the coverage test checks every route is documented).
    - `collect_metrics()`: prometheus metric families produced at scrape time (the agent
      wraps this in a Collector on its own registry). Subsystems may also register
      ordinary metrics on `SubsystemContext.registry` and return nothing here.
    """

    name: str

    async def start(self, config: Config) -> None: ...

    async def apply(self, config: Config, diff: ConfigDiff) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def routes(self) -> list[web.RouteDef]: ...

    def openapi_paths(self) -> dict[str, Any]: ...

    def collect_metrics(self) -> Iterable[Metric]: ...


SubsystemFactory = Callable[[SubsystemContext], Subsystem]
