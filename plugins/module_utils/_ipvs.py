# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the vigil.ha IPVS modules share: IPVS's view of the agent, finding a virtual
server and a real server the way the agent does, which director holds a virtual server's
address, and the plan (drain, enable or nothing) that check mode reports and real runs
execute.

The planning functions take the API's data and return plain data, so they are tested
without an agent; the connection is ``_agent.AgentConnection``.
"""

from __future__ import annotations

import typing as t

from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    path_part,
)

__all__ = [
    "find_real_server",
    "holds_vip",
    "ipvs_view",
    "real_server_path",
    "real_server_plan",
    "rs_snapshot",
    "select_virtual_servers",
    "service_addresses",
]


def ipvs_view(conn: AgentConnection) -> dict[str, t.Any]:
    """GET /v1/ipvs/virtual_servers: ``virtual_servers``, ``kernel``, ``sync_daemon``.

    An agent without the IPVS subsystem has no such route: the error says so.
    """
    status, body = conn.call("GET", "/v1/ipvs/virtual_servers")
    if status == 404 and not (isinstance(body, dict) and "virtual_servers" in body):
        conn.section("ipvs")  # raises the clear "runs no ipvs subsystem" error
    if status != 200 or not isinstance(body, dict):
        return t.cast(dict, conn.get("/v1/ipvs/virtual_servers"))  # raises with the words
    return body


def select_virtual_servers(
    servers: list[dict[str, t.Any]], name: str | None
) -> list[dict[str, t.Any]]:
    """The virtual server called ``name``, or all of them when ``name`` is None."""
    if name is None:
        return list(servers)
    for vs in servers:
        if vs.get("name") == name:
            return [vs]
    have = sorted(str(vs.get("name")) for vs in servers)
    raise VigilError(
        f"unknown virtual server {name!r}; this agent has: {', '.join(have) or 'none'}",
        virtual_server=name,
        virtual_servers_available=have,
    )


def find_real_server(vs: dict[str, t.Any], text: str) -> dict[str, t.Any]:
    """The real server ``text`` (``ADDRESS:PORT``, or the bare address when unique)."""
    servers = list(vs.get("real_servers") or [])
    for rs in servers:
        if rs.get("name") == text:
            return t.cast(dict, rs)
    bare = text.strip("[]")
    matches = [rs for rs in servers if str(rs.get("address")) == bare]
    if len(matches) == 1:
        return t.cast(dict, matches[0])
    known = ", ".join(str(rs.get("name")) for rs in servers) or "none"
    if matches:
        raise VigilError(
            f"{text!r} is ambiguous in {vs.get('name')}; give the port: {known}",
            virtual_server=vs.get("name"),
            real_server=text,
        )
    raise VigilError(
        f"no real server {text!r} in {vs.get('name')}; it has: {known}",
        virtual_server=vs.get("name"),
        real_server=text,
    )


def real_server_path(vs: str, rs: str, action: str) -> str:
    """``/v1/ipvs/virtual_servers/VS/real_servers/RS/ACTION`` with both names quoted."""
    return f"/v1/ipvs/virtual_servers/{path_part(vs)}/real_servers/{path_part(rs)}/{action}"


def real_server_plan(rs: dict[str, t.Any], state: str) -> str | None:
    """``drain``, ``enable`` or None (already as wanted), from the API's ``drained`` flag."""
    drained = bool(rs.get("drained"))
    if state == "drained":
        return None if drained else "drain"
    return "enable" if drained else None


def rs_snapshot(rs: dict[str, t.Any]) -> dict[str, t.Any]:
    """What the module reports of a real server: health, drain, weight, connections."""
    conns = rs.get("connections") or {}
    return {
        "state": rs.get("state"),
        "drained": bool(rs.get("drained")),
        "in_ipvs": rs.get("in_ipvs"),
        "ipvs_weight": rs.get("ipvs_weight"),
        "active_connections": conns.get("active") if conns else None,
        "inactive_connections": conns.get("inactive") if conns else None,
    }


def service_addresses(vs: dict[str, t.Any]) -> list[str]:
    """The addresses of a virtual server's services (``tcp 10.0.0.1:80`` -> 10.0.0.1)."""
    out = []
    for service in vs.get("services") or []:
        words = str(service).split()
        if len(words) != 2 or words[0] == "fwmark":
            continue
        addr = words[1].rsplit(":", 1)[0].strip("[]")
        if addr not in out:
            out.append(addr)
    return out


def holds_vip(vs: dict[str, t.Any], instances: list[dict[str, t.Any]]) -> bool:
    """Whether this director holds (serves) the virtual server now.

    It does when a VRRP instance that is MASTER here has one of the virtual server's
    addresses among its VIPs, present in the kernel. A virtual server without addresses
    (firewall marks) follows its ``ha_suspend`` instance. If neither tells, the question
    has no answer: a VigilError says to act on every director instead.
    """
    addresses = set(service_addresses(vs))
    related = []
    for inst in instances:
        vips = inst.get("vips") or []
        mine = [v for v in vips if str(v.get("address", "")).split("/", maxsplit=1)[0] in addresses]
        if mine:
            related.append(inst)
            if inst.get("state") == "MASTER" and any(v.get("present") for v in mine):
                return True
    if related:
        return False
    suspend = vs.get("ha_suspend") or {}
    if suspend.get("instance"):
        return suspend.get("vrrp_state") == "MASTER"
    raise VigilError(
        f"{vs.get('name')}: no VRRP instance of this agent carries its address "
        f"({', '.join(sorted(addresses)) or 'a firewall mark'}) and it has no ha_suspend "
        "instance, so which director holds it is unknown; use director: all",
        virtual_server=vs.get("name"),
    )
