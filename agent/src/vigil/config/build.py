"""Turn schema-validated, semantically checked sections into the frozen model.

Only called when no issue was found, so it may assume every reference resolves and every
value is in range; it resolves what instances inherit from ``global`` and from the
trackers they name.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from . import files, resolve
from .model import (
    AuthConfig,
    Config,
    GarpConfig,
    GlobalConfig,
    NotifyConfig,
    RouteConfig,
    SyncGroupConfig,
    TrackConfig,
    TrackFileConfig,
    TrackInterface,
    TrackProcessConfig,
    TrackRef,
    UnicastConfig,
    VipConfig,
    VrrpInstanceConfig,
    VrrpScriptConfig,
)
from .semantic import Sections


def build_globals(glob: dict[str, Any]) -> GlobalConfig:
    return GlobalConfig(
        router_id=glob.get("router_id") or socket.gethostname(),
        log_level=glob["log_level"],
        socket=glob["socket"],
        state_dir=glob["state_dir"],
        script_user=glob["script_user"],
        script_security=glob["script_security"],
        notify_timeout=glob["notify_timeout"],
        vrrp_version=glob["vrrp_version"],
        v3_checksum_pseudo_header=glob["v3_checksum_pseudo_header"],
        garp=GarpConfig(**glob["garp"]),
        allow_empty_config=glob["allow_empty_config"],
    )


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


def _instance(inst: dict[str, Any], sections: Sections, glob: GlobalConfig) -> VrrpInstanceConfig:
    family = resolve.vip_family(inst)
    garp = GarpConfig(**{**glob.garp.to_dict(), **inst["garp"]})
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
        version=resolve.version(inst, sections.glob),
        advert_interval=inst["advert_interval"],
        preempt=inst["preempt"],
        preempt_delay=inst["preempt_delay"],
        unicast=unicast,
        authentication=auth,
        excluded_vips=tuple(_vip(v) for v in inst["virtual_ipaddresses_excluded"]),
        routes=tuple(_route(r, family) for r in inst["virtual_routes"]),
        garp=garp,
        v3_checksum_pseudo_header=glob.v3_checksum_pseudo_header
        if v3_pseudo is None
        else v3_pseudo,
        use_vmac=resolve.vmac_name(inst),
        track=TrackConfig(
            interfaces=tuple(
                TrackInterface(i["name"], i["weight"], i["weight_reverse"])
                for i in track["interfaces"]
            ),
            scripts=_refs(track["scripts"], sections.scripts),
            files=_refs(track["files"], sections.track_files),
            processes=_refs(track["processes"], sections.track_processes),
        ),
        notify=_notify(inst["notify"], glob.notify_timeout),
    )


def build_config(sections: Sections, source: str | None) -> Config:
    """The model of a config that passed every check."""
    glob = build_globals(sections.glob)
    scripts = {}
    for script_name, s in sections.scripts.items():
        assert s is not None
        scripts[script_name] = VrrpScriptConfig(
            name=script_name,
            script=s["script"],
            argv=tuple(files.split_command(s["script"])),
            interval=s["interval"],
            timeout=s["interval"] if s.get("timeout") is None else s["timeout"],
            rise=s["rise"],
            fall=s["fall"],
            weight=s["weight"],
            weight_reverse=s["weight_reverse"],
            init_fail=s["init_fail"],
            user=s.get("user") or glob.script_user,
        )
    track_files = {}
    for file_name, f in sections.track_files.items():
        assert f is not None
        track_files[file_name] = TrackFileConfig(
            name=file_name,
            file=f["file"],
            weight=f["weight"],
            weight_reverse=f["weight_reverse"],
            init_file=f["init_file"],
        )
    processes = {}
    for proc_name, p in sections.track_processes.items():
        assert p is not None
        processes[proc_name] = TrackProcessConfig(name=proc_name, **p)
    instances = []
    for inst in sections.instances:
        assert inst is not None
        instances.append(_instance(inst, sections, glob))
    groups = []
    for group in sections.sync_groups:
        assert group is not None
        groups.append(
            SyncGroupConfig(
                name=group["name"],
                members=tuple(group["members"]),
                notify=_notify(group["notify"], glob.notify_timeout),
            )
        )
    return Config(
        globals=glob,
        vrrp_instances=tuple(instances),
        vrrp_scripts=scripts,
        track_files=track_files,
        track_processes=processes,
        vrrp_sync_groups=tuple(groups),
        source=source,
    )
