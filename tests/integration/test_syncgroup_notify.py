"""Sync groups and notify scripts with a real vigild pair in namespaces.

Two routers (n1 priority 150, n2 priority 100) each hold an outside instance (VI_OUT on
eth0, switch ``sw``) and an inside one (VI_IN on eth1, switch ``sw2``), in one sync group
G1. Pulling n1's inside cable faults VI_IN only; the group must take VI_OUT with it so both
VIPs move to n2 together, and come back together. Every transition runs notify scripts (as
``nobody``, from a root-owned 0755 directory as script security requires) that append a
line per call to a file per node, so the test checks the order and the keepalived
arguments of the calls. n1's fault command for VI_IN hangs: it must be killed at its
timeout, with its process group, and the generic command queued behind it must still run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.lab.lab import Lab
from tests.lab.waiting import WaitTimeout

VIP_OUT = "10.98.0.100"
VIP_IN = "10.97.0.100"

NOTIFY_SH = """#!/bin/sh
# notify.sh NODE WHAT [ARGS...]: one line per call in out.NODE
node="$1"; shift
echo "$* user=$(id -un)" >> {dir}/out."$node"
"""

HANG_SH = """#!/bin/sh
# hang.sh NODE WHAT: records its pid, then never ends (on its own)
echo "$2 hang-start pid=$$" >> {dir}/out."$1"
exec sleep 1000
"""


def notify_dir(lab: Lab) -> Path:
    """A root-owned 0755 directory in /tmp that ``nobody`` can traverse."""
    path = Path(tempfile.mkdtemp(prefix="vgl-notify-", dir="/tmp"))
    lab.add_cleanup(lambda: shutil.rmtree(path, ignore_errors=True), after_processes=True)
    path.chmod(0o755)
    for name, text in (("notify.sh", NOTIFY_SH), ("hang.sh", HANG_SH)):
        script = path / name
        script.write_text(text.format(dir=path))
        script.chmod(0o755)
    for node in ("n1", "n2"):
        out = path / f"out.{node}"
        out.touch()
        out.chmod(0o666)  # written by the scripts, which run as nobody
    return path


def instance_notify(d: Path, node: str, name: str, *, hang_fault: bool = False) -> dict[str, Any]:
    sh = f"{d}/notify.sh {node}"
    return {
        "master": f"{sh} {name} master",
        "backup": f"{sh} {name} backup",
        "fault": f"{d}/hang.sh {node} {name}" if hang_fault else f"{sh} {name} fault",
        "stop": f"{sh} {name} stop",
        "generic": sh,
        "timeout": 1.0,
    }


def node_config(d: Path, node: str, priority: int) -> dict[str, Any]:
    common = {"priority": priority, "version": 3, "advert_interval": 0.1}
    return {
        "global": {"router_id": node, "script_user": "nobody", "notify_timeout": 5},
        "vrrp_instances": [
            {
                **common,
                "name": "VI_OUT",
                "interface": "eth0",
                "vrid": 61,
                "virtual_ipaddresses": [f"{VIP_OUT}/24"],
                "notify": instance_notify(d, node, "VI_OUT"),
            },
            {
                **common,
                "name": "VI_IN",
                "interface": "eth1",
                "vrid": 62,
                "virtual_ipaddresses": [f"{VIP_IN}/24"],
                "notify": instance_notify(d, node, "VI_IN", hang_fault=node == "n1"),
            },
        ],
        "vrrp_sync_groups": [
            {
                "name": "G1",
                "members": ["VI_OUT", "VI_IN"],
                "notify": {"generic": f"{d}/notify.sh {node}", "timeout": 2},
            }
        ],
    }


def lines(d: Path, node: str) -> list[str]:
    return (d / f"out.{node}").read_text().splitlines()


def wait_calls(lab: Lab, d: Path, node: str, check: Any, what: str, timeout: float = 10) -> None:
    """Wait until ``check(lines)`` holds; on timeout the error shows the node's calls."""
    try:
        lab.wait_for(lambda: check(lines(d, node)), timeout=timeout, what=what)
    except WaitTimeout:
        calls = "\n  ".join(lines(d, node))
        raise AssertionError(f"timed out waiting for {what}; {node}'s calls:\n  {calls}") from None


def of(entries: list[str], name: str) -> list[str]:
    """The calls that concern instance ``name`` (per-state and generic), in order."""
    return [e for e in entries if e.split()[0] == name or f"INSTANCE {name} " in e]


