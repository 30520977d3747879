"""What a reload changes in IPVS's section, per virtual server and per real server.

The runtime applies a reload virtual server by virtual server: unchanged ones are not
looked at (their connections, checkers and kernel entries stay as they are); for a
changed one it knows which real servers came, went or changed, and whether the services
themselves (scheduler, persistence...) or only the pool changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .model import IpvsConfig, RealServerConfig, VirtualServerConfig


@dataclass(frozen=True)
class VirtualServerChange:
    """How one virtual server differs: field names and real servers by fate."""

    name: str
    fields: tuple[str, ...]
    rs_added: tuple[str, ...] = ()
    rs_removed: tuple[str, ...] = ()
    rs_changed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "real_servers_added": list(self.rs_added),
            "real_servers_removed": list(self.rs_removed),
            "real_servers_changed": list(self.rs_changed),
        }


@dataclass(frozen=True)
class IpvsDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    details: Mapping[str, VirtualServerChange] = field(default_factory=dict)
    sync_daemon_changed: bool = False
    #: who notify/MISC commands run as, or how they are checked, changed
    settings_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.sync_daemon_changed
            or self.settings_changed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "unchanged": list(self.unchanged),
            "sync_daemon_changed": self.sync_daemon_changed,
            "details": {name: change.to_dict() for name, change in self.details.items()},
        }

    def summary(self) -> str:
        parts = []
        for what in ("added", "removed", "changed"):
            names = getattr(self, what)
            if names:
                parts.append(f"virtual servers {what} {', '.join(names)}")
        for name, change in self.details.items():
            bits = []
            if change.rs_added:
                bits.append(f"+{len(change.rs_added)}")
            if change.rs_removed:
                bits.append(f"-{len(change.rs_removed)}")
            if change.rs_changed:
                bits.append(f"~{len(change.rs_changed)}")
            if bits:
                parts.append(f"{name} real servers {' '.join(bits)}")
        if self.sync_daemon_changed:
            parts.append("sync daemon changed")
        return "; ".join(parts)


def _rs_map(vs: VirtualServerConfig) -> dict[str, RealServerConfig]:
    return {rs.label: rs for rs in vs.real_servers}


def _change(old: VirtualServerConfig, new: VirtualServerConfig) -> VirtualServerChange:
    names = tuple(
        f.name
        for f in fields(VirtualServerConfig)
        if f.compare and getattr(old, f.name) != getattr(new, f.name)
    )
    before, after = _rs_map(old), _rs_map(new)
    return VirtualServerChange(
        name=new.name,
        fields=names,
        rs_added=tuple(k for k in after if k not in before),
        rs_removed=tuple(k for k in before if k not in after),
        rs_changed=tuple(k for k in after if k in before and before[k] != after[k]),
    )


def diff_ipvs(old: IpvsConfig, new: IpvsConfig) -> IpvsDiff:
    """Compare two validated sections; order is the new config's."""
    old_by = {vs.name: vs for vs in old.virtual_servers}
    new_by = {vs.name: vs for vs in new.virtual_servers}
    added, changed, unchanged = [], [], []
    details: dict[str, VirtualServerChange] = {}
    for name, vs in new_by.items():
        if name not in old_by:
            added.append(name)
        elif old_by[name] != vs:
            changed.append(name)
            details[name] = _change(old_by[name], vs)
        else:
            unchanged.append(name)
    return IpvsDiff(
        added=tuple(added),
        removed=tuple(name for name in old_by if name not in new_by),
        changed=tuple(changed),
        unchanged=tuple(unchanged),
        details=details,
        sync_daemon_changed=old.ipvs_sync_daemon != new.ipvs_sync_daemon,
        settings_changed=(old.script_user, old.script_security)
        != (new.script_user, new.script_security),
    )
