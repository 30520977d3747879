"""Sync groups: VRRP instances that change state together (keepalived ``vrrp_sync_group``).

A router that forwards between two networks needs both of its VIPs (the inside and the
outside gateway) on the same node: half a failover is an outage. The rules, as keepalived
applies them:

- **FAULT**: while any member is in FAULT for a reason of its own (link down, a tracker),
  every member is held in FAULT. The group does this with a fault source of its own,
  ``sync_group:NAME``, on every member, so the members leave FAULT together when the last
  real reason clears (a member that recovered while another is still failed stays put,
  with no FAULT -> BACKUP -> FAULT blip).
- **MASTER**: a member that becomes master (its Master_Down timer expired, or it was the
  address owner) takes the other members with it: they are forced to MASTER at once.
- **BACKUP**: a master member that steps down (a higher-priority peer preempted it, or an
  operator handed it over) takes the other masters with it: they release mastership with a
  priority-0 advert, so the peer takes them over after its skew time instead of a whole
  Master_Down interval. They are also held from preempting back (the machine's preemption
  hold; it never stops a takeover from a dead master) until a member of the group becomes
  master again. Without the hold, two members whose peers rank them differently would
  flap forever: one is beaten, the other preempts back and drags the beaten one along.

Loops: a transition the group itself forced is never propagated again (the group is
"busy" while it forces, and every hook it triggers runs synchronously inside that call).

The group's state is MASTER or BACKUP when all members are, FAULT when any member is, and
STOP when all stopped; on a change it publishes a ``sync_group`` event and runs the
group's notify commands (``GROUP NAME STATE 0`` for the generic one).

The logic talks to members through the small :class:`Member` protocol, so it is tested
with fake members; :class:`SyncGroupManager` adapts the VRRP runtime's instances.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from vigil.vrrp.machine import Transition, VrrpState

if TYPE_CHECKING:
    from vigil.vrrp.config import SyncGroupConfig, VrrpConfig, VrrpDiff
    from vigil.vrrp.instance import InstanceRuntime
    from vigil.vrrp.runtime import VrrpSubsystem

log = logging.getLogger("vigil.vrrp.sync")

SOURCE_PREFIX = "sync_group:"

#: Group states that are announced (events, notify); anything else is "mixed".
SETTLED = {
    VrrpState.MASTER: "MASTER",
    VrrpState.BACKUP: "BACKUP",
    VrrpState.FAULT: "FAULT",
    VrrpState.STOPPED: "STOP",
}


class Member(Protocol):
    """What a sync group needs from an instance (the runtime's, or a test's fake)."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> VrrpState: ...

    @property
    def faults(self) -> dict[str, str]: ...

    @property
    def hold_until(self) -> float | None: ...

    def set_fault(self, source: str, reason: str) -> None: ...

    def clear_fault(self, source: str, reason: str) -> None: ...

    def force_master(self, reason: str) -> None: ...

    def force_backup(self, reason: str, *, hold: bool) -> None: ...

    def release_hold(self) -> None: ...


@dataclass(frozen=True)
class GroupChange:
    """A settled group state change, for the event and the notify commands."""

    group: str
    old: str
    new: str
    reason: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "from": self.old,
            "to": self.new,
            "reason": self.reason,
        }


def _now(fn: Callable[[], None]) -> None:
    fn()


