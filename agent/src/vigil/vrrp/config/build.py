"""Turn validated, semantically checked VRRP items into the frozen model.

Only called when no issue was found, so it may assume every reference resolves and every
value is in range; it resolves what instances inherit from ``global`` and from the
trackers they name.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from . import resolve
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
from .semantic import Validated


def _vip(data: dict[str, Any]) -> VipConfig:
    return VipConfig(
        address=data["address"], dev=data.get("dev"), label=data.get("label"), scope=data["scope"]
    )


def _route(data: dict[str, Any], family: int) -> RouteConfig:
    to = data["to"]
    if to == "default":
        explicit = [a for a in (data.get("via"), data.get("src")) if a is not None]
        route_family = explicit[0].version if explicit else family
        to = ipaddress.ip_network("0.0.0.0/0" if route_family == 4 else "::/0")
    return RouteConfig(
        to=to,
        via=data.get("via"),
        dev=data.get("dev"),
        src=data.get("src"),
        metric=data.get("metric"),
        table=data.get("table"),
        scope=data.get("scope"),
    )


def _notify(data: dict[str, Any], default_timeout: float) -> NotifyConfig:
    timeout = data.get("timeout")
    return NotifyConfig(
        master=data.get("master"),
        backup=data.get("backup"),
        fault=data.get("fault"),
        stop=data.get("stop"),
        generic=data.get("generic"),
        timeout=default_timeout if timeout is None else timeout,
    )


def _refs(items: list[dict[str, Any]], trackers: dict[str, Any]) -> tuple[TrackRef, ...]:
    refs = []
    for item in items:
        tracker = trackers[item["name"]]
        weight = item["weight"] if item.get("weight") is not None else tracker["weight"]
        reverse = item.get("weight_reverse")
        if reverse is None:
            reverse = tracker["weight_reverse"]
        refs.append(TrackRef(name=item["name"], weight=weight, weight_reverse=reverse))
    return tuple(refs)


def _instance(inst: dict[str, Any], v: Validated, glob: dict[str, Any]) -> VrrpInstanceConfig:
    family = resolve.vip_family(inst)
    garp = GarpConfig(**{**glob["garp"], **inst["garp"]})
    unicast = None
    if inst.get("unicast") is not None:
        unicast = UnicastConfig(
            peers=tuple(inst["unicast"]["peers"]), source=inst["unicast"].get("source")
        )
    auth = None
    if inst.get("authentication") is not None:
        auth = AuthConfig(
            password=inst["authentication"]["password"], type=inst["authentication"]["type"]
        )
    track = inst["track"]
    v3_pseudo = inst.get("v3_checksum_pseudo_header")
    return VrrpInstanceConfig(
        name=inst["name"],
        interface=inst["interface"],
        vrid=inst["vrid"],
        vips=tuple(_vip(v) for v in inst["virtual_ipaddresses"]),
        priority=resolve.priority(inst),
        address_owner=inst["address_owner"],
        version=resolve.version(inst, glob),
        advert_interval=inst["advert_interval"],
        preempt=inst["preempt"],
        preempt_delay=inst["preempt_delay"],
        unicast=unicast,
        authentication=auth,
        excluded_vips=tuple(_vip(v) for v in inst["virtual_ipaddresses_excluded"]),
        routes=tuple(_route(r, family) for r in inst["virtual_routes"]),
        garp=garp,
        v3_checksum_pseudo_header=glob["v3_checksum_pseudo_header"]
        if v3_pseudo is None
        else v3_pseudo,
        use_vmac=resolve.vmac_name(inst),
        track=TrackConfig(
            interfaces=tuple(
                TrackInterface(i["name"], i["weight"], i["weight_reverse"])
                for i in track["interfaces"]
            ),
            scripts=_refs(track["scripts"], v.scripts),
            files=_refs(track["files"], v.track_files),
            processes=_refs(track["processes"], v.track_processes),
            bfd=tuple(
                TrackRef(b["name"], b["weight"], bool(b.get("weight_reverse")))
                for b in track["bfd"]
            ),
        ),
        notify=_notify(inst["notify"], glob["notify_timeout"]),
        fast_takeover_bfd=inst.get("fast_takeover_bfd"),
    )


def build_vrrp(v: Validated, glob: dict[str, Any]) -> VrrpConfig:
    """The model of VRRP's section of a config that passed every check."""
    instances = []
    for inst in v.instances:
        assert inst is not None
        instances.append(_instance(inst, v, glob))
    groups = []
    for group in v.sync_groups:
        assert group is not None
        groups.append(
            SyncGroupConfig(
                name=group["name"],
                members=tuple(group["members"]),
                notify=_notify(group["notify"], glob["notify_timeout"]),
            )
        )
    return VrrpConfig(
        vrrp_instances=tuple(instances),
        vrrp_sync_groups=tuple(groups),
        script_user=glob["script_user"],
        script_security=glob["script_security"],
    )
