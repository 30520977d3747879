"""Verified runtime control of VRRP instances: maintenance, priority, handover, takeover, GARP.

Why this exists: keepalived has no control API, so operators fail over by stopping the
master (about 60 lost probes at 1 s adverts) and "maintenance" means editing priorities
and reloading. Here every action is a call that returns only once its effect is observed
(state, VIPs in the kernel, the peer's adverts), or fails with what was seen instead.

Semantics (docs/operations.md and docs/api.md describe them for operators):

- **maintenance on**: the instance advertises priority 1 (an override on top of the
  trackers) and holds off preemption indefinitely. A master first hands over,
  make-before-break (below). The flag is persisted in the state dir
  (``vrrp-control.json``) and applied again when the instance starts, so it survives
  agent restarts and reboots. A node in maintenance still takes over from a *dead*
  master as a last resort (at priority 1, so any peer that comes back wins): an unserved
  VIP is worse than one served from a node under maintenance. **maintenance off** drops
  the override and the hold; if this node then outranks the master and preempts, it
  takes mastership back at once, make-before-break (as takeover does).
- **priority VALUE [for S]**: the runtime override (``InstanceRuntime.set_priority_override``),
  1..254, optionally expiring; ``clear`` drops it. It survives reloads, not restarts.
- **handover**: from this MASTER to the best peer. We send priority 0 but keep the VIPs
  (the machine is BACKUP, the kernel still answers); the peer takes over after its skew
  time, advertises and announces (GARP/NA), and once we saw its advert we wait
  :data:`HANDOVER_LINGER` for the announcements to reach clients, then remove the VIPs.
  If no peer advertises within the timeout, we take mastership back (the VIPs never
  left) and the call fails saying so. Afterwards this node holds off preemption until
  ``takeover``, ``maintenance off``, the end of the optional ``hold`` or an agent
  restart; it still takes over from a dead master.
- **takeover**: this BACKUP becomes MASTER. If it does not already outrank the master,
  the override is raised to the master's priority + 1 (it lasts until ``priority
  --clear``). We add the VIPs and announce them *before* preempting, so clients move to
  us while the old master still answers, then become master; the old master drops its
  VIPs on our advert.
- **garp**: resend the master's GARP/NA burst now; only a master may.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vigil.vrrp.machine import PRIORITY_MAX_BACKUP, PRIORITY_MIN, VrrpState
from vigil.vrrp.policy import (
    HANDOVER_LINGER,
    HandoverWatch,
    Outcome,
    default_handover_timeout,
    parse_duration,
    takeover_priority,
)

if TYPE_CHECKING:
    from vigil.subsystem import SubsystemContext
    from vigil.vrrp.config import VrrpInstanceConfig
    from vigil.vrrp.machine import VrrpMachine
    from vigil.vrrp.watch import Pulse

log = logging.getLogger("vigil.vrrp.control")


class Controlled(Protocol):
    """What control needs of an instance (vigil.vrrp.instance.Controlled): its
    machine to read, the verbs it offers, and its pulse to wait on; nothing else."""

    cfg: VrrpInstanceConfig
    machine: VrrpMachine
    loop: asyncio.AbstractEventLoop
    pulse: Pulse
    faults: dict[str, str]
    priority_override: int | None
    vips_kept: str | None

    @property
    def name(self) -> str: ...

    @property
    def source_address(self) -> Any: ...

    def now(self) -> float: ...

    def wanted_priority(self) -> int: ...

    def set_priority_override(self, value: int | None) -> None: ...

    def vip_presence(self) -> list[tuple[str, bool]]: ...

    def force_backup(self, reason: str, *, hold_until: float | None, keep_vips: bool) -> None: ...

    def force_master(self, reason: str) -> None: ...

    def release_hold(self) -> None: ...

    def withdraw_vips(self) -> None: ...

    async def claim_vips(self, reason: str) -> int: ...

    async def announce_now(self) -> int: ...

    async def drain_ops(self) -> None: ...


class ControlHost(Protocol):
    """What control needs of the VRRP subsystem (vigil.vrrp.runtime.VrrpSubsystem)."""

    ctx: SubsystemContext

    @property
    def instances(self) -> Mapping[str, Any]: ...

    def instance(self, name: str) -> Any: ...

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None: ...


CONTROL_FILE = "vrrp-control.json"
# Priority advertised in maintenance: any peer outranks it.
MAINTENANCE_PRIORITY = PRIORITY_MIN
# Bounds for caller-given timeouts (seconds).
MAX_TIMEOUT = 300.0

__all__ = [
    "CONTROL_FILE",
    "HANDOVER_LINGER",
    "ControlError",
    "ControlManager",
    "ControlResult",
    "HandoverWatch",
    "MaintenanceStore",
    "Outcome",
    "default_handover_timeout",
    "parse_duration",
]


class MaintenanceStore:
    """The instances in maintenance, persisted as JSON in the state dir (atomic writes)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / CONTROL_FILE

    def load(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s); no instance is in maintenance", self.path, exc)
            return set()
        names = data.get("maintenance") if isinstance(data, dict) else None
        if not isinstance(names, list):
            log.error("%s has no 'maintenance' list; no instance is in maintenance", self.path)
            return set()
        return {str(n) for n in names}

    def save(self, names: set[str]) -> None:
        """Replace the file with ``names``, all or nothing.

        Raises OSError when it cannot (full or read-only state dir); the file then still
        holds the previous set and no temp file is left behind.
        """
        tmp = self.path.with_suffix(".tmp")
        body = json.dumps({"version": 1, "maintenance": sorted(names)}, indent=1) + "\n"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