class SyncGroup:
    """One group's rules over its members, looked up by name each time they are needed.

    Members are looked up rather than held because a reload may re-create an instance
    (new interface or VRID) under the same name. A member that is not running (absent, or
    not started yet: INIT) is left alone and ignored for the group's state.
    """

    def __init__(
        self,
        name: str,
        members: Iterable[str],
        lookup: Callable[[str], Member | None],
        on_change: Callable[[GroupChange], None],
        *,
        clock: Callable[[], float] = time.time,
        defer: Callable[[Callable[[], None]], Any] = _now,
    ) -> None:
        self.name = name
        self.members = tuple(members)
        self.lookup = lookup
        self.on_change = on_change
        self.clock = clock
        self.defer = defer
        self.source = f"{SOURCE_PREFIX}{name}"
        self.state = "INIT"
        self.last_change: GroupChange | None = None
        self._busy = False
        self._held: set[str] = set()  # members whose preemption hold is ours

    # ------------------------------------------------------------ members

    def running(self) -> list[Member]:
        out = []
        for name in self.members:
            member = self.lookup(name)
            if member is not None and member.state is not VrrpState.INIT:
                out.append(member)
        return out

    def own_faults(self, member: Member) -> dict[str, str]:
        """The member's fault reasons that are not a sync group's."""
        return {s: r for s, r in member.faults.items() if not s.startswith(SOURCE_PREFIX)}

    # ------------------------------------------------------------ inputs

    def on_transition(self, member: Member, tr: Transition) -> None:
        """A member changed state: update the group's state; propagate unless we caused it.

        Propagation is deferred (``defer``; the runtime passes ``loop.call_soon``): the
        hook runs while the member's own actions (advert, VIPs) are still being executed,
        and forcing other transitions in the middle of them would reorder those.
        """
        self._refresh(f"{member.name} {tr.old} -> {tr.new}: {tr.reason}")
        if self._busy:
            return
        name = member.name
        self.defer(lambda: self._propagate(name, tr))

    def on_faults_changed(self, member: Member | None = None) -> None:
        """A member's fault sources changed: re-apply the FAULT rule (deferred, see above)."""
        if not self._busy:
            self.defer(self.apply_faults)

    def _propagate(self, name: str, tr: Transition) -> None:
        member = self.lookup(name)
        if member is None or member.state is VrrpState.INIT:
            return
        if tr.old in (VrrpState.INIT, VrrpState.STOPPED):
            # A member (re)started: bring it in line with the group's faults.
            self.apply_faults()
        if tr.new is VrrpState.MASTER and member.state is VrrpState.MASTER:
            self._follow_master(member)
        elif (
            tr.old is VrrpState.MASTER
            and tr.new is VrrpState.BACKUP
            and member.state is VrrpState.BACKUP
        ):
            self._follow_backup(member, tr.reason)
        self._refresh(f"{member.name} {tr.old} -> {tr.new}: {tr.reason}")

    def apply_faults(self) -> None:
        """Hold every member in FAULT while any has a reason of its own; else release them."""
        if self._busy:
            return
        members = self.running()
        failed = [(m.name, self.own_faults(m)) for m in members]
        failed = [(name, reasons) for name, reasons in failed if reasons]
        self._busy = True
        try:
            if failed:
                who = ", ".join(f"{n} ({'; '.join(r.values())})" for n, r in failed)
                verb = "is" if len(failed) == 1 else "are"
                member_word = "member" if len(failed) == 1 else "members"
                reason = f"sync group {self.name}: {member_word} {who} {verb} in FAULT"
                for m in members:
                    if m.state is not VrrpState.STOPPED and m.faults.get(self.source) != reason:
                        m.set_fault(self.source, reason)
            else:
                reason = f"sync group {self.name}: no member is in FAULT any more"
                for m in members:
                    if self.source in m.faults:
                        m.clear_fault(self.source, reason)
        finally:
            self._busy = False
        self._refresh("fault sources changed")

    # ------------------------------------------------------------ propagation

    def _follow_master(self, leader: Member) -> None:
        self._busy = True
        try:
            for m in self.running():
                if m.name == leader.name:
                    continue
                if m.state is VrrpState.BACKUP and self._may_force_master(m):
                    m.force_master(
                        f"sync group {self.name}: {leader.name} became MASTER; following"
                    )
            for m in self.running():
                if m.name in self._held:
                    m.release_hold()
            self._held.clear()
        finally:
            self._busy = False

    def _may_force_master(self, member: Member) -> bool:
        """A hold someone else set (maintenance, handover) is not ours to override."""
        return member.hold_until is None or member.name in self._held

    def _follow_backup(self, leader: Member, why: str) -> None:
        self._busy = True
        try:
            for m in self.running():
                if m.name == leader.name or m.state not in (VrrpState.MASTER, VrrpState.BACKUP):
                    continue
                foreign = m.hold_until is not None and m.name not in self._held
                m.force_backup(
                    f"sync group {self.name}: {leader.name} left MASTER ({why}); following",
                    hold=not foreign,
                )
                if not foreign:
                    self._held.add(m.name)
        finally:
            self._busy = False

    # ------------------------------------------------------------ state

    def derived_state(self) -> str | None:
        """MASTER/BACKUP/STOP when all members agree, FAULT if any is; None when mixed."""
        states = [m.state for m in self.running()]
        if not states:
            return None
        if VrrpState.FAULT in states:
            return "FAULT"
        first = states[0]
        if all(s is first for s in states):
            return SETTLED.get(first)
        return None

    def _refresh(self, reason: str, *, announce: bool = True) -> None:
        new = self.derived_state()
        if new is None or new == self.state:
            return
        change = GroupChange(self.name, self.state, new, reason, self.clock())
        self.state = new
        self.last_change = change
        if announce:
            self.on_change(change)

    def align(self) -> None:
        """Start-up: apply the FAULT and MASTER rules to whatever the members are now."""
        self.apply_faults()
        leader = next((m for m in self.running() if m.state is VrrpState.MASTER), None)
        if leader is not None:
            self._follow_master(leader)
        self._refresh("started")

    def adopt(self, old: SyncGroup) -> None:
        """Reload: take over a same-named group's state, holds and fault sources."""
        self.state = old.state
        self.last_change = old.last_change
        self._held = {name for name in old._held if name in self.members}
        gone = [name for name in old.members if name not in self.members]
        old.detach(gone)
        self._refresh("reloaded", announce=False)

    def detach(self, names: Iterable[str] | None = None) -> None:
        """Release members (all by default): our fault source and preemption hold go.

        Clearing the fault source can let a member recover (FAULT -> BACKUP); that is the
        member's own state again, not a transition the group forces.
        """
        names = self.members if names is None else tuple(names)
        self._busy = True
        try:
            for name in names:
                m = self.lookup(name)
                if m is None:
                    continue
                if name in self._held:
                    m.release_hold()
                    self._held.discard(name)
                if self.source in m.faults:
                    m.clear_fault(self.source, f"no longer in sync group {self.name}")
        finally:
            self._busy = False

    def to_dict(self) -> dict[str, Any]:
        members = []
        for name in self.members:
            m = self.lookup(name)
            members.append(
                {
                    "name": name,
                    "state": None if m is None else str(m.state),
                    "faults": {} if m is None else self.own_faults(m),
                    "held": name in self._held,
                }
            )
        return {
            "name": self.name,
            "state": self.state,
            "consistent": self.derived_state() == self.state,
            "members": members,
            "last_change": None if self.last_change is None else self.last_change.to_dict(),
        }


