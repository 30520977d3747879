# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""vigil.ha.vrrp_info against a real vigild (see tests/unit/conftest.py)."""

from __future__ import annotations

import os
import tempfile
import typing as t

from ansible_collections.vigil.ha.plugins.modules import vrrp_info


def test_agent_without_instances(agent: t.Any, run_module: t.Callable[..., t.Any]) -> None:
    result = run_module(vrrp_info, {"socket": agent.socket})
    assert result["failed"] is False
    assert result["changed"] is False
    assert result["instances"] == []
    assert result["agent"]["router_id"] == "unit0"
    assert result["agent"]["ready"] is True
    assert result["agent"]["socket"] == agent.socket


def test_check_mode_reads_the_same(agent: t.Any, run_module: t.Callable[..., t.Any]) -> None:
    result = run_module(vrrp_info, {"socket": agent.socket, "timeout": 3}, check=True)
    assert result["failed"] is False
    assert result["changed"] is False
    assert result["agent"]["router_id"] == "unit0"


def test_unknown_instance_lists_what_the_agent_has(
    agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    result = run_module(vrrp_info, {"socket": agent.socket, "instance": "VI_9"})
    assert result["failed"] is True
    assert result["msg"] == "unknown VRRP instance 'VI_9'; this agent has: none"


def test_unreachable_agent_names_the_socket(run_module: t.Callable[..., t.Any]) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        path = os.path.join(d, "absent.sock")
        result = run_module(vrrp_info, {"socket": path})
    assert result["failed"] is True
    assert result["msg"].startswith(f"cannot reach the vigil agent at {path}: ")
    assert "No such file or directory" in result["msg"]
    assert "set the socket option" in result["msg"]
    assert result["socket"] == path


def test_timeout_out_of_range_names_the_option(
    agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    for bad in (0, -1, 301):
        result = run_module(vrrp_info, {"socket": agent.socket, "timeout": bad})
        assert result["failed"] is True
        assert result["msg"].startswith("timeout: must be more than 0 and at most 300 seconds")


def test_live_instances_in_a_namespace(
    netns_agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    result = run_module(vrrp_info, {"socket": netns_agent.socket})
    assert result["failed"] is False
    by_name = {i["name"]: i for i in result["instances"]}
    assert sorted(by_name) == ["VI_1", "VI_2"]
    assert by_name["VI_1"]["state"] == "MASTER"
    assert by_name["VI_1"]["vips"] == [{"address": netns_agent.vip, "dev": "vg0", "present": True}]
    assert by_name["VI_1"]["effective_priority"] == 150
    assert by_name["VI_2"]["state"] == "FAULT"
    assert by_name["VI_2"]["vips"][0]["present"] is False

    one = run_module(vrrp_info, {"socket": netns_agent.socket, "instance": "VI_2"})
    assert [i["name"] for i in one["instances"]] == ["VI_2"]
    missing = run_module(vrrp_info, {"socket": netns_agent.socket, "instance": "VI_9"})
    assert missing["msg"] == "unknown VRRP instance 'VI_9'; this agent has: VI_1, VI_2"
