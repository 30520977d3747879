"""Verified runtime control of real servers: drain and enable.

- **drain VS RS**: the real server keeps serving its established connections but gets
  no new ones: its weight in every service of the virtual server becomes 0 (it stays in
  IPVS, so its connections are not cut). The call returns once the kernel shows weight 0
  (verified by a fresh read), or fails with what it saw. With ``wait`` it then follows
  the real server's active connections and returns when they reach zero or the timeout
  passes, and says which (``wait.outcome``: ``drained`` or ``timeout``). A director that
  does not carry the virtual server's traffic now (its address is on the other director,
  the VRRP master) does not wait (``standby``): the connections its IPVS shows are the
  sync daemon's copies of the master's, which the master does not keep up to date once
  they close, so they would hold the wait for the copies' timeout (15 minutes for an
  established TCP one) while nothing passes through this director. A drained server
  counts 0 toward the quorum (draining the last one brings the sorry server in). The
  drain is persisted in the state dir (``ipvs-control.json``, written whole and renamed,
  so it is all or nothing) and survives restarts and reloads; a real server removed from
  the config loses its drain.
- **enable VS RS**: the drain is lifted; the real server gets its weight back (its health
  still decides: a dead one stays out). Verified the same way.

Pure parts (:class:`DrainStore`, :class:`DrainWatch`, :func:`resolve_target`) are unit
tested; the orchestration (:class:`DrainControl`) runs in the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.ipvs.config import IpvsConfig, RealServerConfig, VirtualServerConfig

if TYPE_CHECKING:
    from vigil.ipvs.runtime import IpvsSubsystem

log = logging.getLogger("vigil.ipvs.control")

CONTROL_FILE = "ipvs-control.json"
#: how often a wait looks at the real server's connections (seconds)
POLL_INTERVAL = 0.5
DEFAULT_WAIT = 60.0
MAX_WAIT = 3600.0

__all__ = [
    "CONTROL_FILE",
    "ControlError",
    "DrainControl",
    "DrainStore",
    "DrainWatch",
    "Outcome",
    "resolve_target",
    "standby_reason",
]


class ControlError(Exception):
    """An action could not be done or verified; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str, **data: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data


# ---------------------------------------------------------------------------- pure parts


