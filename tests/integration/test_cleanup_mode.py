"""`vigild --cleanup` in a namespace: what systemd's ExecStopPost does after a crash.

A SIGKILLed master leaves its VIPs (and virtual routes) in the kernel; the clean-up reads
the state journal and removes them, without the config and without starting the agent.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.lab.agents import AgentHandle
from tests.lab.lab import Lab, Node

pytestmark = pytest.mark.integration

VIP = "10.99.0.100"
EXCLUDED = "10.99.7.100"
ROUTE = "10.98.0.0/16"


def node(lab: Lab) -> Node:
    lab.add_switch()
    n1 = lab.add_namespace("n1")
    lab.connect(n1, addrs=["10.99.0.11/24"])
    lab.connect(n1, "eth1", addrs=["10.99.7.11/24"])
    return n1


def config() -> dict[str, Any]:
    return {
        "global": {"router_id": "n1"},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 51,
                "priority": 150,
                "version": 3,
                "advert_interval": 0.1,
                "virtual_ipaddresses": [f"{VIP}/24"],
                "virtual_ipaddresses_excluded": [{"address": f"{EXCLUDED}/24", "dev": "eth1"}],
                "virtual_routes": [{"to": ROUTE, "via": "10.99.0.254"}],
            }
        ],
    }


def has_route(lab: Lab, n1: Node) -> bool:
    out = lab.run(n1, ["ip", "-j", "route", "show"]).stdout
    return any(r.get("dst") == ROUTE for r in json.loads(out or "[]"))


def cleanup(lab: Lab, agent: AgentHandle) -> tuple[int, str]:
    proc = lab.run(
        agent.node,
        [sys.executable, "-m", "vigil.daemon", "--cleanup", "--state-dir", str(agent.state_dir)],
        check=False,
        timeout=30,
    )
    return proc.returncode, proc.stdout + proc.stderr


def master(lab: Lab) -> tuple[Node, AgentHandle]:
    n1 = node(lab)
    agent = lab.start_vigild(n1, config())
    lab.wait_address(n1, VIP)
    lab.wait_address(n1, EXCLUDED)
    lab.wait_for(lambda: has_route(lab, n1), what=f"route {ROUTE} on n1")
    return n1, agent


def test_cleanup_after_sigkill_removes_vips_and_routes(lab: Lab) -> None:
    n1, agent = master(lab)
    lab.kill_group(agent)
    assert lab.has_address(n1, VIP) and lab.has_address(n1, EXCLUDED), "SIGKILL leaves VIPs"
    assert has_route(lab, n1)

    code, text = cleanup(lab, agent)
    assert code == 0, text
    assert f"removed VIP {VIP}/24 on eth0" in text
    assert f"removed VIP {EXCLUDED}/24 on eth1" in text
    assert f"removed route {ROUTE}" in text
    assert not lab.has_address(n1, VIP) and not lab.has_address(n1, EXCLUDED)
    assert not has_route(lab, n1)
    assert lab.has_address(n1, "10.99.0.11/24"), "the node's own address stays"

    code, text = cleanup(lab, agent)
    assert code == 0 and "nothing to clean up" in text, text


def test_cleanup_after_a_clean_stop_has_nothing_to_do(lab: Lab) -> None:
    n1, agent = master(lab)
    assert agent.stop() == 0
    assert not lab.has_address(n1, VIP)
    code, text = cleanup(lab, agent)
    assert code == 0, text
    assert "removed" not in text


def test_cleanup_never_touches_a_running_agent(lab: Lab) -> None:
    n1, agent = master(lab)
    code, text = cleanup(lab, agent)
    assert code == 1
    assert "in use by another vigild" in text
    assert lab.has_address(n1, VIP) and has_route(lab, n1)
    assert agent.health()[0] == 200
