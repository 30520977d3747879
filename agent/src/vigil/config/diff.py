"""What changed between two configs, per VRRP instance, for reloads that never flap.

The daemon applies a reload instance by instance: untouched instances keep running, added
ones start, removed ones stop, and changed ones get exactly the fields that differ (for
VIPs, the addresses to add and to remove) so they can be updated in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .model import Config, VipConfig, VrrpInstanceConfig


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
class ConfigDiff:
    """Instance names by fate, the per-instance details, and what changed around them."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    globals_changed: bool = False
    details: Mapping[str, InstanceChange] = field(default_factory=dict)
    trackers_changed: tuple[str, ...] = ()
    sync_groups_changed: bool = False

    @property
    def empty(self) -> bool:
        """True when applying the new config would change nothing."""
        return not (
            self.added
            or self.removed
            or self.changed
            or self.globals_changed
            or self.trackers_changed
            or self.sync_groups_changed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "unchanged": list(self.unchanged),
            "globals_changed": self.globals_changed,
            "trackers_changed": list(self.trackers_changed),
            "sync_groups_changed": self.sync_groups_changed,
            "details": {name: change.to_dict() for name, change in self.details.items()},
        }


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


def _changed_names(old: Mapping[str, Any], new: Mapping[str, Any], kind: str) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{kind}.{key}" for key in keys if old.get(key) != new.get(key)]


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Compare two validated configs; instance order is the new config's."""
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
    trackers = [
        *_changed_names(old.vrrp_scripts, new.vrrp_scripts, "vrrp_scripts"),
        *_changed_names(old.track_files, new.track_files, "track_files"),
        *_changed_names(old.track_processes, new.track_processes, "track_processes"),
    ]
    return ConfigDiff(
        added=tuple(added),
        removed=tuple(removed),
        changed=tuple(changed),
        unchanged=tuple(unchanged),
        globals_changed=old.globals != new.globals,
        details=details,
        trackers_changed=tuple(trackers),
        sync_groups_changed=old.vrrp_sync_groups != new.vrrp_sync_groups,
    )
