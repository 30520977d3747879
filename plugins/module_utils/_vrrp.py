# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the vigil.ha VRRP modules share: VRRP's view of the agent and the plans (which
instances must change) that check mode reports and real runs execute.

The planning functions take the instance list as the API gives it and return plain data,
so they are tested without an agent; the connection is ``_agent.AgentConnection``.
"""

from __future__ import annotations

import typing as t

from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    path_part,
)

__all__ = [
    "failover_plan",
    "instance_path",
    "instance_view",
    "maintenance_plan",
    "select_instances",
    "vrrp_status",
]


def vrrp_status(conn: AgentConnection) -> tuple[dict[str, t.Any], list[dict[str, t.Any]]]:
    """The agent's own status and its VRRP instances (GET /v1/status)."""
    body = conn.status()
    vrrp = body.get("vrrp") or {}
    return body.get("agent") or {}, list(vrrp.get("instances") or [])


def instance_path(name: str, action: str | None = None) -> str:
    """``/v1/vrrp/instances/NAME[/ACTION]`` with the name quoted."""
    path = f"/v1/vrrp/instances/{path_part(name)}"
    return f"{path}/{action}" if action else path


def instance_view(conn: AgentConnection, name: str) -> dict[str, t.Any]:
    """One instance's view now (GET /v1/vrrp/instances/NAME)."""
    return t.cast(dict, conn.get(instance_path(name)))


def select_instances(instances: list[dict[str, t.Any]], name: str | None) -> list[dict[str, t.Any]]:
    """The instance called ``name``, or all of them when ``name`` is None."""
    if name is None:
        return list(instances)
    for inst in instances:
        if inst.get("name") == name:
            return [inst]
    have = ", ".join(sorted(str(i.get("name")) for i in instances)) or "none"
    raise VigilError(
        f"unknown VRRP instance {name!r}; this agent has: {have}",
        instance=name,
        instances_available=sorted(str(i.get("name")) for i in instances),
    )


def failover_plan(instances: list[dict[str, t.Any]], want: str) -> list[dict[str, t.Any]]:
    """The steps that make this node ``want`` ("master" or "backup") for each instance.

    Each step is {instance, state, action}: ``action`` is "takeover", "handover" or None when
    the instance already is what is wanted. An instance that cannot get there (FAULT, INIT,
    maintenance) is a VigilError naming the instance and the fix, so check mode predicts
    the failure a real run would hit.
    """
    steps = []
    for inst in instances:
        name = inst.get("name")
        state = str(inst.get("state"))
        action = None
        if want == "master" and state != "MASTER":
            if state != "BACKUP":
                reason = inst.get("fault_reason") or ", ".join(
                    f"{k}: {v}" for k, v in (inst.get("faults") or {}).items()
                )
                raise VigilError(
                    f"{name}: is {state}, not BACKUP, so it cannot take over"
                    + (f" ({reason})" if reason else "")
                    + "; fix the fault (interface, trackers) first",
                    instance=name,
                    observed=inst,
                )
            if inst.get("maintenance"):
                raise VigilError(
                    f"{name}: is in maintenance, so it cannot take over; end it first with "
                    "vigil.ha.maintenance (state: disabled)",
                    instance=name,
                    observed=inst,
                )
            action = "takeover"
        elif want == "backup" and state == "MASTER":
            action = "handover"
        steps.append({"instance": name, "state": state, "action": action})
    return steps


def maintenance_plan(instances: list[dict[str, t.Any]], enabled: bool) -> list[str]:
    """Names of the instances whose maintenance flag differs from ``enabled``."""
    return [str(i.get("name")) for i in instances if bool(i.get("maintenance")) != enabled]
