"""vigil.ha.agent_config through ansible-playbook, with network namespaces as the hosts.

Each namespace is an inventory host (``ansible_connection: local`` and an interpreter
wrapper that runs Python inside the namespace, see LAB-NOTES), runs a real vigild, and its
facts (gathered inside the namespace) give the addresses and subnets the plugin uses.
The collection is found through a symlinked ``ansible_collections/vigil/ha``.

Covered: apply (changed, reloaded, the VIP comes up on the first host), the same again
(changed=0, same bytes), check mode on a changed inventory (predicts the change and the VIP
move, changes nothing), and broken inventories (duplicate VRID, VIPs that differ, a
priority tie) that fail on every host before anything is written, naming host and field.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.agents import AgentHandle
from tests.lab.lab import Lab

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VIP = "10.99.0.100/24"
PLAYBOOK_TIMEOUT = 240.0
HOSTS = ("n1", "n2")

CLUSTER: dict[str, Any] = {
    "global": {"vrrp_version": 3},
    "vrrp_instances": [
        {
            "name": "VI_1",
            "vrid": 51,
            "advert_interval": 0.1,
            "unicast": True,
            "virtual_ipaddresses": [VIP],
        }
    ],
}


class Controller:
    """An inventory of namespace hosts and a way to run ansible-playbook against it."""

    def __init__(self, lab: Lab, tmp: Path, agents: dict[str, AgentHandle]) -> None:
        self.lab = lab
        self.tmp = tmp
        self.agents = agents
        coll = tmp / "collections" / "ansible_collections" / "vigil"
        coll.mkdir(parents=True)
        (coll / "ha").symlink_to(REPO)
        self.out = tmp / "out"
        self.out.mkdir()
        hosts: dict[str, Any] = {}
        for name, agent in agents.items():
            wrapper = tmp / f"python-{name}"
            wrapper.write_text(
                f'#!/bin/sh\nexec ip netns exec {agent.node.ns} {sys.executable} "$@"\n'
            )
            wrapper.chmod(0o755)
            hosts[name] = {
                "ansible_python_interpreter": str(wrapper),
                "vigil_dest": str(agent.config_path),
                "vigil_socket": str(agent.socket_path),
                "vigil_node": {"interface": "eth0"},
            }
        # the per-scenario host variables: a swap of priorities, VIPs that differ, a tie
        hosts["n2"]["swap_node"] = {"interface": "eth0", "priority": 200}
        hosts["n1"]["swap_node"] = {"interface": "eth0"}
        hosts["n1"]["vips_node"] = {"interface": "eth0"}
        hosts["n2"]["vips_node"] = {
            "interface": "eth0",
            "instances": {"VI_1": {"virtual_ipaddresses": ["10.99.0.101/24"]}},
        }
        hosts["n1"]["tie_node"] = {"interface": "eth0", "priority": 120}
        hosts["n2"]["tie_node"] = {"interface": "eth0", "priority": 120}
        inventory = {
            "pair": {
                "hosts": hosts,
                "vars": {"ansible_connection": "local", "vigild_path": str(BIN / "vigild")},
            }
        }
        self.inventory = tmp / "inventory.yml"
        self.inventory.write_text(yaml.safe_dump(inventory))

    def playbook(self, name: str, tasks: list[dict[str, Any]]) -> Path:
        """A play over the pair: gather network facts, run ``tasks``, dump what they returned."""
        body: list[dict[str, Any]] = []
        labels = []
        for task in tasks:
            label = task.pop("label")
            labels.append(label)
            args = {
                "group": "pair",
                "dest": "{{ vigil_dest }}",
                "socket": "{{ vigil_socket }}",
                "vigild_path": "{{ vigild_path }}",
                "wait_timeout": 20,
                **task.pop("args"),
            }
            body.append({"name": label, "vigil.ha.agent_config": args, "register": label, **task})
        dump = "{{ {" + ", ".join(f"'{label}': {label}" for label in labels) + "} | to_json }}"
        body.append(
            {
                "name": "Keep what the tasks returned",
                "ansible.builtin.copy": {
                    "content": dump,
                    "dest": f"{self.out}/{name}-{{{{ inventory_hostname }}}}.json",
                    "mode": "0600",
                },
                "changed_when": False,
            }
        )
        play = [
            {
                "name": name,
                "hosts": "pair",
                "gather_facts": True,
                "gather_subset": ["!all", "!min", "network"],
                "tasks": body,
            }
        ]
        path = self.tmp / f"{name}.yml"
        path.write_text(yaml.safe_dump(play, sort_keys=False))
        return path

    def run(self, playbook: Path, *args: str) -> tuple[str, dict[str, dict[str, int]]]:
        """ansible-playbook (bounded; its whole process group killed on timeout)."""
        env = dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(self.tmp / "collections"),
            ANSIBLE_LOCAL_TEMP=str(self.tmp / "ansible-local"),
            ANSIBLE_REMOTE_TEMP=str(self.tmp / "ansible-remote"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_RETRY_FILES_ENABLED="0",
            ANSIBLE_CONFIG=str(self.tmp / "none.cfg"),
            ANSIBLE_FORKS="2",
        )
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(playbook), *args]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=PLAYBOOK_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise AssertionError(f"ansible-playbook did not finish:\n{out}") from None
        return out, recap(out)

    def results(self, name: str, host: str) -> dict[str, Any]:
        return json.loads((self.out / f"{name}-{host}.json").read_text())  # type: ignore[no-any-return]


def recap(out: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host."""
    counts: dict[str, dict[str, int]] = {}
    for line in out.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            counts[match[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match[2])}
    return counts


