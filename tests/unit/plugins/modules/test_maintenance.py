# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""vigil.ha.maintenance against a real vigild in a private network namespace.

VI_2 (FAULT) takes maintenance on and off like any backup; VI_1 is a master alone, so the
agent refuses to finish maintenance on it (no peer takes over) and the module reports why.
The two-node hand-over under maintenance is in tests/integration/test_ansible_modules.py.
"""

from __future__ import annotations

import typing as t

from ansible_collections.vigil.ha.plugins.modules import maintenance


def test_on_off_is_idempotent_and_verified(
    netns_agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    args = {"socket": netns_agent.socket, "instance": "VI_2"}

    predicted = run_module(maintenance, dict(args, state="enabled"), check=True, diff=True)
    assert predicted["failed"] is False
    assert predicted["changed"] is True
    assert predicted["diff"] == {"before": {"VI_2": False}, "after": {"VI_2": True}}
    assert netns_agent.instance("VI_2")["maintenance"] is False

    first = run_module(maintenance, dict(args, state="enabled"), diff=True)
    assert first["failed"] is False
    assert first["changed"] is True
    assert first["instances"][0]["maintenance"] is True
    assert first["instances"][0]["message"].startswith("maintenance on:")
    assert netns_agent.instance("VI_2")["maintenance"] is True

    again = run_module(maintenance, dict(args, state="enabled"), diff=True)
    assert again["changed"] is False
    assert again["diff"] == {"before": {}, "after": {}}

    off = run_module(maintenance, dict(args, state="disabled"))
    assert off["changed"] is True
    assert netns_agent.instance("VI_2")["maintenance"] is False
    off_again = run_module(maintenance, dict(args, state="disabled"), check=True)
    assert off_again["changed"] is False


def test_master_without_a_peer_is_refused_with_what_the_agent_saw(
    netns_agent: t.Any, run_module: t.Callable[..., t.Any]
) -> None:
    args = {"socket": netns_agent.socket, "state": "enabled", "timeout": 0.5}
    result = run_module(maintenance, args)
    assert result["failed"] is True
    assert "VI_1: maintenance rolled back: no peer took over" in result["msg"]
    assert result["status"] == 409
    by_name = {r["instance"]: r for r in result["instance_results"]}
    assert by_name["VI_1"]["ok"] is False
    assert by_name["VI_1"]["observed"]["state"] == "MASTER"
    assert by_name["VI_2"]["ok"] is True
    # The agent keeps maintenance on (the first peer that appears takes over): the module
    # now sees the wanted flags, so a second run has nothing left to change.
    assert netns_agent.instance("VI_1")["maintenance"] is True
    assert netns_agent.instance("VI_1")["state"] == "MASTER"
    again = run_module(maintenance, args)
    assert again["failed"] is False
    assert again["changed"] is False

    off = run_module(maintenance, {"socket": netns_agent.socket, "state": "disabled"})
    assert off["changed"] is True
    assert [r["maintenance"] for r in off["instances"]] == [False, False]


def test_unknown_instance_and_bad_state(agent: t.Any, run_module: t.Callable[..., t.Any]) -> None:
    result = run_module(
        maintenance, {"socket": agent.socket, "instance": "VI_3", "state": "enabled"}
    )
    assert result["msg"] == "unknown VRRP instance 'VI_3'; this agent has: none"
    result = run_module(maintenance, {"socket": agent.socket, "state": "on"})
    assert result["failed"] is True
    assert "enabled, disabled" in result["msg"]
    node = run_module(maintenance, {"socket": agent.socket, "state": "enabled"})
    assert node["failed"] is False
    assert node["changed"] is False
