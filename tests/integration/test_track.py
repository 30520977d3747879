"""Trackers end to end: real vigild pairs in namespaces, real scripts, files, links, processes.

n1 (priority 150) and n2 (priority 100) run one VRRPv3 instance at 0.1 s adverts; n1
tracks something, the test breaks and repairs it, and observes the kernel (who holds the
VIP), the API (state, effective priority, the ``trackers`` list), the event stream and the
wire (advert gaps while a check script hangs). Scripts live in a root-owned 0755
directory (script security) and run as ``nobody``.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.lab.capture import Capture, Frame
from tests.lab.lab import Lab

VIP = "10.99.0.100"
VIP_B = "10.99.0.101"
ADVERT = 0.1


def instance_cfg(priority: int, track: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "VI_4",
        "interface": "eth0",
        "vrid": 51,
        "priority": priority,
        "version": 3,
        "advert_interval": ADVERT,
        "virtual_ipaddresses": [f"{VIP}/24"],
    }
    if track:
        cfg["track"] = track
    cfg.update(kw)
    return cfg


def node_cfg(router: str, *instances: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"global": {"router_id": router}, "vrrp_instances": list(instances), **top}


def inst(agent: Any, name: str = "VI_4") -> dict[str, Any]:
    status, body = agent.client.get(f"/v1/vrrp/instances/{name}")
    assert status == 200, body
    return dict(body)


def events(agent: Any, kind: str | None = None) -> list[dict[str, Any]]:
    status, body = agent.client.get("/v1/events?since=0")
    assert status == 200, body
    out = body["events"] if isinstance(body, dict) else body
    return [e for e in out if kind is None or e["kind"] == kind]


def tracker_view(agent: Any, name: str = "VI_4") -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in inst(agent, name)["trackers"]}


class Workspace:
    """A root-owned 0755 script directory (passes script security) with a data dir
    ``run/`` the scripts' user (nobody) may write to; removed with the lab."""

    def __init__(self, lab: Lab) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-track-", dir="/tmp"))
        os.chown(self.dir, 0, 0)
        self.dir.chmod(0o755)
        self.run = self.dir / "run"
        self.run.mkdir()
        nobody = pwd.getpwnam("nobody")
        self.nobody_uid = nobody.pw_uid
        os.chown(self.run, nobody.pw_uid, nobody.pw_gid)
        lab.add_cleanup(lambda: shutil.rmtree(self.dir, ignore_errors=True), after_processes=True)

    def script(self, name: str, body: str) -> str:
        path = self.dir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        os.chown(path, 0, 0)
        path.chmod(0o755)
        return str(path)


def build(lab: Lab, extra_n1: tuple[str, ...] = ()) -> tuple[Any, Any, Any]:
    lab.add_switch()
    n1 = lab.add_namespace("n1")
    n2 = lab.add_namespace("n2")
    client = lab.add_namespace("client")
    lab.connect(n1, addrs=["10.99.0.11/24"])
    for i, ifname in enumerate(extra_n1):
        lab.connect(n1, ifname, addrs=[f"10.99.{i + 1}.11/24"])
    lab.connect(n2, addrs=["10.99.0.12/24"])
    lab.connect(client, addrs=["10.99.0.20/24"])
    return n1, n2, client


def wait_master(lab: Lab, agent: Any, node: Any, name: str = "VI_4", vip: str = VIP) -> None:
    lab.wait_for(lambda: inst(agent, name)["state"] == "MASTER", 10, what=f"{name} MASTER")
    lab.wait_address(node, vip, timeout=5)


# ------------------------------------------------------------------ scripts