def state(agent: Any, name: str) -> dict[str, Any]:
    status, body = agent.client.get(f"/v1/vrrp/instances/{name}")
    assert status == 200, body
    return dict(body)


def group(agent: Any) -> dict[str, Any]:
    status, body = agent.client.get("/v1/vrrp/groups")
    assert status == 200, body
    (g,) = body["groups"]
    return dict(g)


def events(agent: Any, kind: str) -> list[dict[str, Any]]:
    status, body = agent.client.get("/v1/events?since=0")
    assert status == 200, body
    return [e for e in body if e["kind"] == kind]


def gone(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return text.rsplit(")", 1)[1].split()[0] == "Z"


def test_sync_group_moves_both_and_notify_runs_in_order(lab: Lab) -> None:
    d = notify_dir(lab)
    lab.add_switch("sw")
    lab.add_switch("sw2")
    n1 = lab.add_namespace("n1")
    n2 = lab.add_namespace("n2")
    for node, host in ((n1, 11), (n2, 12)):
        lab.connect(node, "eth0", addrs=[f"10.98.0.{host}/24"], switch="sw")
        lab.connect(node, "eth1", addrs=[f"10.97.0.{host}/24"], switch="sw2")
    a1 = lab.start_vigild(n1, node_config(d, "n1", 150))
    a2 = lab.start_vigild(n2, node_config(d, "n2", 100))

    # ---- election: n1 masters both, n2 backs up both; the group says so on each node
    lab.wait_for(
        lambda: lab.has_address(n1, VIP_OUT) and lab.has_address(n1, VIP_IN),
        timeout=10,
        what="n1 to hold both VIPs",
    )
    lab.wait_for(lambda: group(a1)["state"] == "MASTER", 5, what="group G1 MASTER on n1")
    lab.wait_for(lambda: group(a2)["state"] == "BACKUP", 5, what="group G1 BACKUP on n2")
    assert [m["name"] for m in group(a1)["members"]] == ["VI_OUT", "VI_IN"]
    expected_start = {
        name: [
            f"{name} backup user=nobody",
            f"INSTANCE {name} BACKUP 150 user=nobody",
            f"{name} master user=nobody",
            f"INSTANCE {name} MASTER 150 user=nobody",
        ]
        for name in ("VI_OUT", "VI_IN")
    }
    wait_calls(
        lab,
        d,
        "n1",
        lambda calls: all(of(calls, n) == expected_start[n] for n in expected_start),
        "n1's notify calls for start-up",
    )
    wait_calls(
        lab,
        d,
        "n1",
        lambda calls: (
            [e for e in calls if e.startswith("GROUP")]
            == ["GROUP G1 BACKUP 0 user=nobody", "GROUP G1 MASTER 0 user=nobody"]
        ),
        "n1's group notify calls",
    )

    # ---- pull n1's inside cable: VI_IN faults, the group takes VI_OUT along
    lab.cable_pull(n1, "eth1")
    lab.wait_for(
        lambda: lab.has_address(n2, VIP_OUT) and lab.has_address(n2, VIP_IN),
        timeout=10,
        what="n2 to hold both VIPs",
    )
    lab.wait_for(
        lambda: not lab.has_address(n1, VIP_OUT) and not lab.has_address(n1, VIP_IN),
        timeout=5,
        what="n1 to drop both VIPs",
    )
    out1 = state(a1, "VI_OUT")
    assert out1["state"] == "FAULT", out1
    assert "sync_group:G1" in out1["faults"], out1["faults"]
    assert "VI_IN" in out1["faults"]["sync_group:G1"]
    assert "link" in state(a1, "VI_IN")["faults"]
    assert group(a1)["state"] == "FAULT"
    lab.wait_for(lambda: group(a2)["state"] == "MASTER", 5, what="group G1 MASTER on n2")
    assert {state(a2, n)["state"] for n in ("VI_OUT", "VI_IN")} == {"MASTER"}

    # n2 announced both masters and the group, with its own priority
    wait_calls(
        lab,
        d,
        "n2",
        lambda calls: all(
            of(calls, n)[-2:] == [f"{n} master user=nobody", f"INSTANCE {n} MASTER 100 user=nobody"]
            for n in ("VI_OUT", "VI_IN")
        ),
        "n2's notify calls for the takeover",
    )
    wait_calls(
        lab,
        d,
        "n2",
        lambda calls: "GROUP G1 MASTER 0 user=nobody" in calls,
        "n2's group MASTER notify",
    )

    # n1: VI_IN's fault command hangs; it is killed at its 1 s timeout and the generic
    # FAULT call queued behind it still runs
    wait_calls(
        lab,
        d,
        "n1",
        lambda calls: of(calls, "VI_IN")[5:6] == ["INSTANCE VI_IN FAULT 150 user=nobody"],
        "VI_IN's generic FAULT call after the hung fault command",
    )
    hang = of(lines(d, "n1"), "VI_IN")[4]
    assert hang.startswith("VI_IN hang-start pid="), hang
    pid = int(hang.split("pid=")[1].split()[0])
    lab.wait_for(lambda: gone(pid), 5, what=f"hung notify command (pid {pid}) to be gone")
    runs = [e["data"] for e in events(a1, "notify") if e["instance"] == "VI_IN"]
    fault_runs = [r for r in runs if r["state"] == "FAULT"]
    assert [(r["script"], r["timed_out"], r["exit_code"]) for r in fault_runs] == [
        ("fault", True, None),
        ("generic", False, 0),
    ]
    assert fault_runs[1]["argv"][-4:] == ["INSTANCE", "VI_IN", "FAULT", "150"]
    assert of(lines(d, "n1"), "VI_OUT")[4:6] == [
        "VI_OUT fault user=nobody",
        "INSTANCE VI_OUT FAULT 150 user=nobody",
    ]
    assert "GROUP G1 FAULT 0 user=nobody" in lines(d, "n1")
    syncs = [e for e in events(a1, "sync_group") if e["data"].get("new") == "FAULT"]
    assert syncs and syncs[-1]["data"]["group"] == "G1"
    status, metrics = a1.client.get("/metrics")
    assert status == 200
    assert 'vigil_vrrp_sync_group_state{group="G1",state="FAULT"} 1.0' in metrics
    assert 'vigil_notify_runs_total{name="VI_IN",result="timeout",target="instance"} 1.0' in metrics

    # ---- plug it back: n1 takes both back (preempt), together
    lab.cable_plug(n1, "eth1")
    lab.wait_for(
        lambda: lab.has_address(n1, VIP_OUT) and lab.has_address(n1, VIP_IN),
        timeout=10,
        what="n1 to hold both VIPs again",
    )
    lab.wait_for(
        lambda: not lab.has_address(n2, VIP_OUT) and not lab.has_address(n2, VIP_IN),
        timeout=5,
        what="n2 to drop both VIPs",
    )
    lab.wait_for(lambda: group(a2)["state"] == "BACKUP", 5, what="group G1 BACKUP on n2")
    wait_calls(
        lab,
        d,
        "n1",
        lambda calls: all(
            of(calls, n)[-4:]
            == [
                f"{n} backup user=nobody",
                f"INSTANCE {n} BACKUP 150 user=nobody",
                f"{n} master user=nobody",
                f"INSTANCE {n} MASTER 150 user=nobody",
            ]
            for n in ("VI_OUT", "VI_IN")
        ),
        "n1's notify calls for the recovery",
    )

    # ---- clean stop: STOP commands and the group's STOP run before vigild exits
    assert a1.stop() == 0
    after = lines(d, "n1")
    for n in ("VI_OUT", "VI_IN"):
        assert of(after, n)[-2:] == [f"{n} stop user=nobody", f"INSTANCE {n} STOP 150 user=nobody"]
    assert [e for e in after if e.startswith("GROUP")][-1] == "GROUP G1 STOP 0 user=nobody"
    assert os.stat(d / "notify.sh").st_uid == 0


def test_reload_rebuilds_groups_without_transitions(lab: Lab) -> None:
    """Changing, removing and re-adding a sync group by reload moves no instance."""
    d = notify_dir(lab)
    lab.add_switch("sw")
    lab.add_switch("sw2")
    n1 = lab.add_namespace("n1")
    lab.connect(n1, "eth0", addrs=["10.98.0.11/24"], switch="sw")
    lab.connect(n1, "eth1", addrs=["10.97.0.11/24"], switch="sw2")
    config = node_config(d, "n1", 150)
    a1 = lab.start_vigild(n1, config)
    lab.wait_for(lambda: group(a1)["state"] == "MASTER", 10, what="group G1 MASTER alone")

    def transitions_since(seq: int) -> list[dict[str, Any]]:
        status, body = a1.client.get(f"/v1/events?since={seq}")
        assert status == 200, body
        return [e for e in body if e["kind"] == "vrrp_transition"]

    def reload(cfg: dict[str, Any]) -> None:
        a1.write_config(cfg)
        status, body = a1.reload()
        assert status == 200 and body["changed"] is True, body
        assert body["diff"]["vrrp"]["sync_groups_changed"] is True, body

    seq = a1.client.get("/v1/events")[1][-1]["seq"]
    # only the group's notify commands change: the group object (and state) stays
    changed = {**config, "vrrp_sync_groups": [dict(config["vrrp_sync_groups"][0])]}
    changed["vrrp_sync_groups"][0]["notify"] = {"master": f"{d}/notify.sh n1 G1 master"}
    reload(changed)
    assert group(a1)["state"] == "MASTER"
    assert group(a1)["notify"]["master"].endswith("G1 master")
    # removed: the members run on their own, nothing moves
    reload({**config, "vrrp_sync_groups": []})
    assert a1.client.get("/v1/vrrp/groups")[1] == {"groups": []}
    # added again: adopted as MASTER without a transition or a group notify
    reload(config)
    assert group(a1)["state"] == "MASTER" and group(a1)["consistent"] is True
    assert transitions_since(seq) == []
    removed = [e for e in a1.client.get(f"/v1/events?since={seq}")[1] if e["kind"] == "sync_group"]
    assert [e["data"]["new"] for e in removed] == [None, "MASTER"]

    # the rebuilt group still works: a member's fault takes the other along
    lab.cable_pull(n1, "eth1")
    lab.wait_for(lambda: state(a1, "VI_OUT")["state"] == "FAULT", 5, what="VI_OUT held in FAULT")
    assert group(a1)["state"] == "FAULT"
    lab.cable_plug(n1, "eth1")
    lab.wait_for(lambda: group(a1)["state"] == "MASTER", 10, what="group G1 MASTER again")


def test_failing_track_script_on_one_member_moves_both(lab: Lab) -> None:
    """A tracker's FAULT (not the link) on VI_IN takes VI_OUT along, and back."""
    d = notify_dir(lab)
    check = d / "chk.sh"
    check.write_text(f"#!/bin/sh\ntest ! -e {d}/fail\n")
    check.chmod(0o755)
    lab.add_switch("sw")
    lab.add_switch("sw2")
    n1 = lab.add_namespace("n1")
    n2 = lab.add_namespace("n2")
    agents = []
    for node, host, prio in ((n1, 11, 150), (n2, 12, 100)):
        lab.connect(node, "eth0", addrs=[f"10.98.0.{host}/24"], switch="sw")
        lab.connect(node, "eth1", addrs=[f"10.97.0.{host}/24"], switch="sw2")
        cfg = node_config(d, node.name, prio)
        cfg["vrrp_scripts"] = {"chk": {"script": str(check), "interval": 0.2, "timeout": 1}}
        cfg["vrrp_instances"][1]["track"] = {"scripts": ["chk"]} if node is n1 else {}
        agents.append(lab.start_vigild(node, cfg))
    a1, a2 = agents
    lab.wait_for(
        lambda: lab.has_address(n1, VIP_OUT) and lab.has_address(n1, VIP_IN),
        timeout=10,
        what="n1 to hold both VIPs",
    )
    (d / "fail").touch()
    lab.wait_for(
        lambda: lab.has_address(n2, VIP_OUT) and lab.has_address(n2, VIP_IN),
        timeout=10,
        what="n2 to hold both VIPs after n1's VI_IN check failed",
    )
    assert not lab.has_address(n1, VIP_OUT) and not lab.has_address(n1, VIP_IN)
    faults = state(a1, "VI_OUT")["faults"]
    assert list(faults) == ["sync_group:G1"] and "chk" in faults["sync_group:G1"], faults
    assert group(a2)["state"] == "MASTER"
    (d / "fail").unlink()
    lab.wait_for(
        lambda: lab.has_address(n1, VIP_OUT) and lab.has_address(n1, VIP_IN),
        timeout=10,
        what="n1 to take both VIPs back once the check passes",
    )
    lab.wait_for(lambda: group(a2)["state"] == "BACKUP", 5, what="group G1 BACKUP on n2")
