"""Turn validated, semantically checked IPVS items into the frozen model.

Only called when the whole file passed, so every reference resolves, every checker's
settings were built by the semantic checks (reused here), and groups are expanded.
"""

from __future__ import annotations

from typing import Any

from .checks import INHERITED
from .model import (
    CheckConfig,
    Endpoint,
    Forwarding,
    GroupMember,
    IpvsConfig,
    Persistence,
    RealServerConfig,
    SorryServer,
    SyncDaemonConfig,
    Tunnel,
    VirtualServerConfig,
    VirtualServerGroup,
)
from .semantic import Validated, expand_member

#: a real server's keys as written, kept for to_dict (checks are added separately)
RS_KEYS = (
    "address",
    "port",
    "weight",
    "forwarding",
    "tunnel",
    *INHERITED,
    "inhibit_on_failure",
    "upper_threshold",
    "lower_threshold",
    "notify_up",
    "notify_down",
)
VS_KEYS = (
    "name",
    "address",
    "port",
    "protocol",
    "fwmark",
    "family",
    "group",
    "scheduler",
    "scheduler_flags",
    "one_packet",
    "forwarding",
    "tunnel",
    "persistence",
    "quorum",
    "hysteresis",
    "quorum_up",
    "quorum_down",
    "sorry_server",
    *INHERITED,
    "inhibit_on_failure",
    "omega",
    "ha_suspend",
)


def _tunnel(data: dict[str, Any] | None) -> Tunnel:
    if data is None:
        return Tunnel()
    ttype = data["type"]
    return Tunnel(
        type=ttype,
        port=int(data.get("port") or 0) if ttype == "gue" else 0,
        checksum=(data.get("checksum") or "nocsum") if ttype != "ipip" else "nocsum",
    )


def _forwarding(item: dict[str, Any], parent: Forwarding | None) -> Forwarding:
    method = item.get("forwarding") or (parent.method if parent is not None else "nat")
    if method != "tun":
        return Forwarding(method)
    if item.get("tunnel") is not None:
        return Forwarding("tun", _tunnel(item["tunnel"]))
    if parent is not None and parent.method == "tun":
        return Forwarding("tun", parent.tunnel)
    return Forwarding("tun", Tunnel())


def _plain(value: Any) -> Any:
    """A validated value in file format (addresses as strings)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _options(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: _plain(data[k]) for k in keys if data.get(k) is not None}


def _check(data: dict[str, Any], settings: Any) -> CheckConfig:
    options = {k: _plain(v) for k, v in data.items() if k != "type"}
    return CheckConfig(kind=data["type"], options=options, settings=settings)


def _sorry(data: dict[str, Any], forwarding: Forwarding, vs_port: int) -> SorryServer:
    own = data.get("forwarding") is not None or data.get("tunnel") is not None
    port = data.get("port")
    return SorryServer(
        address=data["address"],
        port=vs_port if port is None else port,
        forwarding=_forwarding(data, forwarding),
        inhibit=bool(data.get("inhibit")),
        own_forwarding=own,
    )


def _virtual_server(
    i: int, vs: dict[str, Any], v: Validated, glob: dict[str, Any]
) -> VirtualServerConfig:
    forwarding = _forwarding(vs, None)
    endpoints = v.endpoints[i]
    vs_port = (vs.get("port") or 0) if vs.get("address") is not None else 0
    persistence = None
    if vs.get("persistence") is not None:
        p = vs["persistence"]
        full = 32 if v.families.get(i, 4) == 4 else 128
        prefix = p.get("granularity")
        persistence = Persistence(
            timeout=p["timeout"],
            prefix=None if prefix is None or prefix == full else prefix,
            engine=p.get("engine"),
        )
    inhibit = bool(vs.get("inhibit_on_failure", False))
    real_servers = []
    for j, rs in enumerate(vs["real_servers"]):
        port = rs.get("port")
        real_servers.append(
            RealServerConfig(
                address=rs["address"],
                port=vs_port if port is None else port,
                weight=rs["weight"],
                forwarding=_forwarding(rs, forwarding),
                inhibit_on_failure=bool(rs.get("inhibit_on_failure", inhibit)),
                upper_threshold=rs["upper_threshold"],
                lower_threshold=rs["lower_threshold"],
                notify_up=rs.get("notify_up"),
                notify_down=rs.get("notify_down"),
                checks=tuple(
                    _check(check, v.settings[(i, j, k)]) for k, check in enumerate(rs["checks"])
                ),
                options=_options(rs, RS_KEYS),
            )
        )
    sorry = vs.get("sorry_server")
    return VirtualServerConfig(
        name=v.names[i],
        services=tuple(endpoints),
        address=vs.get("address"),
        port=vs.get("port") if vs.get("address") is not None else None,
        protocol=vs["protocol"],
        fwmark=vs.get("fwmark"),
        family=v.families.get(i, 4),
        group=vs.get("group"),
        scheduler=vs["scheduler"],
        scheduler_flags=tuple(sorted(set(vs["scheduler_flags"]))),
        one_packet=vs["one_packet"],
        forwarding=forwarding,
        persistence=persistence,
        quorum=vs["quorum"],
        hysteresis=vs["hysteresis"],
        quorum_up=vs.get("quorum_up"),
        quorum_down=vs.get("quorum_down"),
        sorry_server=None if sorry is None else _sorry(sorry, forwarding, vs_port),
        inhibit_on_failure=inhibit,
        alpha=bool(vs.get("alpha", False)),
        omega=vs["omega"],
        delay_loop=float(vs.get("delay_loop") or 60.0),
        ha_suspend=vs.get("ha_suspend"),
        real_servers=tuple(real_servers),
        notify_timeout=float(glob.get("notify_timeout", 10.0)),
        options=_options(vs, VS_KEYS),
    )


def _group(data: dict[str, Any]) -> VirtualServerGroup:
    members = []
    for m in data["members"]:
        if m.get("fwmark") is not None:
            members.append(GroupMember(fwmark=m["fwmark"], family=m["family"]))
            continue
        addrs = expand_member(m["address"])
        members.append(
            GroupMember(
                first=addrs[0], last=addrs[-1], port=m.get("port"), family=addrs[0].version,
                text=m["address"],
            )
        )  # fmt: skip
    return VirtualServerGroup(name=data["name"], members=tuple(members))


def _sync(data: dict[str, Any], v: Validated) -> SyncDaemonConfig:
    instance = data.get("instance")
    syncid = data.get("syncid")
    given = syncid is not None
    if syncid is None:
        syncid = (v.vrrp_instances.get(instance) or 0) if instance is not None else 0
    return SyncDaemonConfig(
        interface=data["interface"],
        instance=instance,
        syncid=int(syncid),
        maxlen=data.get("maxlen"),
        port=data.get("port"),
        ttl=data.get("ttl"),
        group=data.get("group"),
        syncid_given=given,
    )


def build_ipvs(v: Validated, glob: dict[str, Any]) -> IpvsConfig:
    """The model of IPVS's section of a config that passed every check."""
    servers = []
    for i, vs in enumerate(v.virtual_servers):
        assert vs is not None
        servers.append(_virtual_server(i, vs, v, glob))
    groups = []
    for group in v.groups:
        assert group is not None
        groups.append(_group(group))
    return IpvsConfig(
        virtual_servers=tuple(servers),
        virtual_server_groups=tuple(groups),
        ipvs_sync_daemon=None if v.sync_daemon is None else _sync(v.sync_daemon, v),
        script_user=str(glob.get("script_user", "nobody")),
        script_security=bool(glob.get("script_security", True)),
    )


__all__ = ["Endpoint", "build_ipvs"]