def test_failing_script_moves_mastership_after_fall_and_back_after_rise(lab: Lab) -> None:
    ws = Workspace(lab)
    flag = ws.dir / "fail"
    chk = ws.script("chk.sh", f"id -u > {ws.run}/uid\n[ ! -e {flag} ]")
    scripts = {"chk": {"script": chk, "interval": 0.2, "fall": 3, "rise": 2, "weight": -60}}
    n1, n2, _client = build(lab)
    a1 = lab.start_vigild(
        n1, node_cfg("n1", instance_cfg(150, {"scripts": ["chk"]}), vrrp_scripts=scripts)
    )
    a2 = lab.start_vigild(n2, node_cfg("n2", instance_cfg(100)))
    wait_master(lab, a1, n1)
    lab.wait_for(lambda: inst(a2)["state"] == "BACKUP", 5, what="n2 BACKUP")
    lab.wait_for(lambda: (ws.run / "uid").exists(), 5, what="the check script to run")
    assert (ws.run / "uid").read_text().strip() == str(ws.nobody_uid), "must run as nobody"
    view = tracker_view(a1)["chk"]
    assert view["kind"] == "script" and view["state"] == "OK" and view["delta"] == 0

    flag.touch()
    lab.wait_address(n2, VIP, timeout=10)
    lab.wait_address(n1, VIP, present=False, timeout=5)
    m1 = inst(a1)
    assert m1["state"] == "BACKUP" and m1["effective_priority"] == 90
    assert m1["priority_deltas"] == {"script:chk": -60}
    assert inst(a2)["state"] == "MASTER"
    failed = [e for e in events(a1, "tracker") if e["data"]["state"] == "FAILED"]
    assert len(failed) == 1, failed
    assert failed[0]["instance"] == "VI_4" and failed[0]["data"]["tracker"] == "chk"
    assert failed[0]["data"]["failures_in_row"] == 3, "FAILED must come after exactly `fall`"
    prio = [e for e in events(a1, "vrrp_priority") if e["data"]["new"] == 90]
    assert prio and prio[0]["seq"] > failed[0]["seq"], "the cause is published first"
    status, metrics = a1.client.get("/metrics")
    assert status == 200
    assert 'vigil_tracker_up{kind="script",tracker="chk"} 0.0' in metrics

    flag.unlink()
    lab.wait_address(n1, VIP, timeout=10)
    lab.wait_address(n2, VIP, present=False, timeout=5)
    assert inst(a1)["state"] == "MASTER" and inst(a1)["effective_priority"] == 150
    ok = [e for e in events(a1, "tracker") if e["data"]["state"] == "OK"]
    assert len(ok) == 1 and ok[0]["data"]["successes_in_row"] == 2, ok
    assert tracker_view(a1)["chk"]["state"] == "OK"


def adverts_from(frames: list[Frame], src: str, vrid: int) -> list[float]:
    """Kernel receive times of VRRP adverts from ``src`` for ``vrid`` (raw IPv4 parse)."""
    out = []
    want = bytes(int(x) for x in src.split("."))
    for f in frames:
        d = f.data
        if len(d) < 40 or struct.unpack("!H", d[12:14])[0] != 0x0800:
            continue
        ihl = (d[14] & 0x0F) * 4
        if d[23] != 112 or d[26:30] != want:
            continue
        if d[14 + ihl + 1] == vrid:
            out.append(f.time)
    return out


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry))
    return out


