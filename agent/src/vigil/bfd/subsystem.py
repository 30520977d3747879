"""The BFD subsystem: the agent runs :class:`~vigil.bfd.runtime.BfdEngine` for ``bfd``.

What it adds to the engine (which knows sessions by key and nothing of the agent):

* **Config**: sessions by name from :mod:`vigil.bfd.config`; a reload touches only what
  changed (:meth:`BfdSubsystem.apply`): a new timer goes through Poll/Final, a new key or
  send key is a rollover (no flap), a new peer/local/interface/multihop replaces the
  session, a removed session tells its peer with AdminDown (RFC 5882 3.2).
* **Trackers**: each session is published in the agent's tracker registry as a
  :class:`BfdTracker` under ``bfd:<name>``, OK while the session is Up; its details carry
  the last transition's diagnostic, so a consumer can tell a dead path from a peer that
  said AdminDown (VRRP's fast takeover does).
* **Links**: a link event that takes an interface down (admin down, no carrier, removed)
  takes every session on it down at once (diagnostic 5, Path Down), those bound to the
  interface and those whose local address is on it, without waiting for the detection
  time.
* **Events**: one ``bfd_transition`` event per transition, with both diagnostics (a
  transition to Down or AdminDown is logged at WARNING).
* **Control**: ``shutdown`` / ``enable`` of a session (:class:`BfdControl`), verified,
  the shutdown persisted in ``STATE_DIR/bfd-control.json`` across restarts.
* The API (``/v1/bfd/...``, :mod:`vigil.bfd.api`), metrics and the status section.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from vigil.bfd.config import BfdConfig, BfdDiff, BfdSessionConfig
from vigil.bfd.control import MAX_WAIT, BfdControl
from vigil.bfd.packet import State, diag_text
from vigil.bfd.runtime import BfdEngine, BfdEvent, SessionSnapshot
from vigil.bfd.transport import SessionKey, forget_interface_names
from vigil.net.netlink import AddrEvent, LinkEvent, NetlinkEvent, Resync
from vigil.track.base import Tracker, TrackerState

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.metrics_core import Metric

    from vigil.subsystem import SubsystemContext

__all__ = ["BfdSubsystem", "BfdTracker", "factory"]

log = logging.getLogger("vigil.bfd")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: how often a waiting control action looks again between transitions (seconds)
WAIT_STEP = 0.02


# --------------------------------------------------------------------------- tracker


class BfdTracker(Tracker):
    """A BFD session as a tracker: OK while Up, FAILED in every other state.

    ``details()`` carries the session's state, the last transition's diagnostic and the
    remote's, for consumers that treat a remote AdminDown differently from a failure.
    """

    kind = "bfd"

    def __init__(self, name: str) -> None:
        super().__init__(name, TrackerState.FAILED)
        self.reason = "session Down (starting)"
        self._details: dict[str, Any] = {"bfd_state": "Down"}

    def update(self, state: State, reason: str, details: dict[str, Any]) -> None:
        self._details = details
        self._set_state(TrackerState.OK if state is State.UP else TrackerState.FAILED, reason)

    def details(self) -> dict[str, Any]:
        return dict(self._details)


# --------------------------------------------------------------------------- subsystem


class BfdSubsystem:
    """The agent's BFD subsystem (implements :class:`vigil.subsystem.Subsystem`)."""

    name = "bfd"

    def __init__(
        self,
        ctx: SubsystemContext,
        *,
        engine_factory: Callable[..., BfdEngine] | None = None,
    ) -> None:
        self.ctx = ctx
        self.section: BfdConfig = ctx.section if ctx.section is not None else BfdConfig()
        self._engine_factory = engine_factory or BfdEngine
        self.engine: BfdEngine | None = None
        self.keys: dict[str, SessionKey] = {}
        self.configs: dict[str, BfdSessionConfig] = {}
        self.trackers: dict[str, BfdTracker] = {}
        self.errors: dict[str, str] = {}
        self.addresses: dict[IPAddress, str] = {}
        self.control = BfdControl(self, ctx.state_dir)
        self._names: dict[SessionKey, str] = {}
        self._changed = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._started = False

    # ------------------------------------------------------------ life cycle

    async def start(self, section: BfdConfig) -> None:
        self.section = section
        self.control.load()
        self.engine = self._engine_factory(on_state_change=self._on_state, log_transitions=False)
        self._unsubscribe = self.ctx.kernel.subscribe("bfd", self._on_kernel)
        with contextlib.suppress(Exception):
            await self._snapshot_addresses()
        problems = []
        for cfg in section.sessions:
            problem = self._add(cfg)
            if problem:
                problems.append(problem)
        if problems:
            await self.stop()
            raise RuntimeError("; ".join(problems))
        self.engine.start()
        self._started = True

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.engine is not None:
            self.engine.close()
        for name in list(self.trackers):
            self.ctx.trackers.withdraw(f"bfd:{name}")
        self.trackers.clear()
        self.keys.clear()
        self._names.clear()
        self._started = False

    async def apply(self, section: BfdConfig, diff: BfdDiff) -> None:
        """Reload: removed and re-created sessions go first, then changes, then new ones.

        A session's tracker outlives a re-creation (consumers see a state change, never a
        "gone, then back"). Problems (a port another daemon holds) are collected and
        raised at the end, after everything else was applied.
        """
        assert self.engine is not None
        self.section = section
        new = {cfg.name: cfg for cfg in section.sessions}
        problems: list[str] = []
        for name in diff.removed:
            self._remove(name, withdraw=True)
        self.control.forget(diff.removed)
        for name in diff.recreated:
            self._remove(name, withdraw=False)
        for name in diff.changed:
            if name in diff.recreated or name not in self.keys:
                continue
            cfg = new[name]
            self.configs[name] = cfg
            try:
                self.engine.update_session(self._spec(cfg))
            except (KeyError, ValueError) as exc:
                problems.append(f"bfd session {name}: {exc}")
        for name in (*diff.recreated, *diff.added):
            if name in new and name not in self.keys:
                problem = self._add(new[name])
                if problem:
                    problems.append(problem)
        for name in diff.changed:  # a session that failed to start before: try again
            if name in new and name not in self.keys and name not in diff.recreated:
                problem = self._add(new[name])
                if problem:
                    problems.append(problem)
        if problems:
            raise RuntimeError("; ".join(problems))

    # ------------------------------------------------------------ sessions

    def _spec(self, cfg: BfdSessionConfig) -> Any:
        return cfg.spec(admin_down=cfg.admin_down or cfg.name in self.control.shutdown)

    def _add(self, cfg: BfdSessionConfig) -> str | None:
        assert self.engine is not None
        self.configs[cfg.name] = cfg
        tracker = self.trackers.get(cfg.name)
        if tracker is None:
            tracker = BfdTracker(cfg.name)
            self.trackers[cfg.name] = tracker
        try:
            key = self.engine.add_session(self._spec(cfg))
        except (OSError, ValueError) as exc:
            message = f"bfd session {cfg.name}: cannot start: {exc}"
            self.errors[cfg.name] = str(exc)
            log.error("%s", message)
            tracker.update(State.DOWN, f"cannot start: {exc}", {"bfd_state": "Down"})
            self.ctx.trackers.publish(tracker)
            return message
        self.errors.pop(cfg.name, None)
        self.keys[cfg.name] = key
        self._names[key] = cfg.name
        state = self.engine.state(key)
        tracker.update(state, f"session {state}", self._tracker_details(cfg.name))
        self.ctx.trackers.publish(tracker)
        return None

    def _remove(self, name: str, *, withdraw: bool) -> None:
        key = self.keys.pop(name, None)
        self.errors.pop(name, None)
        if key is not None and self.engine is not None:
            self._names.pop(key, None)
            with contextlib.suppress(KeyError):
                self.engine.remove_session(key)
        self.configs.pop(name, None)
        if withdraw:
            self.trackers.pop(name, None)
            self.ctx.trackers.withdraw(f"bfd:{name}")

    def session_names(self) -> list[str]:
        return [cfg.name for cfg in self.section.sessions]

    def _key(self, name: str) -> SessionKey:
        key = self.keys.get(name)
        if key is None:
            known = ", ".join(self.session_names()) or "none"
            if name in self.errors:
                raise KeyError(f"BFD session {name!r} is not running: {self.errors[name]}")
            raise KeyError(f"unknown BFD session {name!r}; this agent has: {known}")
        return key

    def admin_down(self, name: str) -> None:
        assert self.engine is not None
        self.engine.admin_down(self._key(name), "shut down by the operator")

    def admin_up(self, name: str) -> None:
        assert self.engine is not None
        self.engine.admin_up(self._key(name), "enabled by the operator")

    def snapshot(self, name: str) -> SessionSnapshot:
        assert self.engine is not None
        return self.engine.snapshot([self._key(name)])[0]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (bounded) until ``predicate()``: looked at on every transition and every
        :data:`WAIT_STEP` (remote states change with packets, not transitions)."""
        deadline = time.monotonic() + max(0.0, min(timeout, MAX_WAIT))
        for _ in range(int(MAX_WAIT / WAIT_STEP) + 2):
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(WAIT_STEP, left))
        return predicate()  # pragma: no cover - the loop ends on the deadline first

    # ------------------------------------------------------------ engine events

    def _tracker_details(self, name: str) -> dict[str, Any]:
        snap = self.snapshot(name)
        last = snap.last_transition
        return {
            "bfd_state": str(snap.state),
            "remote_state": str(snap.remote_state),
            "diag": int(snap.local_diag),
            "diag_text": snap.local_diag.text,
            "remote_diag": int(snap.remote_diag),
            "remote_diag_text": diag_text(snap.remote_diag),
            "trigger": None if last is None else str(last.trigger),
            "peer": str(snap.key.peer),
            "detection_time": snap.detection_time,
        }

    def _on_state(self, event: BfdEvent) -> None:
        """Every transition: one event (the log line), then the tracker (its consumers)."""
        name = self._names.get(event.key, event.name)
        tr = event.transition
        details = self._tracker_details(name) if name in self.keys else {}
        data = {
            "old": str(tr.old),
            "new": str(tr.new),
            "trigger": str(tr.trigger),
            "diag": int(tr.diag),
            "diag_text": tr.diag.text,
            "reason": tr.reason,
            "remote_state": details.get("remote_state"),
            "remote_diag": details.get("remote_diag"),
            "remote_diag_text": details.get("remote_diag_text"),
            "peer": str(event.key.peer),
            "detection_time": details.get("detection_time"),
            "monotonic": tr.time,
        }
        self._publish(
            "bfd_transition",
            name,
            tr.describe(),
            warning=tr.new in (State.DOWN, State.ADMIN_DOWN),
            **data,
        )
        tracker = self.trackers.get(name)
        if tracker is not None:
            tracker.update(tr.new, tr.describe(), details)
        self._changed.set()

    def _publish(
        self, kind: str, instance: str, message: str, *, warning: bool, **data: Any
    ) -> None:
        events = self.ctx.events
        bus = getattr(events, "bus", None)
        if bus is not None:  # Down and AdminDown at WARNING, Up and Init at INFO
            bus.publish(
                kind, instance, message, subsystem=events.subsystem, warning=warning, **data
            )
        else:
            events.publish(kind, instance, message, **data)

    # ------------------------------------------------------------ kernel events

    async def _snapshot_addresses(self) -> None:
        addrs = await self.ctx.kernel.netlink.addresses()
        self.addresses = {a.address.ip: a.ifname for a in addrs}

    async def _on_kernel(self, ev: NetlinkEvent) -> None:
        if isinstance(ev, Resync):
            forget_interface_names()
            self.addresses = {a.address.ip: a.ifname for a in ev.addresses}
            for link in ev.links:
                if not (link.up and link.carrier):
                    self.link_down(link.name, "interface down (after a netlink resync)")
            return
        if isinstance(ev, AddrEvent):
            if ev.added:
                self.addresses[ev.address.ip] = ev.ifname
            elif self.addresses.get(ev.address.ip) == ev.ifname:
                del self.addresses[ev.address.ip]
            return
        if isinstance(ev, LinkEvent):
            if ev.removed:
                forget_interface_names()
            if not ev.running:
                what = (
                    "was removed"
                    if ev.removed
                    else "went down"
                    if not ev.up
                    else "lost its carrier"
                )
                self.link_down(ev.ifname, f"interface {ev.ifname} {what}")

    def link_down(self, ifname: str, reason: str) -> None:
        """Sessions on ``ifname`` (bound to it, or sending from one of its addresses)
        go Down at once with diagnostic 5 (Path Down)."""
        if self.engine is None:
            return
        for name, key in list(self.keys.items()):
            on_it = key.interface == ifname or (
                key.local is not None and self.addresses.get(key.local) == ifname
            )
            if on_it:
                with contextlib.suppress(KeyError):
                    self.engine.path_down(key, reason)
                    log.debug("(bfd %s) %s", name, reason)

    # ------------------------------------------------------------ API + metrics

    def view(self, name: str) -> dict[str, Any]:
        """One session for the API: the engine's snapshot plus its config and tracker."""
        cfg = self.configs.get(name) or self.section.session(name)
        if name not in self.keys:
            return self._placeholder(cfg)
        out = self.snapshot(name).to_dict()
        out["config"] = cfg.to_dict(redact=True)
        out["profile"] = cfg.profile
        out["tracker"] = f"bfd:{name}"
        out["shutdown_by_operator"] = name in self.control.shutdown
        out["error"] = None
        return out

    def _placeholder(self, cfg: BfdSessionConfig) -> dict[str, Any]:
        return {
            "name": cfg.name,
            "peer": str(cfg.peer),
            "local": None if cfg.local is None else str(cfg.local),
            "interface": cfg.interface,
            "multihop": cfg.multihop,
            "state": "AdminDown" if cfg.admin_down else "Down",
            "remote_state": "Down",
            "local_diag": 0,
            "local_diag_text": "No Diagnostic",
            "remote_diag": 0,
            "remote_diag_text": "No Diagnostic",
            "tx_interval": None,
            "rx_interval": None,
            "detection_time": None,
            "uptime": None,
            "rtt": None,
            "counters": {},
            "rejects": {},
            "auth_failures": 0,
            "config": cfg.to_dict(redact=True),
            "profile": cfg.profile,
            "tracker": f"bfd:{cfg.name}",
            "shutdown_by_operator": cfg.name in self.control.shutdown,
            "error": self.errors.get(cfg.name) or ("not started" if not self._started else None),
        }

    def views(self) -> list[dict[str, Any]]:
        return [self.view(name) for name in self.session_names()]

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sessions": self.views()}
        stats = self.engine.stats() if self.engine is not None else {}
        out["unmatched"] = stats.get("unmatched", {})
        # how the engine runs: timer wake-ups, datagrams taken by the short path for
        # repeats, and whether it reads datagrams on its timer (many sessions)
        out["engine"] = {k: stats.get(k) for k in ("wakeups", "repeats", "polling")}
        return out

    def routes(self) -> list[web.RouteDef]:
        from vigil.bfd.api import bfd_routes

        return bfd_routes(self)

    def openapi_paths(self) -> dict[str, Any]:
        from vigil.bfd.api import BFD_OPENAPI_PATHS

        return BFD_OPENAPI_PATHS

    def collect_metrics(self) -> Iterable[Metric]:
        from vigil.bfd.api import bfd_metrics

        return list(bfd_metrics(self))


def factory(ctx: SubsystemContext) -> BfdSubsystem:
    return BfdSubsystem(ctx)
