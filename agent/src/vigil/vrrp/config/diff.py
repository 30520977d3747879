"""What a reload changes in VRRP's section, per instance, so reloads never flap.

The daemon applies a reload instance by instance: untouched instances keep running, added
ones start, removed ones stop, and changed ones get exactly the fields that differ (for
VIPs, the addresses to add and to remove) so they can be updated in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .model import VipConfig, VrrpConfig, VrrpInstanceConfig


@dataclass(frozen=True)
class InstanceChange:
    """How one instance differs: field names, and the VIP addresses gained and lost."""

    name: str
    fields: tuple[str, ...]
    vips_added: tuple[str, ...] = ()
    vips_removed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "vips_added": list(self.vips_added),
            "vips_removed": list(self.vips_removed),
        }


@dataclass(frozen=True)
class VrrpDiff:
    """Instance names by fate, the per-instance details, and whether sync groups changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    details: Mapping[str, InstanceChange] = field(default_factory=dict)
    sync_groups_changed: bool = False
    #: global settings VRRP uses changed (the notify commands' user or security)
    settings_changed: bool = False

    @property
    def empty(self) -> bool:
        """True when applying the new section would change nothing."""
        return not (
            self.added
            or self.removed
            or self.changed
            or self.sync_groups_changed
            or self.settings_changed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "unchanged": list(self.unchanged),
            "sync_groups_changed": self.sync_groups_changed,
            "details": {name: change.to_dict() for name, change in self.details.items()},
        }

    def summary(self) -> str:
        parts = []
        for what in ("added", "removed", "changed"):
            names = getattr(self, what)
            if names:
                parts.append(f"{what} {', '.join(names)}")
        if self.sync_groups_changed:
            parts.append("sync groups changed")
        return "; ".join(parts)


def _vip_keys(vips: tuple[VipConfig, ...]) -> dict[str, VipConfig]:
    return {str(vip.address): vip for vip in vips}


def _instance_change(old: VrrpInstanceConfig, new: VrrpInstanceConfig) -> InstanceChange:
    names = tuple(
        f.name for f in fields(VrrpInstanceConfig) if getattr(old, f.name) != getattr(new, f.name)
    )
    old_vips = _vip_keys(old.vips + old.excluded_vips)
    new_vips = _vip_keys(new.vips + new.excluded_vips)
    added = tuple(a for a, v in new_vips.items() if old_vips.get(a) != v)
    removed = tuple(a for a, v in old_vips.items() if new_vips.get(a) != v)
    return InstanceChange(new.name, names, added, removed)


def diff_vrrp(old: VrrpConfig, new: VrrpConfig) -> VrrpDiff:
    """Compare two validated sections; instance order is the new config's."""
    old_by_name = {inst.name: inst for inst in old.vrrp_instances}
    new_by_name = {inst.name: inst for inst in new.vrrp_instances}
    added, changed, unchanged = [], [], []
    details: dict[str, InstanceChange] = {}
    for name, inst in new_by_name.items():
        if name not in old_by_name:
            added.append(name)
        elif old_by_name[name] != inst:
            changed.append(name)
            details[name] = _instance_change(old_by_name[name], inst)
        else:
            unchanged.append(name)
    removed = [name for name in old_by_name if name not in new_by_name]
    return VrrpDiff(
        added=tuple(added),
        removed=tuple(removed),
        changed=tuple(changed),
        unchanged=tuple(unchanged),
        details=details,
        sync_groups_changed=old.vrrp_sync_groups != new.vrrp_sync_groups,
        settings_changed=(old.script_user, old.script_security)
        != (new.script_user, new.script_security),
    )
