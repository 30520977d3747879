# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""vigil.ha.vrrp_failover against a real vigild in a private network namespace.

The agent there is alone: VI_1 is MASTER with nobody to hand over to (so a handover is
refused and rolled back by the agent, the failure path), VI_2 is in FAULT. A successful
handover and takeover between two agents is tested in
tests/integration/test_ansible_modules.py.
"""

from __future__ import annotations

import typing as t

from ansible_collections.vigil.ha.plugins.modules import vrrp_failover


def test_already_master_is_not_a_change(
    netns_agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    args = {"socket": netns_agent.socket, "instance": "VI_1", "state": "master"}
    for check in (True, False):
        result = run_module(vrrp_failover, args, check=check, diff=True)
        assert result["failed"] is False
        assert result["changed"] is False
        assert result["instances"] == [
            {"instance": "VI_1", "action": "none", "state_before": "MASTER",
             "state_after": "MASTER"}
        ]  # fmt: skip
        assert result["diff"] == {"before": {}, "after": {}}


def test_check_mode_predicts_a_handover_and_changes_nothing(
    netns_agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    args = {"socket": netns_agent.socket, "state": "backup"}
    result = run_module(vrrp_failover, args, check=True, diff=True)
    assert result["failed"] is False
    assert result["changed"] is True
    assert result["diff"] == {"before": {"VI_1": "MASTER"}, "after": {"VI_1": "BACKUP"}}
    actions = {i["instance"]: i["action"] for i in result["instances"]}
    assert actions == {"VI_1": "handover", "VI_2": "none"}
    inst = netns_agent.instance("VI_1")
    assert inst["state"] == "MASTER"
    assert inst["vips"][0]["present"] is True


def test_handover_without_a_peer_fails_with_what_the_agent_saw(
    netns_agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    args = {"socket": netns_agent.socket, "instance": "VI_1", "state": "backup", "timeout": 0.5}
    result = run_module(vrrp_failover, args)
    assert result["failed"] is True
    assert result["msg"].startswith("VI_1: handover rolled back: no peer took over")
    assert result["status"] == 409
    assert result["rolled_back"] is True
    assert result["instance"] == "VI_1"
    assert result["observed"]["state"] == "MASTER"
    assert result["observed"]["vips_present"] == [netns_agent.vip]
    assert netns_agent.instance("VI_1")["state"] == "MASTER"


def test_a_faulty_instance_cannot_become_master(
    netns_agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    args = {"socket": netns_agent.socket, "instance": "VI_2", "state": "master"}
    for check in (True, False):
        result = run_module(vrrp_failover, args, check=check)
        assert result["failed"] is True
        assert result["msg"].startswith("VI_2: is FAULT, not BACKUP, so it cannot take over")
        assert result["msg"].endswith("fix the fault (interface, trackers) first")
        assert result["observed"]["name"] == "VI_2"
    backup = run_module(
        vrrp_failover, {"socket": netns_agent.socket, "instance": "VI_2", "state": "backup"}
    )
    assert backup["failed"] is False
    assert backup["changed"] is False


def test_bad_arguments_are_refused_before_any_call(
    agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    result = run_module(vrrp_failover, {"socket": agent.socket, "state": "primary"})
    assert result["failed"] is True
    assert "state" in result["msg"] and "master, backup" in result["msg"]
    result = run_module(vrrp_failover, {"socket": agent.socket, "state": "master", "hold": 5})
    assert result["failed"] is True
    assert result["msg"].startswith("hold: only with state=backup")
    result = run_module(vrrp_failover, {"socket": agent.socket, "state": "backup", "timeout": 900})
    assert result["failed"] is True
    assert result["msg"].startswith("timeout: must be more than 0 and at most 300")
    result = run_module(
        vrrp_failover, {"socket": agent.socket, "state": "backup", "instance": "VI_7"}
    )
    assert result["msg"] == "unknown VRRP instance 'VI_7'; this agent has: none"


def test_no_instances_means_nothing_to_do(agent: t.Any, run_module: t.Callable[..., t.Any]) -> None:
    result = run_module(vrrp_failover, {"socket": agent.socket, "state": "master"})
    assert result["failed"] is False
    assert result["changed"] is False
    assert result["instances"] == []