# ---------------------------------------------------------------------------- runtime glue


class RuntimeMember:
    """Adapts an :class:`InstanceRuntime` to :class:`Member` (machine commands + actions)."""

    def __init__(self, inst: InstanceRuntime) -> None:
        self.inst = inst

    @property
    def name(self) -> str:
        return self.inst.name

    @property
    def state(self) -> VrrpState:
        return self.inst.machine.state

    @property
    def faults(self) -> dict[str, str]:
        return self.inst.faults

    @property
    def hold_until(self) -> float | None:
        return self.inst.machine.preempt_hold_until

    def set_fault(self, source: str, reason: str) -> None:
        self.inst.set_fault(source, reason)

    def clear_fault(self, source: str, reason: str) -> None:
        self.inst.clear_fault(source, reason)

    def force_master(self, reason: str) -> None:
        if self.inst.machine.state is VrrpState.BACKUP:
            self.inst.force_master(reason)

    def force_backup(self, reason: str, *, hold: bool) -> None:
        # Followers release at once (priority 0): a make-before-break handover is the
        # handed-over instance's alone; the group does not keep the others' VIPs.
        self.inst.force_backup(reason, hold_until=math.inf if hold else None, keep_vips=False)

    def release_hold(self) -> None:
        self.inst.release_hold()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuntimeMember) and other.inst is self.inst

    def __hash__(self) -> int:
        return id(self.inst)


