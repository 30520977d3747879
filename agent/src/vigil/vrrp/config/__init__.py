"""VRRP's section of vigil.yml: ``vrrp_instances``, ``vrrp_sync_groups`` and its globals.

schema (types, ranges, shapes) -> semantic (across items, and the host) -> build (the
frozen model, with what instances inherit resolved) -> diff (what a reload changes) ->
cluster (what must agree across the nodes of a pair). :data:`SECTION` is what the config
core calls; the models are what the runtime reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.config.cluster import ClusterContext
from vigil.config.errors import Issue
from vigil.config.section import SectionInput

from .build import build_vrrp
from .cluster import check_vrrp_cluster
from .diff import InstanceChange, VrrpDiff, diff_vrrp
from .model import (
    AuthConfig,
    GarpConfig,
    NotifyConfig,
    RouteConfig,
    SyncGroupConfig,
    TrackConfig,
    TrackInterface,
    TrackRef,
    UnicastConfig,
    VipConfig,
    VrrpConfig,
    VrrpInstanceConfig,
)
from .schema import GLOBAL_FIELDS, INSTANCE, SYNC_GROUP
from .semantic import SemanticChecker, Validated

__all__ = [
    "SECTION",
    "AuthConfig",
    "GarpConfig",
    "InstanceChange",
    "NotifyConfig",
    "RouteConfig",
    "SyncGroupConfig",
    "TrackConfig",
    "TrackInterface",
    "TrackRef",
    "UnicastConfig",
    "VipConfig",
    "VrrpConfig",
    "VrrpDiff",
    "VrrpInstanceConfig",
    "VrrpSection",
]


class VrrpSection:
    """VRRP's part of vigil.yml (implements :class:`vigil.config.ConfigSection`)."""

    name = "vrrp"
    keys = ("vrrp_instances", "vrrp_sync_groups")
    global_fields: Mapping[Any, Any] = GLOBAL_FIELDS

    def validate(self, inp: SectionInput) -> Validated:
        raw_instances = inp.data.get("vrrp_instances")
        trackers = inp.validated.get("track")
        bfd = inp.validated.get("bfd")
        validated = Validated(
            instances=inp.schema.items(INSTANCE, raw_instances, "vrrp_instances", "VRRP instances"),
            sync_groups=inp.schema.items(
                SYNC_GROUP, inp.data.get("vrrp_sync_groups"), "vrrp_sync_groups", "sync groups"
            ),
            raw_instance_names=[
                item.get("name") if isinstance(item, dict) else None
                for item in (raw_instances if isinstance(raw_instances, list) else [])
            ],
            scripts=dict(getattr(trackers, "scripts", {}) or {}),
            track_files=dict(getattr(trackers, "track_files", {}) or {}),
            track_processes=dict(getattr(trackers, "track_processes", {}) or {}),
            bfd_sessions=_bfd_sessions(bfd),
        )
        SemanticChecker(inp, validated).run()
        return validated

    def build(self, inp: SectionInput, validated: Validated) -> VrrpConfig:
        return build_vrrp(validated, inp.glob)

    def to_dict(self, model: VrrpConfig, *, redact: bool = True) -> dict[str, Any]:
        return model.to_dict(redact=redact)

    def diff(self, old: VrrpConfig, new: VrrpConfig) -> VrrpDiff:
        return diff_vrrp(old, new)

    def items(self, model: VrrpConfig) -> list[str]:
        """The names of what it runs (a reload that keeps none of them must be confirmed)."""
        return list(model.instance_names)

    def summary(self, model: VrrpConfig) -> tuple[int, str]:
        count = len(model.vrrp_instances)
        return count, "VRRP instance" if count == 1 else "VRRP instances"

    def check_cluster(
        self, models: Mapping[str, VrrpConfig], context: ClusterContext | None = None
    ) -> list[Issue]:
        return check_vrrp_cluster(models, context)


def _bfd_sessions(bfd: Any) -> dict[str, Any]:
    """Session name -> resolved session (None if broken) from the validated bfd section."""
    if bfd is None:
        return {}
    return {name: bfd.session(name) for name in getattr(bfd, "names", [])}


SECTION = VrrpSection()