def test_hung_script_is_killed_at_its_timeout_and_adverts_keep_their_interval(lab: Lab) -> None:
    ws = Workspace(lab)
    pids = ws.run / "pids"
    hang = ws.script("hang.sh", f"echo $$ >> {pids}\nsleep 1000 &\nwait")
    scripts = {"hang": {"script": hang, "interval": 0.5, "timeout": 0.3, "weight": -10}}
    n1, _n2, client = build(lab)
    capture = Capture(lab, client)
    a1 = lab.start_vigild(
        n1, node_cfg("n1", instance_cfg(150, {"scripts": ["hang"]}), vrrp_scripts=scripts)
    )
    wait_master(lab, a1, n1)
    lab.wait_for(
        lambda: pids.exists() and len(pids.read_text().split()) >= 5,
        10,
        what="five runs of the hanging script",
    )
    capture.read()
    times = adverts_from(capture.frames, "10.99.0.11", 51)
    assert len(times) >= 15, f"only {len(times)} adverts captured"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= ADVERT + 0.06, f"an advert was late: max gap {max(gaps):.3f}s"

    runs = [int(p) for p in pids.read_text().split()]
    for pgid in runs[:-1]:  # the last one may still be running
        lab.wait_for(
            lambda pgid=pgid: not group_members(pgid),
            2,
            what=f"process group {pgid} (a timed-out run and its sleep) to be gone",
        )
    view = tracker_view(a1)["hang"]
    assert view["state"] == "FAILED" and view["delta"] == -10
    assert "timed out after 0.3" in (view["last_result"] or ""), view
    assert inst(a1)["effective_priority"] == 140

    assert a1.stop() == 0
    lab.wait_for(
        lambda: not any(group_members(p) for p in runs),
        5,
        what="no process of the hanging script after the agent stopped",
    )
    last = int(pids.read_text().split()[-1])
    assert not group_members(last)


# ------------------------------------------------------------------ interfaces


def test_tracked_interface_down_faults_or_lowers_priority(lab: Lab) -> None:
    second = instance_cfg(150, name="VI_B", vrid=61, virtual_ipaddresses=[f"{VIP_B}/24"])
    n1, n2, _client = build(lab, extra_n1=("eth1",))
    a1 = lab.start_vigild(
        n1,
        node_cfg(
            "n1",
            instance_cfg(150, {"interfaces": ["eth1"]}),
            {**second, "track": {"interfaces": [{"name": "eth1", "weight": -60}]}},
        ),
    )
    a2 = lab.start_vigild(n2, node_cfg("n2", instance_cfg(100), {**second, "priority": 100}))
    lab.wait_for(lambda: inst(a2, "VI_B")["state"] == "BACKUP", 10, what="n2 VI_B BACKUP")
    wait_master(lab, a1, n1)
    wait_master(lab, a1, n1, "VI_B", VIP_B)

    lab.cable_pull(n1, "eth1")
    lab.wait_for(lambda: inst(a1)["state"] == "FAULT", 5, what="VI_4 FAULT on eth1 down")
    lab.wait_address(n2, VIP, timeout=5)
    lab.wait_address(n2, VIP_B, timeout=5)
    assert "eth1" in inst(a1)["faults"]["interface:eth1"]
    b = inst(a1, "VI_B")
    assert b["state"] == "BACKUP" and b["effective_priority"] == 90
    assert tracker_view(a1, "VI_B")["eth1"]["delta"] == -60
    assert not lab.has_address(n1, VIP) and not lab.has_address(n1, VIP_B)
    assert {e["instance"] for e in events(a1, "tracker")} == {"VI_4", "VI_B"}

    lab.cable_plug(n1, "eth1")
    wait_master(lab, a1, n1)
    wait_master(lab, a1, n1, "VI_B", VIP_B)
    lab.wait_address(n2, VIP, present=False, timeout=5)
    assert inst(a1)["faults"] == {}
    assert inst(a1, "VI_B")["effective_priority"] == 150


# ------------------------------------------------------------------ files


def test_track_file_moves_priority_and_faults_below_minus_253(lab: Lab) -> None:
    ws = Workspace(lab)
    path = ws.dir / "prio"
    path.write_text("0\n")
    files = {"prio": {"file": str(path), "weight": 20}}
    n1, n2, _client = build(lab)
    a1 = lab.start_vigild(
        n1, node_cfg("n1", instance_cfg(150, {"files": ["prio"]}), track_files=files)
    )
    a2 = lab.start_vigild(n2, node_cfg("n2", instance_cfg(100)))
    wait_master(lab, a1, n1)

    path.write_text("-3\n")  # -60: 150 -> 90 < 100
    lab.wait_address(n2, VIP, timeout=5)
    assert inst(a1)["effective_priority"] == 90 and inst(a1)["state"] == "BACKUP"
    assert tracker_view(a1)["prio"]["value"] == -3

    path.write_text("2\n")  # +40: 150 -> 190
    lab.wait_address(n1, VIP, timeout=5)
    assert inst(a1)["effective_priority"] == 190

    path.write_text("-20\n")  # -400 < -253: FAULT
    lab.wait_for(lambda: inst(a1)["state"] == "FAULT", 5, what="FAULT from the file")
    lab.wait_address(n2, VIP, timeout=5)
    assert "file:prio" in inst(a1)["faults"]

    path.write_text("0\n")
    wait_master(lab, a1, n1)
    assert inst(a1)["effective_priority"] == 150 and inst(a2)["state"] == "BACKUP"


