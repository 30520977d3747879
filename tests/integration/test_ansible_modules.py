"""vigil.ha.vrrp_info, vrrp_failover and maintenance driven by real Ansible against a pair.

n1 (priority 150) and n2 (priority 100) run vigild in lab namespaces with VI_4 (IPv4) and
VI_6 (IPv6); a client probes the IPv4 VIP every 10 ms through every planned move, which must
lose nothing. Each namespace is an Ansible inventory host: ``ansible_connection=local`` with
an interpreter wrapper that runs ``ip netns exec NS python3`` (the system Python, as on a
managed host: the modules need only the standard library). The collection is this checkout,
seen through a symlinked ``ansible_collections/vigil/ha`` on ANSIBLE_COLLECTIONS_PATH. Each
step is an ad hoc ``ansible`` run whose per-host results are read from its ``--tree`` files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_vrrp_pair import VIP4, VIP6, instance, start_pair
from tests.lab.lab import Lab

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_TIMEOUT = 120.0
SYSTEM_PYTHON = "/usr/bin/python3"


class Ansible:
    """Ad hoc ansible runs against namespace hosts; results come back as dicts per host."""

    def __init__(self, lab: Lab, workdir: Path, agents: dict[str, Any]) -> None:
        self.lab = lab
        self.workdir = workdir
        coll = workdir / "collections" / "ansible_collections" / "vigil"
        coll.mkdir(parents=True)
        (coll / "ha").symlink_to(REPO)
        hosts: dict[str, Any] = {}
        for name, agent in agents.items():
            wrapper = workdir / f"python-{name}"
            wrapper.write_text(
                f'#!/bin/sh\nexec ip netns exec {agent.node.ns} {SYSTEM_PYTHON} "$@"\n'
            )
            wrapper.chmod(0o755)
            hosts[name] = {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(wrapper),
                "vigil_socket": str(agent.socket_path),
            }
        self.inventory = workdir / "inventory.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        self.env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(workdir / "collections"),
            "ANSIBLE_CONFIG": str(workdir / "no-ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp-local"),
            "ANSIBLE_REMOTE_TEMP": str(workdir / "tmp-remote"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
        }
        self.runs = 0
        self.last_rc = 0

    def run(
        self, hosts: str, module: str, args: dict[str, Any], *, check: bool = False
    ) -> dict[str, dict[str, Any]]:
        """``ansible HOSTS -m vigil.ha.MODULE -a ARGS``; {host: result} from --tree."""
        self.runs += 1
        tree = self.workdir / f"tree-{self.runs}"
        argv = [
            str(Path(sys.executable).parent / "ansible"),
            "-i", str(self.inventory), hosts,
            "-m", f"vigil.ha.{module}",
            "-a", json.dumps({"socket": "{{ vigil_socket }}", **args}),
            "--tree", str(tree),
        ]  # fmt: skip
        if check:
            argv += ["--check", "--diff"]
        proc = subprocess.run(
            argv,
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=ANSIBLE_TIMEOUT,
            check=False,
        )
        self.last_rc = proc.returncode
        results = (
            {p.name: json.loads(p.read_text()) for p in tree.iterdir()} if tree.exists() else {}
        )
        if not results:
            pytest.fail(
                f"ansible gave no results (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return results


@pytest.fixture
def pair(lab: Lab, tmp_path: Path) -> tuple[Lab, Any, Any, Any, Any, Ansible]:
    n1, n2, client, a1, a2 = start_pair(lab)
    return lab, n1, n2, client, a2, Ansible(lab, tmp_path, {"n1": a1, "n2": a2})


def masters(results: dict[str, dict[str, Any]], name: str) -> dict[str, str]:
    """Each host's view of the master address of instance ``name``."""
    return {
        host: next(i for i in res["instances"] if i["name"] == name)["master_address"]
        for host, res in results.items()
    }


def states(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        host: {i["name"]: i["state"] for i in res["instances"]} for host, res in results.items()
    }


