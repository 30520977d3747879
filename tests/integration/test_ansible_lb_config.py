"""vigil.ha.agent_config for a director pair: IPVS and BFD rendered from inventory.

Namespaces are the inventory hosts (``ansible_connection: local`` and an interpreter
wrapper that runs Python inside the namespace, as in test_ansible_agent_config.py): n1 and
n2, the directors, run a real vigild each; web1 and web2 are backends whose facts are
gathered inside their own namespaces by a first play. web1's address and weight come from its
``vigil_real_server`` variable, web2's address from its facts (``interface: eth0``). web3
is in the inventory only (never contacted, no facts, no address).

Covered: the pair's configs are rendered (real servers from the group, the sync daemon on
each director's interface, a BFD session between the directors with each one's own
address as ``local``), applied and reloaded, the BFD session comes Up between the two
agents, and a second run changes nothing; then broken inventories (a backend without an
address, a group that does not exist, a BFD session on one end only, a sync daemon bound
to an instance the directors do not run) fail on both hosts before anything is written,
naming the host and the field. This host's kernel has no IPVS: the agents load the
virtual servers and answer for them, but program nothing (IPVS itself is tested in the VM).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_ansible_agent_config import BIN, Controller, recap, snapshot
from tests.lab.agents import AgentHandle
from tests.lab.lab import Lab

pytestmark = pytest.mark.integration

DIRECTORS = ("n1", "n2")  # the names Controller knows
BACKENDS = ("web1", "web2")

CLUSTER: dict[str, Any] = {
    "global": {"vrrp_version": 3},
    "vrrp_instances": [
        {
            "name": "VI_1",
            "vrid": 52,
            "advert_interval": 0.1,
            "unicast": True,
            "virtual_ipaddresses": ["10.99.0.100/24"],
        }
    ],
    "virtual_servers": [
        {
            "name": "web",
            "address": "10.99.0.100",
            "port": 80,
            "scheduler": "wrr",
            "real_servers_from": {"group": "backends", "port": 8080, "checks": ["tcp"]},
        }
    ],
    "ipvs_sync_daemon": {"instance": "VI_1"},
    "bfd": {"pair": {"min_tx": 0.1, "min_rx": 0.1}},
}


class LbController(Controller):
    """Controller's inventory plus a backend group and a play that gathers its facts."""

    def __init__(self, lab: Lab, tmp: Path, agents: dict[str, AgentHandle]) -> None:
        super().__init__(lab, tmp, agents)
        inventory = yaml.safe_load(self.inventory.read_text())
        backends: dict[str, Any] = {}
        for name in BACKENDS:
            wrapper = tmp / f"python-{name}"
            ns = lab.nodes[name].ns
            wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {BIN / "python"} "$@"\n')
            wrapper.chmod(0o755)
            backends[name] = {"ansible_python_interpreter": str(wrapper)}
        backends["web1"]["vigil_real_server"] = {"address": "10.99.0.21", "weight": 3}
        backends["web2"]["vigil_real_server"] = {"interface": "eth0"}
        inventory["backends"] = {"hosts": backends, "vars": {"ansible_connection": "local"}}
        # in the inventory only: never contacted, so no facts and no address
        inventory["backends_bad"] = {
            "hosts": {"web1": {}, "web3": {"vigil_real_server": {"weight": 2}}},
        }
        self.inventory.write_text(yaml.safe_dump(inventory))

    def lb_playbook(self, name: str, tasks: list[dict[str, Any]]) -> Path:
        path = self.playbook(name, tasks)
        plays = yaml.safe_load(path.read_text())
        facts = {
            "name": "Gather the backends' facts",
            "hosts": "backends",
            "gather_facts": True,
            "gather_subset": ["!all", "!min", "network"],
            "tasks": [],
        }
        path.write_text(yaml.safe_dump([facts, *plays], sort_keys=False))
        return path


@pytest.fixture
def lb(lab: Lab, tmp_path: Path) -> LbController:
    lab.add_switch()
    agents = {}
    for index, name in enumerate(DIRECTORS, start=1):
        lab.add_namespace(name)
        lab.connect(name, "eth0", addrs=[f"10.99.0.1{index}/24"])
        empty = {"global": {"router_id": name, "allow_empty_config": True}}
        agents[name] = lab.start_vigild(name, empty, log_level="info")
    for index, name in enumerate(BACKENDS, start=1):
        lab.add_namespace(name)
        lab.connect(name, "eth0", addrs=[f"10.99.0.2{index}/24"])
    return LbController(lab, tmp_path, agents)


def session(agent: AgentHandle, name: str) -> dict[str, Any]:
    status, body = agent.client.get(f"/v1/bfd/sessions/{name}")
    assert status == 200, body
    return dict(body)


