"""The contract between the agent core and the parts that do the work (VRRP, IPVS, BFD).

The core knows no protocol. A subsystem is described by a :class:`SubsystemSpec` (its
name, its config section, how to build it, its ``vigilctl`` commands, its crash clean-up)
and listed once, in :mod:`vigil.subsystems`. The agent builds each one with a
:class:`SubsystemContext` of shared services, starts them in order, hands each its own
config section and, on reload, its own section's diff, asks each for its status section
and metrics, and lets each add API routes.

Specs name their parts as ``"module:attribute"`` strings that are imported when first
needed, so ``vigilctl`` does not load pyroute2 and the import graph stays one-way: the
core never imports a subsystem, only :mod:`vigil.subsystems` does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from vigil.config import GlobalConfig
    from vigil.events import EventPublisher
    from vigil.journal import JournalNamespace
    from vigil.kernel import KernelEvents
    from vigil.track.registry import TrackerRegistry

__all__ = [
    "StartError",
    "Subsystem",
    "SubsystemContext",
    "SubsystemFactory",
    "SubsystemSpec",
    "resolve",
]


class StartError(Exception):
    """A subsystem cannot start for a reason an operator fixes (the message says how).

    The agent logs it as one line and exits non-zero, without a traceback.
    """


def resolve(ref: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{ref!r}: expected 'package.module:attribute'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{ref!r}: module {module_name} has no attribute {attr!r}") from None


@dataclass(frozen=True)
class SubsystemSpec:
    """Everything the core needs to know about one subsystem, by reference.

    - ``section``: its :class:`vigil.config.ConfigSection` (the keys of vigil.yml it owns).
    - ``factory``: ``(SubsystemContext) -> Subsystem``.
    - ``cli``: a :class:`vigil.clikit.CliGroup` (its ``vigilctl`` commands and how
      ``vigilctl status`` shows its section); optional.
    - ``cleanup``: ``async (JournalNamespace, CleanupReport) -> None``: remove what a
      crashed predecessor left in the kernel according to the journal, keeping in the
      journal what could not be removed. Run before the subsystem starts and by
      ``vigild --cleanup`` (one code path); optional.
    - ``keepalived``: a :class:`vigil.keepalived.convert.ImporterPart` subclass: its part
      of ``vigilctl import-keepalived``; optional.
    - ``prepare``: ``(section config, config digest, state dir: Path) -> str | None``: run
      by ``vigild --check`` once a config is valid, to leave in the state dir what a start
      of that config can use before it reads it (IPVS: its start plan); returns a problem
      to mention, which never changes the verdict; optional.
    - ``after``: subsystems that must start before this one (and stop after it).
    - ``warning_kinds``: its event kinds logged at WARNING.
    """

    name: str
    section: str | Any | None
    factory: str | SubsystemFactory
    cli: str | None = None
    cleanup: str | Any | None = None
    keepalived: str | Any | None = None
    prepare: str | Any | None = None
    after: tuple[str, ...] = ()
    warning_kinds: frozenset[str] = field(default_factory=frozenset)

    def load_section(self) -> Any:
        """The config section (None: the subsystem has no part of vigil.yml)."""
        return _load(self.section)

    def load_factory(self) -> SubsystemFactory:
        factory: SubsystemFactory = _load(self.factory)
        return factory

    def load_cli(self) -> Any:
        return _load(self.cli)

    def load_cleanup(self) -> Any:
        return _load(self.cleanup)

    def load_keepalived(self) -> Any:
        return _load(self.keepalived)

    def load_prepare(self) -> Any:
        return _load(self.prepare)


def _load(ref: Any) -> Any:
    """A "module:attribute" reference resolved; anything else (an object, None) as is."""
    return resolve(ref) if isinstance(ref, str) else ref


@dataclass(frozen=True)
class SubsystemContext:
    """What the agent gives every subsystem when it is built.

    - ``events``: publishes events tagged with this subsystem's name.
    - ``registry``: the agent's Prometheus registry (or use ``collect_metrics``).
    - ``state_dir`` / ``router_id`` / ``globals``: where persistent state goes, who we are,
      the agent-wide settings at start.
    - ``journal``: this subsystem's namespace of the crash journal: record what is put in
      the kernel *before* putting it there.
    - ``kernel``: the one netlink monitor of the agent: link and address events, and the
      netlink connection it uses.
    - ``trackers``: the tracker registry: publish named up/down or weight signals, or
      subscribe to other parts' (a BFD session publishes, a VRRP instance subscribes).
    - ``section``: its config section as it will be started with.
    """

    name: str
    events: EventPublisher
    registry: CollectorRegistry
    state_dir: Path
    router_id: str
    globals: GlobalConfig
    journal: JournalNamespace
    kernel: KernelEvents
    trackers: TrackerRegistry
    #: the subsystem's section of the config it will be started with (its status may
    #: show it before start: configured instances as INIT)
    section: Any = None
    #: the agent's running config (after a reload: the new one, once every subsystem
    #: applied it); None where there is no agent (tests)
    config: Callable[[], Any] | None = None


@runtime_checkable
class Subsystem(Protocol):
    """What the agent calls; all coroutine methods run on the agent's event loop.

    - ``start(section)``: bring the subsystem up for its config section's model (called
      once, before the agent reports ready). Raise to abort agent start-up; the agent then
      stops what started.
    - ``apply(section, diff)``: a validated reload: the new section and its diff. Unchanged
      items must not be disturbed. Raising here is logged and reported as a failed reload
      (the agent keeps the old config object, but the subsystem must leave itself in a
      consistent state).
    - ``stop()``: clean shutdown (e.g. VRRP sends priority 0 and removes its VIPs).
    - ``status()``: its JSON-able section of ``/v1/status`` (under its name).
    - ``routes()``: its aiohttp routes (``/v1/<name>/...``), added before the API starts.
      Document them with ``openapi_paths()``.
    - ``openapi_paths()``: OpenAPI 3.1 path items for ``routes()``, merged into the served
      /v1/openapi.json (a test checks every route is documented).
    - ``collect_metrics()``: Prometheus metric families produced at scrape time.

    Optional, for a subsystem whose views are large (IPVS with thousands of real servers):
    ``async status_async()`` and ``async collect_metrics_async()`` give the same as
    ``status()`` and ``collect_metrics()`` but build them between yields to the loop
    (vigil.incremental); the API's ``/v1/status`` and ``/metrics`` use them when present.
    """

    name: str

    async def start(self, section: Any) -> None: ...

    async def apply(self, section: Any, diff: Any) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def routes(self) -> list[web.RouteDef]: ...

    def openapi_paths(self) -> dict[str, Any]: ...

    def collect_metrics(self) -> Iterable[Metric]: ...


SubsystemFactory = Callable[[SubsystemContext], Subsystem]
