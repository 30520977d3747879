"""The tracker registry: named up/down (or weight) signals that any part can publish.

A :class:`~vigil.track.base.Tracker` is published under its key (``kind:name``:
``script:chk_haproxy``, ``interface:eth1``, ``bfd:upstream``, ``ipvs_quorum:web``) by
whoever runs it, and anyone may watch a key, before or after it is published. Consumers
(VRRP instances) say which keys they want with :meth:`TrackerRegistry.want`; keys of the
kinds a *provider* serves (the core's :class:`~vigil.track.service.TrackerService` serves
interfaces, scripts, files and processes) are then started on demand and stopped when
nobody wants them any more. Keys of other kinds simply appear when their publisher (the
BFD subsystem) publishes them.

Watchers are plain callables ``(key, tracker_or_None, what)`` called synchronously, with
``what`` one of ``"published"`` (it appeared, or a new one replaced it), ``"changed"``
(its state or value changed) and ``"withdrawn"`` (tracker None).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from vigil.track.base import Tracker

log = logging.getLogger("vigil.track")

__all__ = ["Provider", "TrackerRegistry", "Watcher"]

Watcher = Callable[[str, Tracker | None, str], None]


class Provider(Protocol):
    """Runs trackers of some kinds on demand (see :class:`TrackerService`)."""

    kinds: frozenset[str]

    async def ensure(self, keys: set[str]) -> None:
        """Run exactly these keys of the provider's kinds (start new ones, stop others)."""


class TrackerRegistry:
    """Published trackers by key, their watchers, and who wants which keys."""

    def __init__(self) -> None:
        self._trackers: dict[str, Tracker] = {}
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self._watchers: dict[str, list[Watcher]] = {}
        self._wanted: dict[str, set[str]] = {}
        self._providers: list[Provider] = []

    # -- publishing -------------------------------------------------------------------

    def publish(self, tracker: Tracker) -> None:
        """Make ``tracker`` visible under its key (replacing one published before)."""
        key = tracker.key
        old = self._trackers.get(key)
        if old is tracker:
            return
        if old is not None:
            self._unsubscribe.pop(key, lambda: None)()
        self._trackers[key] = tracker

        def changed(t: Tracker) -> None:
            self._changed(key, t, "changed")

        self._unsubscribe[key] = tracker.subscribe(changed)
        self._changed(key, tracker, "published")

    def withdraw(self, key: str) -> None:
        """The tracker under ``key`` is gone (its definition or session was removed)."""
        if self._trackers.pop(key, None) is None:
            return
        self._unsubscribe.pop(key, lambda: None)()
        self._changed(key, None, "withdrawn")

    def get(self, key: str) -> Tracker | None:
        return self._trackers.get(key)

    def trackers(self) -> list[Tracker]:
        return list(self._trackers.values())

    def __contains__(self, key: object) -> bool:
        return key in self._trackers

    # -- consuming --------------------------------------------------------------------

    def watch(self, key: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(key, tracker, what)`` on every change of ``key``; returns unwatch."""
        self._watchers.setdefault(key, []).append(watcher)

        def unwatch() -> None:
            watchers = self._watchers.get(key, [])
            if watcher in watchers:
                watchers.remove(watcher)
            if not watchers:
                self._watchers.pop(key, None)

        return unwatch

    def add_provider(self, provider: Provider) -> None:
        self._providers.append(provider)

    async def want(self, owner: str, keys: Iterable[str]) -> None:
        """``owner`` needs exactly ``keys`` now; providers start and stop trackers to match.

        When this returns, every wanted key a provider serves is published with a known
        state (a check script has run once), so consumers can start from the truth.
        """
        self._wanted[owner] = set(keys)
        await self._ensure()

    async def release(self, owner: str) -> None:
        """``owner`` needs nothing any more."""
        if self._wanted.pop(owner, None) is not None:
            await self._ensure()

    @property
    def wanted(self) -> Mapping[str, set[str]]:
        return self._wanted

    async def _ensure(self) -> None:
        union: set[str] = set().union(*self._wanted.values()) if self._wanted else set()
        for provider in self._providers:
            await provider.ensure({key for key in union if key.partition(":")[0] in provider.kinds})

    def _changed(self, key: str, tracker: Tracker | None, what: str) -> None:
        for watcher in list(self._watchers.get(key, [])):
            try:
                watcher(key, tracker, what)
            except Exception:
                log.exception("tracker %s: watcher %r failed", key, watcher)