# ---------------------------------------------------------------------------- results


class ControlError(Exception):
    """An action could not be done or verified; ``status`` is the HTTP code (409/504/...)."""

    def __init__(self, status: int, message: str, **data: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data


@dataclass
class ControlResult:
    """What an action did: before/after snapshots and how long it took (seconds)."""

    action: str
    instance: str
    message: str
    before: dict[str, Any]
    after: dict[str, Any]
    elapsed_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "instance": self.instance,
            "ok": True,
            "message": self.message,
            "before": self.before,
            "after": self.after,
            "elapsed_s": round(self.elapsed_s, 4),
            **self.extra,
        }


def snapshot(inst: Controlled, control: ControlManager) -> dict[str, Any]:
    """The observed state an action reports before and after itself."""
    m = inst.machine
    hold = m.preempt_hold_until
    return {
        "state": str(m.state),
        "effective_priority": m.effective_priority,
        "master_address": None if m.master_address is None else str(m.master_address),
        "master_priority": m.master_priority,
        "vips_present": [v for v, present in vip_presence(inst) if present],
        "maintenance": inst.name in control.maintenance,
        "preempt_hold": hold is not None and hold > inst.now(),
    }


def vip_presence(inst: Controlled) -> list[tuple[str, bool]]:
    """Each VIP (and excluded VIP) and whether it is in the kernel now."""
    return inst.vip_presence()


# ---------------------------------------------------------------------------- manager


