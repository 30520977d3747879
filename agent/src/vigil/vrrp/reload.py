"""What a reload does to the running VRRP instances, decided without touching anything.

The order is what keeps a reload from colliding on the wire or flapping anything:

1. Instances that go away stop first: the ones removed from the config, then the ones
   whose identity changed (interface, VRID, version, VMAC or address family: they need a
   new machine and socket). A master sends priority 0 and then removes its VIPs, and its
   VRID is free again before any new instance registers on the same socket, so two
   instances may even swap VRIDs in one reload.
2. Instances that stay but changed are updated in place (priority, VIPs, timers...);
   those whose unicast peers or source changed also refresh their advert source.
3. Re-created and new instances start, in BACKUP.

Unchanged instances appear nowhere: their timers keep running, no advert is missed.
:func:`plan_reload` is pure; ``VrrpSubsystem.apply`` carries the plan out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vigil.vrrp.config import VrrpConfig, VrrpDiff, VrrpInstanceConfig

__all__ = ["IDENTITY_FIELDS", "ReloadPlan", "identity", "plan_reload"]

#: Changes that need a new machine and socket rather than an update. Unicast peers and
#: source are not among them: the socket is the same either way (the runtime picks
#: destinations per send and checks peers per advert), so they change in place.
IDENTITY_FIELDS = ("interface", "vrid", "version", "use_vmac", "family")


def identity(cfg: VrrpInstanceConfig) -> tuple[Any, ...]:
    return tuple(getattr(cfg, name) for name in IDENTITY_FIELDS)


@dataclass(frozen=True)
class ReloadPlan:
    """The steps of one reload, in the order they are taken."""

    #: (instance, why) to stop, in order: removed ones, then re-created ones
    stop: tuple[tuple[str, str], ...] = ()
    #: instances updated in place with their new config
    update: tuple[str, ...] = ()
    #: of those, the ones whose advert source must be looked up again (unicast changed)
    refresh_source: tuple[str, ...] = ()
    #: instances to start, in order: re-created ones, then added ones
    start: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.stop or self.update or self.start)


def plan_reload(
    running: Mapping[str, VrrpInstanceConfig], new: VrrpConfig, diff: VrrpDiff
) -> ReloadPlan:
    """The plan for ``diff``, given the config each running instance runs with now.

    An instance the diff calls changed but that does not run (it failed to start before)
    is started; one the diff calls added but that somehow runs is left alone.
    """
    wanted = {cfg.name: cfg for cfg in new.vrrp_instances}
    stop: list[tuple[str, str]] = []
    recreate: list[str] = []
    update: list[str] = []
    refresh: list[str] = []
    for name in diff.removed:
        if name in running:
            stop.append((name, "removed from the config"))
    for name in diff.changed:
        current = running.get(name)
        if current is None:
            recreate.append(name)
            continue
        if identity(current) != identity(wanted[name]):
            fields = [f for f in IDENTITY_FIELDS if getattr(current, f) != getattr(wanted[name], f)]
            stop.append((name, f"{'/'.join(fields)} changed in the config; instance re-created"))
            recreate.append(name)
            continue
        update.append(name)
        if current.unicast != wanted[name].unicast:
            refresh.append(name)
    start = [*recreate, *(name for name in diff.added if name not in running)]
    return ReloadPlan(
        stop=tuple(stop), update=tuple(update), refresh_source=tuple(refresh), start=tuple(start)
    )