# ------------------------------------------------------------------ processes


def test_track_process_by_name(lab: Lab) -> None:
    ws = Workspace(lab)
    name = f"vgltrk{os.getpid() % 100000}"
    prog = ws.dir / name
    shutil.copy("/bin/sleep", prog)
    procs = {"svc": {"process": name, "weight": -60}}
    n1, n2, _client = build(lab)
    a1 = lab.start_vigild(
        n1, node_cfg("n1", instance_cfg(150, {"processes": ["svc"]}), track_processes=procs)
    )
    a2 = lab.start_vigild(n2, node_cfg("n2", instance_cfg(100)))
    lab.wait_address(n2, VIP, timeout=10)
    assert inst(a1)["effective_priority"] == 90
    assert tracker_view(a1)["svc"]["count"] == 0

    svc = lab.spawn(n1, [str(prog), "1000"], name="svc")
    wait_master(lab, a1, n1)
    assert inst(a1)["effective_priority"] == 150
    assert tracker_view(a1)["svc"]["count"] == 1

    lab.kill_group(svc)
    lab.wait_address(n2, VIP, timeout=5)
    assert inst(a1)["effective_priority"] == 90 and inst(a2)["state"] == "MASTER"


# ------------------------------------------------------------------ reload


def test_unrelated_reload_keeps_tracker_state_without_a_blip(lab: Lab) -> None:
    ws = Workspace(lab)
    flag = ws.dir / "fail"
    flag.touch()
    chk = ws.script("chk.sh", f"[ ! -e {flag} ]")
    scripts = {"chk": {"script": chk, "interval": 0.2, "weight": -20}}
    n1, _n2, _client = build(lab)
    cfg = node_cfg("n1", instance_cfg(150, {"scripts": ["chk"]}), vrrp_scripts=scripts)
    a1 = lab.start_vigild(n1, cfg)
    lab.wait_for(lambda: inst(a1)["effective_priority"] == 130, 5, what="the script to fail")
    wait_master(lab, a1, n1)
    runs = tracker_view(a1)["chk"]["runs"]
    seq = events(a1)[-1]["seq"]

    other = instance_cfg(100, name="VI_X", vrid=71, virtual_ipaddresses=["10.99.0.171/24"])
    a1.write_config({**cfg, "vrrp_instances": [*cfg["vrrp_instances"], other]})
    status, body = a1.reload()
    assert status == 200, body
    view = tracker_view(a1)["chk"]
    assert view["state"] == "FAILED" and view["runs"] >= runs, "the tracker was restarted"
    after = [e for e in events(a1) if e["seq"] > seq and e["instance"] == "VI_4"]
    assert not after, f"an unrelated reload touched VI_4: {after}"
    assert inst(a1)["effective_priority"] == 130

    # changing the script's own definition restarts only it (new state: OK at first)
    scripts2 = {"chk": {**scripts["chk"], "weight": -30}}
    a1.write_config({**cfg, "vrrp_scripts": scripts2})
    status, body = a1.reload()
    assert status == 200, body
    lab.wait_for(lambda: inst(a1)["effective_priority"] == 120, 5, what="the new weight")


@pytest.fixture(autouse=True)
def _nobody_exists() -> None:
    pwd.getpwnam("nobody")  # scripts run as nobody (the default script_user)
