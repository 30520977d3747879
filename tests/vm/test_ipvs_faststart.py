"""The start plan (vigil.faststart) on a real IPVS table: a restart with the same config
puts the table back before the agent reads its config, and takes it back when the agent
then refuses to start; a config accepted by ``vigild --check`` on the director starts
from the plan the check wrote, the first time it runs.

The host's kernel has no IPVS, so the plan's file, key and batching are unit tested there
(agent/tests/test_faststart.py, the batches against the host kernel's generic netlink
controller); here the whole command runs against the VM's IPVS. ``ipvsadm`` (libnl) is
the witness of what the kernel holds.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from vigil.faststart import CHECKED_PLAN_FILE, PLAN_FILE, read_plan
from vigil.ipvs.startplan import current_key

from tests.lab.agents import bin_path
from tests.lab.lab import Lab
from tests.lab.waiting import wait_for
from tests.vm.conftest import AGENT_START

VIP = "10.66.0.100"


def config() -> dict[str, Any]:
    """Three virtual servers: plain, one alpha real server (starts dead), one with a
    real server that the test drains (weight 0 in the plan)."""

    def rs(i: int, **extra: Any) -> dict[str, Any]:
        return {"address": f"10.66.1.{i}", "port": 80, "weight": 1 + i % 3, **extra}

    tcp = {"type": "tcp", "connect_timeout": 1, "delay_loop": 30}
    return {
        "global": {"router_id": "fast"},
        "virtual_servers": [
            {"name": "web", "address": VIP, "port": 80, "scheduler": "wlc",
             "real_servers": [rs(1), rs(2), rs(3)]},
            {"name": "alpha", "address": VIP, "port": 81, "scheduler": "rr",
             "real_servers": [rs(4), rs(5, checks=[{**tcp, "alpha": True}],
                                       inhibit_on_failure=True)]},
            {"name": "drained", "address": VIP, "port": 82, "scheduler": "rr",
             "real_servers": [rs(6), rs(7)]},
        ],
    }  # fmt: skip


def table(ns: str) -> dict[str, list[str]]:
    """``ipvsadm -Ln``: each service's line -> its real servers (address, method, weight)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ipvsadm", "-Ln"], capture_output=True, text=True, check=True
    ).stdout
    services: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines()[3:]:
        words = line.split()
        if words[0] == "->":
            current.append(" ".join(words[1:4]))
        else:
            current = services.setdefault(" ".join(words), [])
    return {name: sorted(dests) for name, dests in services.items()}


def plan_lines(log: str) -> list[str]:
    return [ln.split("agent: ", 1)[1] for ln in log.splitlines() if "agent: start plan:" in ln]