def test_a_director_pair_from_inventory_then_broken_inventories_write_nothing(
    lb: LbController, lab: Lab
) -> None:
    d1, d2 = lb.agents["n1"], lb.agents["n2"]

    # -- apply: real servers from the group, the pair's BFD session, the sync daemon
    apply = lb.lb_playbook("apply", [{"label": "cfg", "args": {"cluster": CLUSTER}}])
    out, counts = lb.run(apply)
    for name in DIRECTORS:
        assert counts[name]["failed"] == 0 and counts[name]["changed"] == 1, out
        result = lb.results("apply", name)["cfg"]
        assert result["changed"] is True and result["reloaded"] is True, result
        assert result["virtual_servers"]["added"] == ["web"], result
        assert result["bfd_sessions"]["added"] == ["peer"], result
    written = {name: yaml.safe_load(a.config_path.read_text()) for name, a in lb.agents.items()}
    for name in DIRECTORS:
        (vs,) = written[name]["virtual_servers"]
        assert "real_servers_from" not in vs
        assert vs["real_servers"] == [
            {"address": "10.99.0.21", "port": 8080, "weight": 3, "checks": ["tcp"]},
            {"address": "10.99.0.22", "port": 8080, "checks": ["tcp"]},  # from web2's facts
        ]
        assert written[name]["ipvs_sync_daemon"] == {"instance": "VI_1", "interface": "eth0"}
    assert written["n1"]["bfd"] == {
        "sessions": [
            {"name": "peer", "peer": "10.99.0.12", "local": "10.99.0.11"}
            | {"min_tx": 0.1, "min_rx": 0.1}
        ]
    }
    assert written["n2"]["bfd"]["sessions"][0]["local"] == "10.99.0.12"
    # the agents run it: the session between them comes Up, the virtual server is loaded
    for agent in (d1, d2):
        lab.wait_for(
            lambda a=agent: session(a, "peer")["state"] == "Up", timeout=20, what="BFD peer Up"
        )
    status, body = d1.client.get("/v1/ipvs/virtual_servers/web")
    assert status == 200, body
    assert [rs["name"] for rs in body["real_servers"]] == ["10.99.0.21:8080", "10.99.0.22:8080"]
    assert body["kernel"]["available"] is False  # this host's kernel: the VM tests program it

    # -- the same again: nothing changes
    before = snapshot(lb.agents)
    out, counts = lb.run(apply)
    for name in DIRECTORS:
        assert counts[name]["changed"] == 0 and counts[name]["failed"] == 0, out
        result = lb.results("apply", name)["cfg"]
        assert result["virtual_servers"]["unchanged"] == ["web"], result
        assert result["bfd_sessions"]["unchanged"] == ["peer"], result
    assert snapshot(lb.agents) == before

    # -- broken inventories: every one fails on both directors, nothing is written
    no_address = copy.deepcopy(CLUSTER)
    no_address["virtual_servers"][0]["real_servers_from"]["group"] = "backends_bad"
    no_group = copy.deepcopy(CLUSTER)
    no_group["virtual_servers"][0]["real_servers_from"]["group"] = "webservers"
    one_end = copy.deepcopy(CLUSTER)
    one_end["bfd"] = {"sessions": [{"name": "x", "peer": "10.99.0.12"}]}
    sync = copy.deepcopy(CLUSTER)
    sync["ipvs_sync_daemon"]["instance"] = "VI_2"
    broken = {"ignore_errors": True}
    tasks = [
        {"label": "no_address", "args": {"cluster": no_address}, **broken},
        {"label": "no_group", "args": {"cluster": no_group}, **broken},
        {"label": "one_end", "args": {"cluster": one_end}, **broken},
        {"label": "sync", "args": {"cluster": sync}, **broken},
    ]
    out, counts = lb.run(lb.lb_playbook("broken", tasks))
    for name in DIRECTORS:
        assert counts[name]["ignored"] == 4 and counts[name]["changed"] == 0, out
    assert snapshot(lb.agents) == before
    expected = {
        "no_address": "host web3: vigil_real_server.address: web: real server web3 (group "
        "backends_bad) needs an IPv4 address and its facts show none",
        "no_group": "host n1: cluster.virtual_servers[0].real_servers_from.group: web: group "
        "'webservers' is not in the inventory; it has: backends, backends_bad, pair",
        "one_end": "host n1: bfd.sessions[0].peer: x: 10.99.0.12 is n2, which has no BFD "
        "session to this node; add one there (peer: this address) or the session stays Down",
        "sync": "host n1: ipvs_sync_daemon.instance: ",
    }
    for name in DIRECTORS:
        results = lb.results("broken", name)
        for label, message in expected.items():
            result = results[label]
            assert result["failed"] is True, (label, result)
            assert "nothing was written" in result["msg"], (label, result)
            assert message in result["msg"], (label, result["msg"])
    assert "VI_2" in lb.results("broken", "n1")["sync"]["msg"]
    assert recap(out)  # the run finished with a recap for every host
    assert session(d1, "peer")["state"] == "Up"  # the running agents kept their config