def test_info_failover_and_maintenance_through_ansible(
    pair: tuple[Lab, Any, Any, Any, Any, Ansible],
) -> None:
    lab, n1, n2, client, a2, ansible = pair

    # vrrp_info ad hoc: both hosts name the same master, and only n1 holds the VIPs.
    info = ansible.run("all", "vrrp_info", {})
    assert ansible.last_rc == 0
    assert sorted(info) == ["n1", "n2"]
    assert all(res.get("failed") is not True and res["changed"] is False for res in info.values())
    assert masters(info, "VI_4") == {"n1": "10.99.0.11", "n2": "10.99.0.11"}
    assert states(info) == {
        "n1": {"VI_4": "MASTER", "VI_6": "MASTER"},
        "n2": {"VI_4": "BACKUP", "VI_6": "BACKUP"},
    }
    assert info["n1"]["agent"]["router_id"] == "n1"

    probe = lab.probe(client, VIP4, interval=0.01, max_duration=300.0)
    probe.wait_received(20)

    # Check mode predicts the handover of both instances and moves nothing.
    predicted = ansible.run("n1", "vrrp_failover", {"state": "backup"}, check=True)["n1"]
    assert predicted["changed"] is True
    assert [(i["instance"], i["action"], i["state_after"]) for i in predicted["instances"]] == [
        ("VI_4", "handover", "BACKUP"),
        ("VI_6", "handover", "BACKUP"),
    ]
    assert lab.has_address(n1, f"{VIP4}/24") and not lab.has_address(n2, f"{VIP4}/24")

    # Hand over VI_4 from n1: n2 becomes master, verified, and nothing is lost.
    moved = ansible.run("n1", "vrrp_failover", {"instance": "VI_4", "state": "backup"})["n1"]
    assert moved.get("failed") is not True, moved
    assert moved["changed"] is True
    assert moved["instances"][0]["action"] == "handover"
    assert moved["instances"][0]["state_after"] == "BACKUP"
    assert moved["instances"][0]["new_master"] == "10.99.0.12"
    assert lab.has_address(n2, f"{VIP4}/24") and not lab.has_address(n1, f"{VIP4}/24")
    assert instance(a2, "VI_4")["state"] == "MASTER"
    probe.wait_received(20)
    again = ansible.run("n1", "vrrp_failover", {"instance": "VI_4", "state": "backup"})["n1"]
    assert again["changed"] is False
    on_n2 = ansible.run("n2", "vrrp_failover", {"instance": "VI_4", "state": "master"})["n2"]
    assert on_n2["changed"] is False

    info = ansible.run("all", "vrrp_info", {"instance": "VI_4"})
    assert masters(info, "VI_4") == {"n1": "10.99.0.12", "n2": "10.99.0.12"}

    # Take it back on n1: a takeover, then idempotent.
    back = ansible.run("n1", "vrrp_failover", {"instance": "VI_4", "state": "master"})["n1"]
    assert back.get("failed") is not True, back
    assert back["changed"] is True
    assert back["instances"][0]["action"] == "takeover"
    assert back["instances"][0]["override"] is None  # n1 already outranks n2
    lab.wait_address(n2, f"{VIP4}/24", present=False, timeout=5)
    assert lab.has_address(n1, f"{VIP4}/24")
    probe.wait_received(20)
    assert ansible.run("n1", "vrrp_failover", {"state": "master"})["n1"]["changed"] is False

    # Maintenance of the whole node n1: both instances go to n2, make-before-break.
    maint = ansible.run("n1", "maintenance", {"state": "enabled"})["n1"]
    assert maint.get("failed") is not True, maint
    assert maint["changed"] is True
    assert [(i["instance"], i["maintenance"], i["state_after"]) for i in maint["instances"]] == [
        ("VI_4", True, "BACKUP"),
        ("VI_6", True, "BACKUP"),
    ]
    assert lab.has_address(n2, f"{VIP4}/24") and lab.has_address(n2, f"{VIP6}/64")
    assert not lab.has_address(n1, f"{VIP4}/24")
    probe.wait_received(20)
    assert ansible.run("n1", "maintenance", {"state": "enabled"})["n1"]["changed"] is False
    assert (
        ansible.run("n1", "maintenance", {"state": "enabled"}, check=True)["n1"]["changed"] is False
    )

    # Out of maintenance: n1 outranks n2 and preempts, so it takes both back at once.
    out = ansible.run("n1", "maintenance", {"state": "disabled", "timeout": 10})["n1"]
    assert out.get("failed") is not True, out
    assert out["changed"] is True
    assert [i["state_after"] for i in out["instances"]] == ["MASTER", "MASTER"]
    lab.wait_address(n2, f"{VIP4}/24", present=False, timeout=5)
    assert lab.has_address(n1, f"{VIP4}/24")
    assert ansible.run("n1", "maintenance", {"state": "disabled"})["n1"]["changed"] is False

    probe.wait_received(20)
    result = probe.stop()
    assert result.lost == 0, f"planned moves through Ansible lost probes: {result.raw}"
    assert result.received > 100


def test_failures_name_the_instance_and_the_socket(
    pair: tuple[Lab, Any, Any, Any, Any, Ansible],
) -> None:
    lab, n1, _n2, _client, _a2, ansible = pair
    unknown = ansible.run("n1", "vrrp_failover", {"instance": "VI_9", "state": "master"})["n1"]
    assert ansible.last_rc != 0
    assert unknown["msg"] == "unknown VRRP instance 'VI_9'; this agent has: VI_4, VI_6"

    gone = ansible.run("n2", "vrrp_info", {"socket": "/run/vigil-absent/vigil.sock"})["n2"]
    assert ansible.last_rc != 0
    assert gone["msg"].startswith("cannot reach the vigil agent at /run/vigil-absent/vigil.sock")
    assert lab.has_address(n1, f"{VIP4}/24")
