"""The role's IPVS/BFD convergence check (roles/ha_pair/templates/convergence_lb.j2),
rendered by a real ansible-playbook on the controller with the agent's /v1/status shape.

The template is what decides whether a director pair has converged. The hosts tests run it
against real agents, but their kernel has no IPVS, so the converged-IPVS case and the
kernel-table problems are checked here, from status documents in the agent's format
(the fields the template reads: ipvs.kernel.available/error, virtual_servers[].name/
in_ipvs/real_servers[].name/state/alive/drained/in_ipvs/ipvs_weight/effective_weight, and
bfd.sessions[].name/peer/state/error/shutdown_by_operator/local_diag/local_diag_text).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles" / "ha_pair" / "templates" / "convergence_lb.j2"
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
PROBLEMS = f"{{{{ (lookup('ansible.builtin.template', '{TEMPLATE}') or '') | trim }}}}"


def rs(name: str, **kw: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "state": "UP",
        "alive": True,
        "drained": False,
        "in_ipvs": True,
        "ipvs_weight": 1,
        "effective_weight": 1,
    }
    base.update(kw)
    return base


def status(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "ipvs": {
            "kernel": {"available": True, "error": None},
            "virtual_servers": [
                {
                    "name": "web",
                    "in_ipvs": True,
                    "real_servers": [
                        rs("10.0.1.1:80"),
                        rs("10.0.1.2:80", ipvs_weight=3, effective_weight=3),
                    ],
                }
            ],
        },
        "bfd": {
            "sessions": [
                {"name": "peer", "peer": "10.0.0.2", "state": "Up", "error": None,
                 "shutdown_by_operator": False, "local_diag": 0, "local_diag_text": ""}
            ]
        },
    }  # fmt: skip
    for key, value in kw.items():
        doc[key] = value
    return doc


def render(tmp_path: Path, statuses: dict[str, Any]) -> str:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "pair": {
                            "hosts": {h: {"ansible_connection": "local"} for h in statuses},
                        }
                    },
                    "vars": {"ansible_python_interpreter": sys.executable},
                }
            }
        )
    )
    play = tmp_path / "play.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "pair",
                    "gather_facts": False,
                    "vars": {
                        "vigil_group": "pair",
                        "vigil_verify_ipvs": True,
                        "vigil_verify_bfd": True,
                    },
                    "tasks": [
                        {"ansible.builtin.set_fact": {
                            "_vigil_lb_status": {"json": "{{ statuses[inventory_hostname] }}"}}},
                        # as verify_attempt.yml uses it
                        {"ansible.builtin.set_fact": {"problems": PROBLEMS}},
                        {"ansible.builtin.copy": {
                            "content": "{{ problems }}",
                            "dest": f"{tmp_path}/out-{{{{ inventory_hostname }}}}.txt"}},
                    ],
                }
            ]
        )
    )  # fmt: skip
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"statuses": statuses}))
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / "home"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_CONFIG"] = str(tmp_path / "ansible.cfg")
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    res = subprocess.run(
        [str(PLAYBOOK_BIN), "-i", str(inv), str(play), "-e", f"@{extra}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    outs = {h: (tmp_path / f"out-{h}.txt").read_text() for h in statuses}
    assert len(set(outs.values())) == 1, outs  # every member sees the same verdict
    return next(iter(outs.values()))


def test_a_converged_pair_has_no_problem(tmp_path: Path) -> None:
    assert render(tmp_path, {"lb1": status(), "lb2": status()}) == ""


def test_kernel_table_problems_are_named(tmp_path: Path) -> None:
    lb2 = status()
    vs = lb2["ipvs"]["virtual_servers"][0]
    vs["in_ipvs"] = False
    vs["real_servers"][0]["in_ipvs"] = False
    vs["real_servers"][1]["ipvs_weight"] = 1  # wanted 3
    out = render(tmp_path, {"lb1": status(), "lb2": lb2})
    assert out.startswith("pair lb1/lb2: IPVS/BFD not converged: "), out
    assert "lb2: virtual server web is not in the kernel table yet" in out
    assert "lb2: web/10.0.1.1:80 is alive but not in IPVS" in out
    assert "lb2: web/10.0.1.2:80 has weight 1 in IPVS, 3 wanted" in out
    assert "lb1:" not in out


def test_drained_dead_and_unchecked_servers(tmp_path: Path) -> None:
    lb1 = status()
    servers = lb1["ipvs"]["virtual_servers"][0]["real_servers"]
    servers[0].update(drained=True, ipvs_weight=0)  # drained: weight 0 is right
    servers[1].update(alive=False, state="DOWN", in_ipvs=False)  # down: out of IPVS is right
    assert render(tmp_path, {"lb1": lb1, "lb2": status()}) == ""
    lb1["ipvs"]["virtual_servers"][0]["real_servers"][1].update(state="INIT", alive=None)
    out = render(tmp_path, {"lb1": lb1, "lb2": status()})
    assert "lb1: web/10.0.1.2:80 has not been checked yet" in out, out


def test_different_virtual_servers_and_no_ipvs(tmp_path: Path) -> None:
    lb2 = status()
    lb2["ipvs"]["virtual_servers"].append(copy.deepcopy(lb2["ipvs"]["virtual_servers"][0]))
    lb2["ipvs"]["virtual_servers"][1]["name"] = "api"
    out = render(tmp_path, {"lb1": status(), "lb2": lb2})
    assert "the directors serve different virtual servers: lb1=web; lb2=api,web" in out, out
    lb1 = status()
    lb1["ipvs"]["kernel"] = {"available": False, "error": "no IPVS in this kernel"}
    out = render(tmp_path, {"lb1": lb1, "lb2": status()})
    assert "lb1: IPVS is not available in its kernel (no IPVS in this kernel)" in out, out


def test_bfd_down_is_named_unless_shut_down_by_an_operator(tmp_path: Path) -> None:
    lb1 = status()
    lb1["bfd"]["sessions"][0].update(
        state="Down", local_diag=1, local_diag_text="Control Detection Time Expired"
    )
    out = render(tmp_path, {"lb1": lb1, "lb2": status()})
    assert "lb1: BFD session peer to 10.0.0.2 is Down (Control Detection Time Expired)" in out
    lb1["bfd"]["sessions"][0].update(state="AdminDown", shutdown_by_operator=True)
    assert render(tmp_path, {"lb1": lb1, "lb2": status()}) == ""
    lb1["bfd"]["sessions"][0].update(error="port 3784 is held by another daemon")
    out = render(tmp_path, {"lb1": lb1, "lb2": status()})
    assert "lb1: BFD session peer does not run: port 3784 is held by another daemon" in out


@pytest.fixture(autouse=True)
def _needs_ansible() -> None:
    assert PLAYBOOK_BIN.exists(), f"{PLAYBOOK_BIN} is missing: run make setup"
