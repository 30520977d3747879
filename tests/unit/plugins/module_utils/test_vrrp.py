# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plans the modules make from the API's instance list (pure functions, no agent).

The instance dicts carry the keys the agent's ``GET /v1/status`` gives (name, state,
maintenance, fault_reason, faults); the end-to-end behaviour is in the module tests.
"""

from __future__ import annotations

import pytest
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    vigil_argument_spec,
)
from ansible_collections.vigil.ha.plugins.module_utils._vrrp import (
    failover_plan,
    maintenance_plan,
    select_instances,
)

INSTANCES = [
    {"name": "VI_2", "state": "MASTER", "maintenance": False},
    {"name": "VI_1", "state": "BACKUP", "maintenance": False},
    {"name": "VI_3", "state": "BACKUP", "maintenance": True},
    {"name": "VI_4", "state": "FAULT", "fault_reason": "interface eth1 is down", "faults": {}},
    {"name": "VI_5", "state": "INIT", "faults": {"tracker chk": "FAILED"}},
]


def test_select_keeps_the_agent_order_or_names_what_exists() -> None:
    assert [i["name"] for i in select_instances(INSTANCES, None)] == [
        "VI_2", "VI_1", "VI_3", "VI_4", "VI_5"
    ]  # fmt: skip
    assert select_instances(INSTANCES, "VI_4") == [INSTANCES[3]]
    with pytest.raises(VigilError) as exc:
        select_instances(INSTANCES, "VI_9")
    assert exc.value.msg == (
        "unknown VRRP instance 'VI_9'; this agent has: VI_1, VI_2, VI_3, VI_4, VI_5"
    )
    assert exc.value.data["instances_available"] == ["VI_1", "VI_2", "VI_3", "VI_4", "VI_5"]


def test_backup_plan_hands_over_only_masters() -> None:
    plan = failover_plan(INSTANCES, "backup")
    assert [(s["instance"], s["action"]) for s in plan] == [
        ("VI_2", "handover"), ("VI_1", None), ("VI_3", None), ("VI_4", None), ("VI_5", None)
    ]  # fmt: skip


def test_master_plan_takes_over_backups_and_refuses_what_cannot_move() -> None:
    assert failover_plan(INSTANCES[:2], "master") == [
        {"instance": "VI_2", "state": "MASTER", "action": None},
        {"instance": "VI_1", "state": "BACKUP", "action": "takeover"},
    ]
    with pytest.raises(VigilError) as exc:
        failover_plan([INSTANCES[2]], "master")
    assert exc.value.msg.startswith("VI_3: is in maintenance, so it cannot take over")
    assert "vigil.ha.maintenance (state: disabled)" in exc.value.msg
    with pytest.raises(VigilError) as exc:
        failover_plan([INSTANCES[3]], "master")
    assert exc.value.msg == (
        "VI_4: is FAULT, not BACKUP, so it cannot take over (interface eth1 is down); "
        "fix the fault (interface, trackers) first"
    )
    with pytest.raises(VigilError) as exc:
        failover_plan([INSTANCES[4]], "master")
    assert "(tracker chk: FAILED)" in exc.value.msg


def test_maintenance_plan_lists_only_differing_flags() -> None:
    assert maintenance_plan(INSTANCES, True) == ["VI_2", "VI_1", "VI_4", "VI_5"]
    assert maintenance_plan(INSTANCES, False) == ["VI_3"]
    assert maintenance_plan([], True) == []


def test_argument_spec_and_timeout_bounds() -> None:
    spec = vigil_argument_spec()
    assert spec == {
        "socket": {"type": "path", "default": "/run/vigil/vigil.sock"},
        "timeout": {"type": "float"},
    }
    # A query waits `timeout`; an action passes it on and waits 10 s longer.
    assert AgentConnection("/x.sock", 3.0).client.timeout == 3.0
    assert AgentConnection("/x.sock", None).client.timeout == 10.0
    action = AgentConnection("/x.sock", 3.0, action=True)
    assert (action.action_timeout, action.client.timeout) == (3.0, 13.0)
    assert AgentConnection("/x.sock", None, action=True).action_timeout is None
    for bad in (0.0, -2.0, 300.5):
        with pytest.raises(VigilError) as exc:
            AgentConnection("/x.sock", bad)
        assert exc.value.msg.startswith("timeout: must be more than 0 and at most 300 seconds")