class ControlManager:
    """Runtime control for one VRRP subsystem; the API routes call its coroutines."""

    def __init__(self, sub: ControlHost) -> None:
        self.sub = sub
        self.store = MaintenanceStore(sub.ctx.state_dir)
        self.maintenance: set[str] = self.store.load()
        self.overrides: dict[str, int] = {}
        self._expiry: dict[str, tuple[asyncio.TimerHandle, float]] = {}
        self._hold_timers: dict[str, asyncio.TimerHandle] = {}
        self._busy: dict[str, str] = {}

    # ------------------------------------------------------------------ wiring

    def instance_started(self, inst: Controlled) -> None:
        """Re-apply maintenance (persisted) and a priority override to a (re)started instance."""
        self._apply_priority(inst)
        if inst.name in self.maintenance:
            inst.force_backup("in maintenance (persisted)", hold_until=math.inf, keep_vips=False)
            self.sub.publish(
                "control",
                inst.name,
                "maintenance is on (persisted): priority 1, no preemption",
                action="maintenance",
                enabled=True,
            )

    def close(self) -> None:
        for handle, _ in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        for handle in self._hold_timers.values():
            handle.cancel()
        self._hold_timers.clear()

    def instance_view(self, inst: Controlled) -> dict[str, Any]:
        """Keys merged into the instance's API view."""
        expiry = self._expiry.get(inst.name)
        hold = inst.machine.preempt_hold_until
        now = inst.now()
        wall = time.time() - now
        held = hold is not None and hold > now
        return {
            "maintenance": inst.name in self.maintenance,
            "control": {
                "priority_override": self.overrides.get(inst.name),
                "priority_override_expires": None if expiry is None else expiry[1] + wall,
                "preempt_hold": held,
                "preempt_hold_until": (
                    None if not held or hold is None or math.isinf(hold) else hold + wall
                ),
                "vips_kept": inst.vips_kept,
                "busy": self._busy.get(inst.name),
            },
        }

    def _apply_priority(self, inst: Controlled) -> None:
        if inst.name in self.maintenance:
            value: int | None = MAINTENANCE_PRIORITY
        else:
            value = self.overrides.get(inst.name)
        if inst.priority_override != value:
            inst.set_priority_override(value)

    def _instance(self, name: str) -> Controlled:
        inst = self.sub.instance(name)
        if inst is None:
            have = ", ".join(sorted(self.sub.instances)) or "none"
            raise ControlError(
                404, f"unknown VRRP instance {name!r}; this agent has: {have}", instance=name
            )
        return inst

    @contextlib.asynccontextmanager
    async def _exclusive(self, inst: Controlled, action: str) -> AsyncIterator[None]:
        busy = self._busy.get(inst.name)
        if busy is not None:
            raise ControlError(
                409,
                f"{inst.name}: a {busy} is in progress; wait for it to finish and retry",
                instance=inst.name,
                observed=snapshot(inst, self),
            )
        self._busy[inst.name] = action
        try:
            yield
        finally:
            self._busy.pop(inst.name, None)

    def _persist(self, inst: Controlled, names: set[str]) -> None:
        """Save the maintenance set before acting on it; on failure nothing changes."""
        try:
            self.store.save(names)
        except OSError as exc:
            message = (
                f"cannot persist the maintenance flag in {self.store.path} "
                f"({exc.strerror or exc}); nothing was changed"
            )
            self._event(inst, "maintenance", message, ok=False, error=str(exc.strerror or exc))
            raise ControlError(
                503, f"{inst.name}: {message}", instance=inst.name, observed=snapshot(inst, self)
            ) from None
        self.maintenance = names

    def _event(self, inst: Controlled, action: str, message: str, **data: Any) -> None:
        self.sub.publish("control", inst.name, message, action=action, **data)

    async def _wait(self, inst: Controlled, check: Callable[[], bool], timeout: float) -> bool:
        """Until ``check`` holds or ``timeout``: woken by the instance's changes, no polling."""
        return await inst.pulse.wait_until(check, timeout, clock=inst.now)

    def _fail(
        self,
        inst: Controlled,
        action: str,
        status: int,
        message: str,
        t0: float,
        before: dict[str, Any] | None = None,
        **data: Any,
    ) -> ControlError:
        observed = snapshot(inst, self)
        elapsed = round(inst.now() - t0, 4)
        self._event(inst, action, f"{action} failed: {message}", ok=False, elapsed_s=elapsed)
        return ControlError(
            status,
            f"{inst.name}: {message}",
            instance=inst.name,
            action=action,
            before=before,
            observed=observed,
            elapsed_s=elapsed,
            **data,
        )

    # ------------------------------------------------------------------ priority

    async def set_priority(
        self, name: str, value: int | None, duration: float | None = None
    ) -> dict[str, Any]:
        """Set (or with ``value`` None clear) the runtime override; verified on the machine."""
        inst = self._instance(name)
        t0 = inst.now()
        if value is not None and not PRIORITY_MIN <= value <= PRIORITY_MAX_BACKUP:
            raise ControlError(
                400,
                f"value: must be {PRIORITY_MIN}..{PRIORITY_MAX_BACKUP} (255 is the address "
                f"owner's, set in the config), got {value}",
                field="value",
            )
        if inst.name in self.maintenance and value is not None:
            raise self._fail(
                inst,
                "priority",
                409,
                "is in maintenance (advertising priority 1); run 'maintenance off' first",
                t0,
            )
        before = snapshot(inst, self)
        self._cancel_expiry(inst.name)
        if value is None:
            self.overrides.pop(inst.name, None)
        else:
            self.overrides[inst.name] = value
        self._apply_priority(inst)
        if value is not None and duration is not None:
            handle = inst.loop.call_later(duration, self._expire, inst.name, value)
            self._expiry[inst.name] = (handle, inst.now() + duration)
        if inst.machine.params.address_owner:
            expected = inst.machine.effective_priority  # the owner always runs at 255
        else:
            expected = min(PRIORITY_MAX_BACKUP, max(PRIORITY_MIN, inst.wanted_priority()))
        if inst.machine.effective_priority != expected:
            raise self._fail(
                inst,
                "priority",
                504,
                f"effective priority is {inst.machine.effective_priority}, expected {expected}",
                t0,
                before,
            )
        after = snapshot(inst, self)
        if value is None:
            msg = f"priority override cleared; effective priority {after['effective_priority']}"
        else:
            msg = f"priority override {value}" + (
                f" for {duration:g}s" if duration is not None else " until cleared"
            )
            msg += f"; effective priority {after['effective_priority']}"
        elapsed = inst.now() - t0
        self._event(inst, "priority", msg, ok=True, value=value, duration=duration)
        return ControlResult(
            "priority",
            inst.name,
            msg,
            before,
            after,
            elapsed,
            {"value": value, "duration": duration},
        ).to_dict()

    def _cancel_expiry(self, name: str) -> None:
        old = self._expiry.pop(name, None)
        if old is not None:
            old[0].cancel()

    def _expire(self, name: str, value: int) -> None:
        self._expiry.pop(name, None)
        inst = self.sub.instance(name)
        if self.overrides.get(name) != value:
            return
        del self.overrides[name]
        if inst is None:
            return
        self._apply_priority(inst)
        self._event(
            inst,
            "priority",
            f"priority override {value} expired; effective priority "
            f"{inst.machine.effective_priority}",
            ok=True,
            value=None,
            expired=value,
        )

    # ------------------------------------------------------------------ garp

    async def garp(self, name: str) -> dict[str, Any]:
        inst = self._instance(name)
        t0 = inst.now()
        before = snapshot(inst, self)
        if inst.machine.state is not VrrpState.MASTER:
            raise self._fail(
                inst,
                "garp",
                409,
                f"is {inst.machine.state}, not MASTER; only the master announces the VIPs "
                f"(master here: {before['master_address'] or 'unknown'})",
                t0,
                before,
            )
        frames = await inst.announce_now()
        msg = f"sent {frames} gratuitous ARP/NA frame(s) for {len(before['vips_present'])} VIP(s)"
        self._event(inst, "garp", msg, ok=True, frames=frames)
        return ControlResult(
            "garp",
            inst.name,
            msg,
            before,
            snapshot(inst, self),
            inst.now() - t0,
            {"frames": frames},
        ).to_dict()

    # ------------------------------------------------------------------ handover

    async def handover(
        self, name: str, timeout: float | None = None, hold: float | None = None
    ) -> dict[str, Any]:
        """Planned, make-before-break failover from this master to the best peer."""
        inst = self._instance(name)
        async with self._exclusive(inst, "handover"):
            t0 = inst.now()
            before = snapshot(inst, self)
            if inst.machine.state is not VrrpState.MASTER:
                raise self._fail(
                    inst,
                    "handover",
                    409,
                    f"is {inst.machine.state}, not MASTER; handover moves mastership away "
                    f"from the master (master here: {before['master_address'] or 'unknown'})",
                    t0,
                    before,
                )
            timeout = timeout or default_handover_timeout(inst.machine.learned_interval)
            hold_until = math.inf if hold is None else inst.now() + hold
            self._event(inst, "handover", f"handover requested (timeout {timeout:g}s)")
            outcome, watch = await self._release(inst, "handover requested", timeout, hold_until)
            if outcome is not Outcome.DONE:
                await self._roll_back(inst, "handover", outcome, timeout, t0, before)
            self._arm_hold_timer(inst, hold)
            after = snapshot(inst, self)
            msg = (
                f"handed over to {watch.new_master} (priority {watch.new_priority}); "
                "VIPs removed after its advert; "
                + (
                    "holding off preemption until takeover or maintenance off"
                    if hold is None
                    else f"holding off preemption for {hold:g}s"
                )
            )
            elapsed = inst.now() - t0
            self._event(
                inst,
                "handover",
                msg,
                ok=True,
                elapsed_s=round(elapsed, 4),
                new_master=watch.new_master,
            )
            return ControlResult(
                "handover",
                inst.name,
                msg,
                before,
                after,
                elapsed,
                {
                    "new_master": watch.new_master,
                    "new_master_priority": watch.new_priority,
                    "hold": hold,
                },
            ).to_dict()

    async def _release(
        self, inst: Controlled, reason: str, timeout: float, hold_until: float
    ) -> tuple[Outcome, HandoverWatch]:
        """Priority 0 with the VIPs kept; drop them once a new master advertised."""
        own = inst.source_address
        watch = HandoverWatch(inst.now(), timeout, None if own is None else str(own))
        inst.force_backup(reason, hold_until=hold_until, keep_vips=True)
        deadline = inst.now() + timeout + HANDOVER_LINGER + 1.0
        outcome = Outcome.WAITING

        def observe() -> Outcome:
            m = inst.machine
            return watch.observe(
                inst.now(),
                str(m.state),
                None if m.master_address is None else str(m.master_address),
                m.master_priority,
            )

        # Observed on every change of the instance (an advert, a transition) and at the
        # watch's own deadlines (the linger's end, the timeout): never on a fixed poll.
        while True:
            outcome = observe()
            if outcome not in (Outcome.WAITING, Outcome.LINGER) or inst.now() > deadline:
                break
            wake = min(watch.next_deadline(), deadline + 0.001) - inst.now()
            await inst.pulse.next(max(wake, 0.0))
        if outcome is Outcome.DONE:
            inst.withdraw_vips()
            await inst.drain_ops()
            await self._wait(inst, lambda: not any(p for _, p in vip_presence(inst)), 2.0)
        return outcome, watch

    async def _roll_back(
        self,
        inst: Controlled,
        action: str,
        outcome: Outcome,
        timeout: float,
        t0: float,
        before: dict[str, Any],
    ) -> None:
        """No peer took over: be master again with the VIPs that never left, then fail.

        Maintenance keeps its hold (and priority 1): the first peer that appears wins.
        """
        maintenance = inst.name in self.maintenance
        if not maintenance:
            inst.release_hold()
        if outcome is Outcome.LEFT:
            raise self._fail(
                inst,
                action,
                409,
                f"went to {inst.machine.state} during the {action}; VIPs removed",
                t0,
                before,
                rolled_back=False,
            )
        if inst.machine.state is VrrpState.BACKUP:
            inst.force_master(f"{action} rolled back: no peer took over within {timeout:g}s")
        ok = await self._wait(
            inst,
            lambda: (
                inst.machine.state is VrrpState.MASTER and all(p for _, p in vip_presence(inst))
            ),
            2.0,
        )
        how = (
            "this node's own master-down timer fired first"
            if outcome is Outcome.RETOOK
            else f"no peer advertised within {timeout:g}s"
        )
        state = "stays MASTER with its VIPs" if ok else f"is {inst.machine.state}"
        raise self._fail(
            inst,
            action,
            409,
            f"{action} rolled back: no peer took over ({how}); this node {state}. "
            "Check that a peer runs this instance and can hear this node's adverts"
            + (
                "; maintenance stays on (priority 1): the first peer that appears takes over"
                if maintenance
                else ""
            ),
            t0,
            before,
            rolled_back=True,
        )

    def _arm_hold_timer(self, inst: Controlled, hold: float | None) -> None:
        old = self._hold_timers.pop(inst.name, None)
        if old is not None:
            old.cancel()
        if hold is not None:
            self._hold_timers[inst.name] = inst.loop.call_later(hold, self._hold_expired, inst.name)

    def _hold_expired(self, name: str) -> None:
        self._hold_timers.pop(name, None)
        inst = self.sub.instance(name)
        if inst is not None and name not in self.maintenance:
            inst.release_hold()
            self._event(inst, "handover", "preemption hold after handover ended")

    # ------------------------------------------------------------------ takeover

    async def takeover(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        """This BACKUP becomes MASTER, make-before-break; verified MASTER with VIPs."""
        inst = self._instance(name)
        async with self._exclusive(inst, "takeover"):
            return await self._takeover(inst, "takeover", timeout, override=True)

    async def _takeover(
        self, inst: Controlled, action: str, timeout: float | None, *, override: bool
    ) -> dict[str, Any]:
        t0 = inst.now()
        before = snapshot(inst, self)
        m = inst.machine
        if m.state is VrrpState.MASTER:
            msg = "already MASTER; nothing to do"
            self._event(inst, action, msg, ok=True)
            return ControlResult(
                action, inst.name, msg, before, before, 0.0, {"override": None}
            ).to_dict()
        if m.state is not VrrpState.BACKUP:
            raise self._fail(
                inst,
                action,
                409,
                f"is {m.state}, not BACKUP; fix the fault first "
                f"({', '.join(f'{k}: {v}' for k, v in inst.faults.items()) or 'no reason'})",
                t0,
                before,
            )
        if inst.name in self.maintenance:
            raise self._fail(
                inst, action, 409, "is in maintenance; run 'maintenance off' first", t0, before
            )
        new_override: int | None = None
        if override:
            try:
                new_override = takeover_priority(inst.wanted_priority(), m.master_priority)
            except ValueError as exc:
                raise self._fail(inst, action, 409, str(exc), t0, before) from None
        timeout = timeout or max(2.0, 3 * m.learned_interval)
        self._event(
            inst,
            action,
            f"{action} requested (master {before['master_address']}, "
            f"priority {before['master_priority']})",
        )
        if new_override is not None:
            self._cancel_expiry(inst.name)
            self.overrides[inst.name] = new_override
            self._apply_priority(inst)
        self._arm_hold_timer(inst, None)
        inst.release_hold()
        frames = await inst.claim_vips(action)
        if inst.machine.state is VrrpState.BACKUP:
            inst.force_master(f"{action} requested")
        elif inst.machine.state is not VrrpState.MASTER:
            inst.withdraw_vips()
            raise self._fail(
                inst,
                action,
                409,
                f"went to {inst.machine.state} during the {action}",
                t0,
                before,
            )
        ok = await self._wait(
            inst,
            lambda: (
                inst.machine.state is VrrpState.MASTER and all(p for _, p in vip_presence(inst))
            ),
            timeout,
        )
        if not ok:
            raise self._fail(
                inst,
                action,
                504,
                f"not MASTER with all VIPs after {timeout:g}s (state {inst.machine.state})",
                t0,
                before,
            )
        after = snapshot(inst, self)
        msg = f"MASTER with VIPs, taking over from {before['master_address'] or 'nobody'}"
        if new_override is not None:
            msg += (
                f"; priority override {new_override} (until 'vigilctl priority INSTANCE --clear')"
            )
        elapsed = inst.now() - t0
        self._event(inst, action, msg, ok=True, elapsed_s=round(elapsed, 4), override=new_override)
        return ControlResult(
            action,
            inst.name,
            msg,
            before,
            after,
            elapsed,
            {
                "override": new_override,
                "announced_frames": frames,
                "previous_master": before["master_address"],
            },
        ).to_dict()

    # ------------------------------------------------------------------ maintenance

    async def set_maintenance(
        self, enabled: bool, name: str | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Maintenance on/off for one instance or all; verified per instance."""
        targets = [self._instance(name)] if name else list(self.sub.instances.values())
        t0 = time.monotonic()
        fn = self._maintenance_on if enabled else self._maintenance_off
        outcomes = await asyncio.gather(
            *(fn(inst, timeout) for inst in targets), return_exceptions=True
        )
        results: list[dict[str, Any]] = []
        errors: list[ControlError] = []
        for inst, res in zip(targets, outcomes, strict=True):
            if isinstance(res, ControlError):
                errors.append(res)
                results.append(
                    {"instance": inst.name, "ok": False, "message": res.message, **res.data}
                )
            elif isinstance(res, BaseException):
                raise res
            else:
                results.append(res)
        body = {
            "action": "maintenance",
            "enabled": enabled,
            "instances": [i.name for i in targets],
            "results": results,
            "elapsed_s": round(time.monotonic() - t0, 4),
        }
        if errors:
            statuses = {e.status for e in errors}
            status = statuses.pop() if len(statuses) == 1 else 409
            raise ControlError(
                status,
                "; ".join(e.message for e in errors),
                **body,
            )
        return body

    async def _maintenance_on(self, inst: Controlled, timeout: float | None) -> dict[str, Any]:
        async with self._exclusive(inst, "maintenance"):
            t0 = inst.now()
            before = snapshot(inst, self)
            self._persist(inst, self.maintenance | {inst.name})
            self._cancel_expiry(inst.name)
            self._arm_hold_timer(inst, None)
            self._apply_priority(inst)
            self._event(inst, "maintenance", "maintenance on requested")
            extra: dict[str, Any] = {}
            if inst.machine.state is VrrpState.MASTER:
                timeout = timeout or default_handover_timeout(inst.machine.learned_interval)
                outcome, watch = await self._release(inst, "maintenance on", timeout, math.inf)
                if outcome is not Outcome.DONE:
                    await self._roll_back(inst, "maintenance", outcome, timeout, t0, before)
                extra = {"new_master": watch.new_master, "new_master_priority": watch.new_priority}
            else:
                inst.force_backup("maintenance on", hold_until=math.inf, keep_vips=False)
            ok = await self._wait(
                inst,
                lambda: (
                    inst.machine.state is not VrrpState.MASTER
                    and not any(p for _, p in vip_presence(inst))
                ),
                timeout or 2.0,
            )
            if not ok:
                raise self._fail(
                    inst, "maintenance", 504, "still MASTER or holding VIPs", t0, before
                )
            after = snapshot(inst, self)
            msg = (
                f"maintenance on: {after['state']}, VIPs absent, advertising priority "
                f"{MAINTENANCE_PRIORITY} if ever master"
            )
            if extra.get("new_master"):
                msg += f"; handed over to {extra['new_master']}"
            elif after["master_address"]:
                msg += f"; master is {after['master_address']}"
            else:
                msg += "; no peer seen as master"
            elapsed = inst.now() - t0
            self._event(
                inst, "maintenance", msg, ok=True, enabled=True, elapsed_s=round(elapsed, 4)
            )
            return ControlResult(
                "maintenance", inst.name, msg, before, after, elapsed, extra
            ).to_dict()

    async def _maintenance_off(self, inst: Controlled, timeout: float | None) -> dict[str, Any]:
        async with self._exclusive(inst, "maintenance"):
            t0 = inst.now()
            before = snapshot(inst, self)
            was = inst.name in self.maintenance
            self._persist(inst, self.maintenance - {inst.name})
            self._arm_hold_timer(inst, None)
            self._apply_priority(inst)
            inst.release_hold()
            m = inst.machine
            took_back = False
            if (
                was
                and m.state is VrrpState.BACKUP
                and (inst.cfg.preempt or m.params.address_owner)
                and m.master_priority is not None
                and m.effective_priority > m.master_priority
            ):
                # We would preempt at the next Master_Down expiry anyway; do it now,
                # make-before-break, so clients lose nothing.
                await self._takeover(inst, "maintenance", timeout, override=False)
                took_back = True
            after = snapshot(inst, self)
            if not was:
                msg = "maintenance was not on; any preemption hold released"
            elif took_back:
                msg = "maintenance off: took mastership back (preempt, higher priority)"
            else:
                msg = (
                    f"maintenance off: {after['state']}, effective priority "
                    f"{after['effective_priority']}; normal preemption rules apply"
                )
            elapsed = inst.now() - t0
            self._event(
                inst, "maintenance", msg, ok=True, enabled=False, elapsed_s=round(elapsed, 4)
            )
            return ControlResult(
                "maintenance", inst.name, msg, before, after, elapsed, {"took_back": took_back}
            ).to_dict()
