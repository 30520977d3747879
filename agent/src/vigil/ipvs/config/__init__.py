"""IPVS's section of vigil.yml: ``virtual_servers``, its groups and ``ipvs_sync_daemon``.

schema (types, ranges, shapes) -> semantic (across items: services, inheritance,
forwarding, quorum, references; every checker's settings built and checked) -> build (the
frozen model) -> diff (what a reload changes) -> cluster (what both directors must
agree on). :data:`SECTION` is what the config core calls; the models are what the runtime
reads. Nothing here imports pyroute2 (the Ansible controller validates with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.config.errors import Issue
from vigil.config.section import SectionInput

from .build import build_ipvs
from .cluster import check_ipvs_cluster
from .diff import IpvsDiff, VirtualServerChange, diff_ipvs
from .model import (
    CheckConfig,
    Endpoint,
    Forwarding,
    IpvsConfig,
    Persistence,
    RealServerConfig,
    SorryServer,
    SyncDaemonConfig,
    Tunnel,
    VirtualServerConfig,
    VirtualServerGroup,
    host_port,
)
from .schema import GROUP, SYNC_DAEMON, VIRTUAL_SERVER
from .semantic import SemanticChecker, Validated

__all__ = [
    "SECTION",
    "CheckConfig",
    "Endpoint",
    "Forwarding",
    "IpvsConfig",
    "IpvsDiff",
    "IpvsSection",
    "Persistence",
    "RealServerConfig",
    "SorryServer",
    "SyncDaemonConfig",
    "Tunnel",
    "VirtualServerChange",
    "VirtualServerConfig",
    "VirtualServerGroup",
    "host_port",
]


def _vrrp_instances(validated: Any) -> dict[str, int | None]:
    """VRRP's instance names (and VRIDs) as VRRP's section validated them, by duck typing:
    subsystems never import each other."""
    if validated is None:
        return {}
    out: dict[str, int | None] = {}
    for item in getattr(validated, "instances", None) or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            out[item["name"]] = item.get("vrid")
    for raw in getattr(validated, "raw_instance_names", None) or []:
        if isinstance(raw, str):
            out.setdefault(raw, None)
    return out


def _bfd_sessions(validated: Any) -> list[str]:
    """The session names the bfd section defines (duck typing, as for VRRP's)."""
    names = getattr(validated, "names", None) or []
    return [n for n in names if isinstance(n, str)]


class IpvsSection:
    """IPVS's part of vigil.yml (implements :class:`vigil.config.ConfigSection`)."""

    name = "ipvs"
    keys = ("virtual_server_groups", "virtual_servers", "ipvs_sync_daemon")
    global_fields: Mapping[Any, Any] = {}

    def validate(self, inp: SectionInput) -> Validated:
        trackers = inp.validated.get("track")
        validated = Validated(
            virtual_servers=inp.schema.items(
                VIRTUAL_SERVER, inp.data.get("virtual_servers"), "virtual_servers",
                "virtual servers",
            ),
            groups=inp.schema.items(
                GROUP, inp.data.get("virtual_server_groups"), "virtual_server_groups",
                "virtual server groups",
            ),
            vrrp_instances=_vrrp_instances(inp.validated.get("vrrp")),
            track_files={
                k: v for k, v in (getattr(trackers, "track_files", {}) or {}).items() if v
            },
            bfd_sessions=_bfd_sessions(inp.validated.get("bfd")),
        )  # fmt: skip
        raw_sync = inp.data.get("ipvs_sync_daemon")
        if raw_sync is not None:
            validated.sync_daemon = inp.schema.one(SYNC_DAEMON, raw_sync, ["ipvs_sync_daemon"])
        SemanticChecker(inp, validated).run()
        return validated

    def build(self, inp: SectionInput, validated: Validated) -> IpvsConfig:
        return build_ipvs(validated, inp.glob)

    def to_dict(self, model: IpvsConfig, *, redact: bool = True) -> dict[str, Any]:
        return model.to_dict(redact=redact)

    def diff(self, old: IpvsConfig, new: IpvsConfig) -> IpvsDiff:
        return diff_ipvs(old, new)

    def summary(self, model: IpvsConfig) -> tuple[int, str]:
        count = len(model.virtual_servers)
        return count, "virtual server" if count == 1 else "virtual servers"

    def check_cluster(self, models: Mapping[str, IpvsConfig], context: Any = None) -> list[Issue]:
        return check_ipvs_cluster(models)


SECTION = IpvsSection()