def snapshot(agents: dict[str, AgentHandle]) -> dict[str, tuple[bytes, int, Any]]:
    """Each host's file (bytes, mtime) and the config its agent runs."""
    out = {}
    for name, agent in agents.items():
        status, body = agent.client.get("/v1/config")
        assert status == 200
        stat = agent.config_path.stat()
        out[name] = (agent.config_path.read_bytes(), stat.st_mtime_ns, body["config"])
    return out


def vrrp_state(agent: AgentHandle) -> str:
    status, body = agent.client.get("/v1/vrrp/instances/VI_1")
    return str(body.get("state")) if status == 200 else f"HTTP {status}"


@pytest.fixture
def pair(lab: Lab, tmp_path: Path) -> Controller:
    lab.add_switch()
    agents = {}
    for index, name in enumerate(HOSTS, start=1):
        lab.add_namespace(name)
        lab.connect(name, "eth0", addrs=[f"10.99.0.1{index}/24"])
        # A host waiting for its first config: explicitly empty (issue 15, defect 4).
        empty = {"global": {"router_id": name, "allow_empty_config": True}}
        agents[name] = lab.start_vigild(name, empty, log_level="info")
    return Controller(lab, tmp_path, agents)


def test_apply_is_verified_then_idempotent_and_broken_inventories_write_nothing(
    pair: Controller, lab: Lab
) -> None:
    n1, n2 = pair.agents["n1"], pair.agents["n2"]

    # -- apply: both change, both reload, the first host of the group becomes master
    apply = pair.playbook("apply", [{"label": "cfg", "args": {"cluster": CLUSTER}}])
    out, counts = pair.run(apply, "--diff")
    assert counts["n1"]["failed"] == 0 and counts["n2"]["failed"] == 0, out
    assert counts["n1"]["changed"] == 1 and counts["n2"]["changed"] == 1, out
    for name in HOSTS:
        result = pair.results("apply", name)["cfg"]
        assert result["changed"] is True and result["validated"] is True, result
        assert result["reloaded"] is True, result
        assert result["instances"]["added"] == ["VI_1"], result
    written = {name: yaml.safe_load(a.config_path.read_text()) for name, a in pair.agents.items()}
    inst1, inst2 = (written[h]["vrrp_instances"][0] for h in HOSTS)
    assert (inst1["priority"], inst2["priority"]) == (150, 140)
    assert inst1["unicast"] == {"source": "10.99.0.11", "peers": ["10.99.0.12"]}  # from facts
    assert inst2["unicast"] == {"source": "10.99.0.12", "peers": ["10.99.0.11"]}
    assert written["n2"]["global"]["router_id"] == "n2"
    lab.wait_address("n1", VIP, timeout=10)
    lab.wait_for(lambda: vrrp_state(n2) == "BACKUP", timeout=10, what="n2 BACKUP")
    assert vrrp_state(n1) == "MASTER"
    assert not lab.has_address("n2", VIP)

    # -- the same again: nothing changes, not a byte
    before = snapshot(pair.agents)
    out, counts = pair.run(apply)
    assert counts["n1"]["changed"] == 0 and counts["n2"]["changed"] == 0, out
    assert counts["n1"]["failed"] == 0 and counts["n2"]["failed"] == 0, out
    assert snapshot(pair.agents) == before
    for name in HOSTS:
        result = pair.results("apply", name)["cfg"]
        assert result["changed"] is False and result["reloaded"] is False, result

    # -- check mode on a changed inventory, then three broken inventories: nothing written
    dup = json.loads(json.dumps(CLUSTER))
    dup["vrrp_instances"].append(
        {"name": "VI_2", "vrid": 51, "unicast": True, "virtual_ipaddresses": ["10.99.0.102/24"]}
    )
    broken = {"ignore_errors": True}
    tasks = [
        {"label": "check", "args": {"cluster": CLUSTER, "node_var": "swap_node"},
         "check_mode": True},
        {"label": "dup", "args": {"cluster": dup}, **broken},
        {"label": "vips", "args": {"cluster": CLUSTER, "node_var": "vips_node"}, **broken},
        {"label": "tie", "args": {"cluster": CLUSTER, "node_var": "tie_node"}, **broken},
    ]  # fmt: skip
    out, counts = pair.run(pair.playbook("broken", tasks), "--diff")
    # the check: only n2's file changes (its priority), n1 keeps 150
    assert counts["n1"]["changed"] == 0 and counts["n2"]["changed"] == 1, out
    assert counts["n1"]["ignored"] == 3 and counts["n2"]["ignored"] == 3, out
    assert snapshot(pair.agents) == before
    assert lab.has_address("n1", VIP) and not lab.has_address("n2", VIP)

    check1, check2 = (pair.results("broken", h)["check"] for h in HOSTS)
    assert check1["changed"] is False and check2["changed"] is True
    assert "priority: 200" in check2["diff"]["after"]
    assert "priority: 140" in check2["diff"]["before"]
    assert check1["vip_moves"] == [
        {
            "instance": "VI_1",
            "from": "n1",
            "to": "n2",
            "reason": "n2 gets the highest priority (200) and preempts",
        }
    ]
    assert check2["vip_will_move"] is True and check2["vip_moves"][0]["to"] == "n2"
    assert check2["instances"]["changed"] == ["VI_1"]
    assert check1["instances"]["unchanged"] == ["VI_1"]

    expected = {
        "dup": "host n1: vrrp_instances[1].vrid: VRID 51 is already used on eth0 for IPv4 by "
        "vrrp_instances[0] (VI_1); pick another VRID",
        "vips": "host n2: vrrp_instances[0].virtual_ipaddresses: VI_1: virtual_ipaddresses is "
        "[10.99.0.101/24] here but [10.99.0.100/24] on n1; the nodes must advertise the same VIPs",
        "tie": "host n2: vrrp_instances[0].priority: VI_1 (VRID 51): priority 120 here and on n1",
    }
    for name in HOSTS:
        results = pair.results("broken", name)
        for label, message in expected.items():
            result = results[label]
            assert result["failed"] is True, (label, result)
            assert "nothing was written" in result["msg"], (label, result)
            assert message in result["msg"], (label, result["msg"])