class SyncGroupManager:
    """The VRRP subsystem's sync groups: built from the config, fed by the runtime's hooks.

    :meth:`configure` runs after the instances started (so no member is forced while it is
    still in INIT) and aligns the groups; :meth:`apply` rebuilds them on reload without
    forcing any transition (a member keeps its state; the rules apply from its next change).
    """

    def __init__(self, owner: VrrpSubsystem) -> None:
        self.owner = owner
        self.groups: dict[str, SyncGroup] = {}
        self.configs: dict[str, SyncGroupConfig] = {}
        self.by_member: dict[str, SyncGroup] = {}
        owner.transition_hooks.append(self.on_transition)
        owner.fault_hooks.append(self.on_faults_changed)

    def _lookup(self, name: str) -> Member | None:
        inst = self.owner.instances.get(name)
        return None if inst is None else RuntimeMember(inst)

    def _build(self, cfg: SyncGroupConfig) -> SyncGroup:
        return SyncGroup(cfg.name, cfg.members, self._lookup, self._changed, defer=self._defer)

    @staticmethod
    def _defer(fn: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(fn)

    def _index(self) -> None:
        self.by_member = {m: g for g in self.groups.values() for m in g.members}

    def configure(self, config: VrrpConfig) -> None:
        """Start-up: build every group and bring its members in line."""
        self.configs = {g.name: g for g in config.vrrp_sync_groups}
        self.groups = {name: self._build(cfg) for name, cfg in self.configs.items()}
        self._index()
        for group in self.groups.values():
            group.align()

    def apply(self, config: VrrpConfig, diff: VrrpDiff) -> None:
        """Reload: keep unchanged groups, adopt changed ones, release removed ones."""
        if not diff.sync_groups_changed:
            return
        new_cfgs = {g.name: g for g in config.vrrp_sync_groups}
        groups: dict[str, SyncGroup] = {}
        for name, cfg in new_cfgs.items():
            old = self.groups.get(name)
            old_cfg = self.configs.get(name)
            if old is not None and old_cfg is not None and old_cfg.members == cfg.members:
                groups[name] = old  # only its notify commands may have changed
                continue
            group = self._build(cfg)
            if old is not None:
                group.adopt(old)
            else:
                group._refresh("added by a reload", announce=False)
            groups[name] = group
            self.owner.publish(
                "sync_group",
                None,
                f"sync group {name}: {'members changed' if old else 'added'} by a reload "
                f"({', '.join(cfg.members)}); state {group.state}",
                group=name,
                old=None if old is None else old.state,
                new=group.state,
                members=list(cfg.members),
                reload=True,
            )
        for name, old in self.groups.items():
            if name not in new_cfgs:
                old.detach()
                self.owner.publish(
                    "sync_group",
                    None,
                    f"sync group {name}: removed by a reload; its members run on their own",
                    group=name,
                    old=old.state,
                    new=None,
                    members=list(old.members),
                    reload=True,
                )
        self.groups = groups
        self.configs = new_cfgs
        self._index()

    # ------------------------------------------------------------ hooks

    def on_transition(self, inst: InstanceRuntime, tr: Transition) -> None:
        group = self.by_member.get(inst.name)
        if group is not None:
            group.on_transition(RuntimeMember(inst), tr)

    def on_faults_changed(self, inst: InstanceRuntime) -> None:
        group = self.by_member.get(inst.name)
        if group is not None:
            group.on_faults_changed(RuntimeMember(inst))

    def _changed(self, change: GroupChange) -> None:
        group = self.groups.get(change.group)
        members = {} if group is None else {m.name: str(m.state) for m in group.running()}
        self.owner.publish(
            "sync_group",
            None,
            f"sync group {change.group}: {change.old} -> {change.new}: {change.reason}",
            group=change.group,
            old=change.old,
            new=change.new,
            reason=change.reason,
            members=members,
        )
        cfg = self.configs.get(change.group)
        notify = getattr(self.owner, "notify", None)
        if cfg is not None and notify is not None:
            notify.group_changed(change.group, cfg.notify, change.new)

    # ------------------------------------------------------------ API + metrics

    def metrics(self) -> Iterable[Metric]:
        """``vigil_vrrp_sync_group_state{group,state}``: 1 for each group's current state."""
        family = GaugeMetricFamily(
            "vigil_vrrp_sync_group_state",
            "1 for the sync group's current state (the last one all members agreed on)",
            labels=["group", "state"],
        )
        for name, group in self.groups.items():
            for state in ("INIT", *SETTLED.values()):
                family.add_metric([name, state], 1.0 if group.state == state else 0.0)
        yield family

    def status(self) -> list[dict[str, Any]]:
        out = []
        for name, group in self.groups.items():
            view = group.to_dict()
            view["notify"] = self.configs[name].notify.to_dict() if name in self.configs else {}
            out.append(view)
        return out


__all__ = [
    "SOURCE_PREFIX",
    "GroupChange",
    "Member",
    "RuntimeMember",
    "SyncGroup",
    "SyncGroupManager",
]