class DrainStore:
    """Drained real servers by virtual server, persisted as JSON (atomic, fsynced)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / CONTROL_FILE

    def load(self) -> dict[str, set[str]]:
        try:
            return self.parse(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.error("cannot read %s (%s); no real server is drained", self.path, exc)
            return {}

    def parse(self, data: bytes | None) -> dict[str, set[str]]:
        """The drained real servers in the file's contents (None: no file)."""
        if data is None:
            return {}
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            log.error("cannot read %s (%s); no real server is drained", self.path, exc)
            return {}
        drained = parsed.get("drained") if isinstance(parsed, dict) else None
        if not isinstance(drained, dict):
            log.error("%s has no 'drained' mapping; no real server is drained", self.path)
            return {}
        return {
            str(vs): {str(rs) for rs in servers}
            for vs, servers in drained.items()
            if isinstance(servers, list) and servers
        }

    def save(self, drained: dict[str, set[str]]) -> None:
        """Write the whole state at once; OSError leaves the previous file untouched."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = {
            "version": 1,
            "drained": {vs: sorted(rs) for vs, rs in sorted(drained.items()) if rs},
        }
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as fh:
                fh.write(json.dumps(body, indent=1) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


class Outcome(enum.StrEnum):
    WAITING = "waiting"
    DRAINED = "drained"  # no active connection left (or the server is not in IPVS)
    TIMEOUT = "timeout"
    STANDBY = "standby"  # this director does not carry the virtual server now


def standby_reason(
    vs: VirtualServerConfig,
    local: set[Any],
    vrrp_state: Callable[[str], str | None],
) -> str | None:
    """Why this director carries none of ``vs``'s traffic now, or None if it may.

    ``local``: the addresses on this node's interfaces. A virtual server with addresses is
    carried where one of them is local (the VRRP master holds the VIP); a firewall-mark one
    follows its ``ha_suspend`` instance. Without either, nothing tells: None.
    """
    addresses = sorted({ep.address for ep in vs.services if ep.address is not None}, key=str)
    if addresses:
        if any(a in local for a in addresses):
            return None
        return (
            f"{', '.join(map(str, addresses))} is not on this director (the other one holds "
            "it): the connections IPVS shows here are the sync daemon's copies"
        )
    if vs.ha_suspend:
        state = vrrp_state(vs.ha_suspend)
        if state != "MASTER":
            return (
                f"VRRP instance {vs.ha_suspend} is {state or 'not running'} here, so this "
                "director does not serve the firewall mark now: its connections are copies"
            )
    return None


@dataclass
class DrainWatch:
    """Decides, from observed connection counts only, when a drain wait is over."""

    started: float
    timeout: float
    last_active: int | None = None

    def observe(self, now: float, active: int | None) -> Outcome:
        """``active`` None: the real server is not in IPVS (nothing left to finish)."""
        self.last_active = active
        if not active:
            return Outcome.DRAINED
        if now >= self.started + self.timeout:
            return Outcome.TIMEOUT
        return Outcome.WAITING


def resolve_target(
    section: IpvsConfig, vs_name: str, rs_text: str
) -> tuple[VirtualServerConfig, RealServerConfig]:
    """The virtual server and real server named; ControlError(404) lists what exists."""
    try:
        vs = section.virtual_server(vs_name)
    except KeyError as exc:
        raise ControlError(404, str(exc.args[0]), virtual_server=vs_name) from None
    try:
        rs = vs.real_server(rs_text)
    except KeyError as exc:
        raise ControlError(
            404, str(exc.args[0]), virtual_server=vs_name, real_server=rs_text
        ) from None
    return vs, rs


# ---------------------------------------------------------------------------- orchestration


class DrainControl:
    """drain / enable for one IPVS subsystem; the API routes call these coroutines."""

    def __init__(self, sub: IpvsSubsystem) -> None:
        self.sub = sub
        self._busy: dict[tuple[str, str], str] = {}

    @contextlib.asynccontextmanager
    async def _exclusive(self, vs: str, rs: str, action: str) -> AsyncIterator[None]:
        busy = self._busy.get((vs, rs))
        if busy is not None:
            raise ControlError(
                409,
                f"{vs}/{rs}: a {busy} is in progress; wait for it to finish and retry",
                virtual_server=vs,
                real_server=rs,
            )
        self._busy[(vs, rs)] = action
        try:
            yield
        finally:
            self._busy.pop((vs, rs), None)

    def _available(self, vs: str, rs: str) -> None:
        sub = self.sub
        if not sub.kernel_ok:
            raise ControlError(
                503,
                f"IPVS is not available, so the change cannot be made and verified: "
                f"{sub.kernel_error or 'not opened yet'}",
                virtual_server=vs,
                real_server=rs,
            )

    async def observe(self, vs: VirtualServerConfig, rs: RealServerConfig) -> dict[str, Any]:
        """What the kernel holds for this real server now (a fresh read)."""
        found = await self.sub.real_server_in_kernel(vs, rs)
        weights = sorted({w for w, _, _ in found.values()})
        state = self.sub.real_server_state(vs.name, rs.label)
        return {
            "state": state,
            "drained": self.sub.is_drained(vs.name, rs.label),
            "in_ipvs": bool(found),
            "ipvs_weight": weights[0] if len(weights) == 1 else (weights or None),
            "active_connections": sum(a for _, a, _ in found.values()) if found else None,
            "inactive_connections": sum(i for _, _, i in found.values()) if found else None,
        }

    def _save(self, vs: str, rs: str) -> None:
        try:
            self.sub.drains.save(self.sub.drained)
        except OSError as exc:
            raise ControlError(
                500,
                f"cannot persist the drain state in {self.sub.drains.path}: "
                f"{exc.strerror or exc}; nothing was changed",
                virtual_server=vs,
                real_server=rs,
            ) from None

    async def drain(
        self, vs_name: str, rs_text: str, *, wait: bool = False, timeout: float | None = None
    ) -> dict[str, Any]:
        sub = self.sub
        vs, rs = resolve_target(sub.section, vs_name, rs_text)
        self._available(vs.name, rs.label)
        t0 = time.monotonic()
        async with self._exclusive(vs.name, rs.label, "drain"):
            before = await self.observe(vs, rs)
            already = sub.is_drained(vs.name, rs.label)
            if not already:
                sub.drained.setdefault(vs.name, set()).add(rs.label)
                try:
                    self._save(vs.name, rs.label)
                except ControlError:
                    sub.drained[vs.name].discard(rs.label)
                    raise
                sub.publish(
                    "real_server_drained",
                    vs.name,
                    f"{rs.label} drained: weight 0, established connections continue",
                    real_server=rs.label,
                    drained=True,
                )
                sub.drained_changed(vs.name)
            await sub.settle()
            after = await self.observe(vs, rs)
            if after["in_ipvs"] and after["ipvs_weight"] != 0:
                raise ControlError(
                    504,
                    f"{vs.name}/{rs.label}: drained, but IPVS still shows weight "
                    f"{after['ipvs_weight']}",
                    virtual_server=vs.name,
                    real_server=rs.label,
                    before=before,
                    observed=after,
                )
            message = "already drained" if already else "drained: weight 0 in IPVS"
            if not after["in_ipvs"]:
                message = (
                    f"{'already drained' if already else 'drained'}; it is not in IPVS now "
                    f"({after['state']}), and gets weight 0 if it comes back"
                )
            result: dict[str, Any] = {
                "action": "drain",
                "virtual_server": vs.name,
                "real_server": rs.label,
                "ok": True,
                "message": message,
                "before": before,
                "after": after,
            }
            if wait:
                limit = DEFAULT_WAIT if timeout is None else timeout
                result["wait"] = await self._wait(vs, rs, limit)
                result["after"] = result["wait"].pop("observed")
                outcome = result["wait"]["outcome"]
                if outcome == Outcome.DRAINED:
                    result["message"] += (
                        f"; no active connection left after {result['wait']['waited_s']:.1f}s"
                    )
                elif outcome == Outcome.STANDBY:
                    result["message"] += f"; not waited for: {result['wait']['reason']}"
                else:
                    result["message"] += (
                        f"; {result['wait']['active_connections']} active connection(s) "
                        f"still open after {limit:g}s"
                    )
            result["elapsed_s"] = round(time.monotonic() - t0, 4)
            return result

    async def _wait(
        self, vs: VirtualServerConfig, rs: RealServerConfig, limit: float
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        watch = DrainWatch(loop.time(), limit)
        observed: dict[str, Any] = {}
        outcome = Outcome.WAITING
        reason: str | None = None
        for _ in range(int(limit / POLL_INTERVAL) + 2):
            observed = await self.observe(vs, rs)
            outcome = watch.observe(loop.time(), observed["active_connections"])
            if outcome is Outcome.WAITING:
                # Looked at on every round: a failover during the wait makes this
                # director the one to wait on, or not.
                reason = await self.sub.standby_reason(vs)
                if reason is not None:
                    outcome = Outcome.STANDBY
            if outcome is not Outcome.WAITING:
                break
            await asyncio.sleep(POLL_INTERVAL)
        if outcome is Outcome.WAITING:
            outcome = Outcome.TIMEOUT
        out = {
            "outcome": str(outcome),
            "active_connections": observed.get("active_connections") or 0,
            "waited_s": round(loop.time() - watch.started, 3),
            "timeout_s": limit,
            "observed": observed,
        }
        if reason is not None and outcome is Outcome.STANDBY:
            out["reason"] = reason
        return out

    async def enable(self, vs_name: str, rs_text: str) -> dict[str, Any]:
        sub = self.sub
        vs, rs = resolve_target(sub.section, vs_name, rs_text)
        self._available(vs.name, rs.label)
        t0 = time.monotonic()
        async with self._exclusive(vs.name, rs.label, "enable"):
            before = await self.observe(vs, rs)
            was = sub.is_drained(vs.name, rs.label)
            if was:
                sub.drained[vs.name].discard(rs.label)
                try:
                    self._save(vs.name, rs.label)
                except ControlError:
                    sub.drained[vs.name].add(rs.label)
                    raise
                sub.publish(
                    "real_server_enabled",
                    vs.name,
                    f"{rs.label} enabled: drain lifted",
                    real_server=rs.label,
                    drained=False,
                )
                sub.drained_changed(vs.name)
            await sub.settle()
            after = await self.observe(vs, rs)
            want = sub.expected_weight(vs.name, rs.label)
            if want is not None and after["ipvs_weight"] != want:
                raise ControlError(
                    504,
                    f"{vs.name}/{rs.label}: enabled, but IPVS shows weight "
                    f"{after['ipvs_weight']} instead of {want}",
                    virtual_server=vs.name,
                    real_server=rs.label,
                    before=before,
                    observed=after,
                )
            if not was:
                message = "was not drained; nothing changed"
            elif want is None:
                message = f"drain lifted; it is not in IPVS now ({after['state']})"
            else:
                message = f"drain lifted: weight {want} in IPVS"
            return {
                "action": "enable",
                "virtual_server": vs.name,
                "real_server": rs.label,
                "ok": True,
                "message": message,
                "before": before,
                "after": after,
                "elapsed_s": round(time.monotonic() - t0, 4),
            }