def test_a_restart_programs_its_table_from_the_start_plan(lab: Lab, tmp_path: Path) -> None:
    lab.add_switch()
    lab.add_namespace("lb")
    lab.connect("lb", addrs=["10.66.0.2/16"])  # (a route to the real servers: NAT needs it)
    ns = lab.node("lb").ns
    path = tmp_path / "vigil.yml"
    path.write_text(yaml.safe_dump(config()))

    # a first start: no plan yet; it writes one once the table is programmed
    agent = lab.start_vigild("lb", str(path), timeout=AGENT_START, log_level="info")
    st, body = agent.client.post("/v1/ipvs/virtual_servers/drained/real_servers/10.66.1.7:80/drain")
    assert st == 200, body
    state = Path(agent.state_dir)
    key, _ = current_key(state, hashlib.sha256(path.read_bytes()).hexdigest())
    wait_for(lambda: (p := read_plan(str(state))) is not None and p.key == key, 120, 0.5,
             "the start plan, after the drain")  # fmt: skip
    first = table(ns)
    assert first["TCP 10.66.0.100:82 rr"] == ["10.66.1.6:80 Masq 1", "10.66.1.7:80 Masq 0"]
    assert first["TCP 10.66.0.100:81 rr"] == ["10.66.1.4:80 Masq 2", "10.66.1.5:80 Masq 0"]
    assert not plan_lines(agent.log(tail=None))
    agent.stop(timeout=120)
    assert table(ns) == {}, "a clean stop removes the services"

    # the restart: the plan puts the same table back first, the agent adopts it; a
    # service already in the kernel (another tool's, a crashed run's) is left to the agent
    subprocess.run(
        ["ip", "netns", "exec", ns, "ipvsadm", "-A", "-t", f"{VIP}:81", "-s", "rr"], check=True
    )
    agent = lab.start_vigild("lb", str(path), timeout=AGENT_START, log_level="info")
    (said,) = plan_lines(agent.log(tail=None))
    assert said.startswith("start plan: 2 IPVS service(s) with 5 real server(s) programmed")
    assert said.endswith("; 1 already in the kernel, left to the agent"), said
    st, body = agent.client.get("/v1/events")
    kinds = [e["kind"] for e in (body.get("events", body) if isinstance(body, dict) else body)]
    assert "ipvs_adopted" in kinds and "drift_corrected" not in kinds
    assert table(ns) == first
    weights = {
        rs["name"]: rs["ipvs_weight"]
        for vs in agent.client.get("/v1/ipvs/virtual_servers")[1]["virtual_servers"]
        for rs in vs["real_servers"]
    }
    assert weights["10.66.1.7:80"] == 0 and weights["10.66.1.5:80"] == 0
    agent.stop(timeout=120)

    # a start the agent refuses (a bad argument): the plan's services go again
    refused = lab.start_vigild("lb", str(path), ["--log-level", "loud"], wait=False)
    assert refused.process.wait(AGENT_START) == 2
    log = refused.log(tail=None)
    assert "deleted the 3 service(s) it added" in log, log[-2000:]
    assert table(ns) == {}
    journal = json.loads((Path(refused.state_dir) / "ipvs-journal.json").read_text())
    assert journal["entries"] == {}


def test_a_checked_config_starts_from_the_plan_its_check_wrote(lab: Lab, tmp_path: Path) -> None:
    """A director that never ran this config (a new one, or a config deployed while vigild
    was stopped): the deployment's ``vigild --check`` on the director writes the plan, and
    the first start sends it before it reads the config."""
    lab.add_switch()
    lab.add_namespace("lb")
    lab.connect("lb", addrs=["10.66.0.2/16"])
    ns = lab.node("lb").ns
    path = tmp_path / "vigil.yml"
    path.write_text(yaml.safe_dump(config()))
    state = lab.node_dir(lab.node("lb"), short=True) / "vigild" / "state"
    state.mkdir(parents=True)
    check = subprocess.run(
        ["ip", "netns", "exec", ns, bin_path("vigild"), "--check", "--config", str(path),
         "--state-dir", str(state), "--format", "json"],
        capture_output=True, text=True, timeout=AGENT_START, check=False,
    )  # fmt: skip
    assert check.returncode == 0 and json.loads(check.stdout)["valid"], check.stdout
    assert check.stderr == "" and (state / CHECKED_PLAN_FILE).exists()
    assert table(ns) == {}, "a check programs nothing"

    agent = lab.start_vigild("lb", str(path), timeout=AGENT_START, log_level="info")
    (said,) = plan_lines(agent.log(tail=None))
    assert said.startswith("start plan: 3 IPVS service(s) with 7 real server(s) programmed")
    st, body = agent.client.get("/v1/events")
    assert st == 200, body
    kinds = [e["kind"] for e in (body.get("events", body) if isinstance(body, dict) else body)]
    assert "ipvs_adopted" in kinds and "drift_corrected" not in kinds
    assert table(ns) == {
        "TCP 10.66.0.100:80 wlc": ["10.66.1.1:80 Masq 2", "10.66.1.2:80 Masq 3",
                                   "10.66.1.3:80 Masq 1"],
        "TCP 10.66.0.100:81 rr": ["10.66.1.4:80 Masq 2", "10.66.1.5:80 Masq 0"],
        "TCP 10.66.0.100:82 rr": ["10.66.1.6:80 Masq 1", "10.66.1.7:80 Masq 2"],
    }  # fmt: skip
    # the agent runs the checked config: the checked plan becomes its own
    key, _ = current_key(state, hashlib.sha256(path.read_bytes()).hexdigest())
    wait_for(lambda: not (state / CHECKED_PLAN_FILE).exists(), 120, 0.5, "the plan taken")
    assert (p := read_plan(str(state), PLAN_FILE)) is not None and p.key == key
    agent.stop(timeout=120)
