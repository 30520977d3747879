"""The IPVS subsystem in a real vigild on this host, whose kernel has no IPVS.

What runs without IPVS is tested here: the config section through ``vigild --check``, the
checkers wired to real servers in namespaces (busybox httpd), events, notify scripts, the
quorum and its tracker, the VRRP state tracker IPVS follows, the API and vigilctl shapes,
and the clear error everything gives when IPVS is absent. The kernel side (NAT, DR,
tunnel, drift, drain, clean-up) is in tests/vm/test_ipvs_agent.py, inside the IPVS VM.

Topology (one bridge): ``lb`` 10.63.0.1 runs vigild; ``srv`` 10.63.0.11 runs busybox
httpd and also holds 10.63.0.12, where nothing listens (connection refused).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lab import Lab, wait_for
from tests.lab.agents import AgentHandle, bin_path
from tests.lab.procs import ProcessHandle

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VIP = "10.63.0.100"
UP, REFUSED = "10.63.0.11", "10.63.0.12"
NODES = ("director1", "director2")


def build(lab: Lab, tmp_path: Path) -> ProcessHandle:
    lab.add_switch()
    lab.add_namespace("lb")
    lab.connect("lb", addrs=["10.63.0.1/24"])
    lab.add_namespace("srv")
    lab.connect("srv", addrs=[f"{UP}/24", f"{REFUSED}/24"])
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("srv\n")
    return lab.spawn("srv", ["busybox", "httpd", "-f", "-p", f"{UP}:80", "-h", str(www)])


def config(tmp_path: Path, **vs: Any) -> dict[str, Any]:
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$VIGIL_EVENT $VIGIL_REAL_SERVER" >> {tmp_path}/notes\n')
    script.chmod(0o755)
    server: dict[str, Any] = {
        "name": "web",
        "address": VIP,
        "port": 80,
        "scheduler": "rr",
        "delay_loop": 0.3,
        "warmup": 0,
        "retry": 0,
        "connect_timeout": 1,
        "quorum": 1,
        "quorum_down": f"{script}",
        "real_servers": [
            {
                "address": UP,
                "notify_down": str(script),
                "notify_up": str(script),
                "checks": [{"type": "http", "path": "/", "status_codes": [200]}],
            },
            {"address": REFUSED, "weight": 2, "checks": ["tcp"]},
        ],
    }
    server.update(vs)
    return {
        "global": {"router_id": "lb", "script_user": "root"},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 63,
                "priority": 150,
                "advert_interval": 1,
                "virtual_ipaddresses": [f"{VIP}/24"],
            }
        ],
        "virtual_servers": [server],
    }


def vs_view(agent: AgentHandle) -> dict[str, Any]:
    status, body = agent.client.get("/v1/ipvs/virtual_servers/web")
    assert status == 200, body
    return dict(body)


def rs(view: dict[str, Any], address: str) -> dict[str, Any]:
    return next(r for r in view["real_servers"] if r["address"] == address)


def events(agent: AgentHandle, kind: str) -> list[dict[str, Any]]:
    return [e for e in agent.client.get("/v1/events")[1] if e["kind"] == kind]


def test_checks_quorum_api_and_cli_without_ipvs_in_the_kernel(lab: Lab, tmp_path: Path) -> None:
    httpd = build(lab, tmp_path)
    agent = lab.start_vigild("lb", config(tmp_path))

    # IPVS is absent: said once, clearly, in the status, the events and the metrics
    status, body = agent.client.get("/v1/status")
    assert status == 200, body
    kernel = body["ipvs"]["kernel"]
    assert kernel["available"] is False and kernel["used"] is True
    assert "no IPVS" in kernel["error"], kernel
    (unavailable,) = events(agent, "ipvs_unavailable")
    assert "this kernel has no IPVS (CONFIG_IP_VS)" in unavailable["message"]
    assert body["agent"]["subsystems"] == ["bfd", "vrrp", "ipvs"]

    # the checkers run anyway: one server up, the other refused. (UP is also the state a
    # real server starts in, before its first check: wait for that check, its latency.)
    def settled() -> dict[str, Any] | None:
        v = vs_view(agent)
        up, refused = rs(v, UP), rs(v, REFUSED)
        checked = up["state"] == "UP" and up["latency_s"] is not None
        return v if checked and refused["state"] == "DOWN" else None

    view = wait_for(settled, timeout=10, what="web: 10.63.0.11 checked UP and 10.63.0.12 DOWN")
    up, down = rs(view, UP), rs(view, REFUSED)
    assert up["checks"][0]["kind"] == "http" and up["checks"][0]["state"] == "UP"
    assert up["latency_s"] is not None and up["latency_s"] < 1.0
    assert up["configured_weight"] == 1 and up["effective_weight"] == 1
    assert up["in_ipvs"] is False and up["ipvs_weight"] is None  # nothing could be programmed
    assert down["consecutive_failures"] >= 1
    assert "refused" in down["last_error"], down
    assert view["quorum"]["state"] == "UP" and view["quorum"]["live_weight"] == 1
    assert view["in_ipvs"] is False
    assert [e["data"]["real_server"] for e in events(agent, "real_server_down")] == [
        f"{REFUSED}:80"
    ]

    # a verified action cannot be verified without IPVS: 503 and why
    status, body = agent.client.post(f"/v1/ipvs/virtual_servers/web/real_servers/{UP}:80/drain")
    assert status == 503, body
    assert "IPVS is not available" in body["error"]["message"]
    assert "no IPVS" in body["error"]["message"]
    res = agent.vigilctl("drain", "web", UP)
    assert res.returncode == 1 and "IPVS is not available" in res.stderr
    status, body = agent.client.post("/v1/ipvs/virtual_servers/web/real_servers/10.9.9.9:80/drain")
    assert status == 404 and "it has: 10.63.0.11:80, 10.63.0.12:80" in body["error"]["message"]
    status, body = agent.client.post(
        f"/v1/ipvs/virtual_servers/web/real_servers/{UP}:80/drain", {"timeout": 5}
    )
    assert status == 400 and body["error"]["field"] == "body.timeout"

    # vigilctl: the ipvsadm-like table, alone and inside `vigilctl status`
    res = agent.vigilctl("ipvs", "status")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("IPVS NOT AVAILABLE: ")
    assert lines[1].startswith(f"TCP  {VIP}:80 rr  [web] quorum UP (live weight 1, quorum 1)")
    row = next(line.split() for line in lines if f"{UP}:80" in line)
    assert row[:3] == ["->", f"{UP}:80", "Masq"] and "UP" in row and "http:up" in row
    res = agent.vigilctl("status")
    assert res.returncode == 0 and f"TCP  {VIP}:80 rr" in res.stdout

    # the quorum is a tracker other parts can follow; VRRP publishes its instances
    trackers = {t["kind"]: t for t in agent.client.get("/v1/status")[1]["agent"]["trackers"]}
    assert trackers["ipvs_quorum"]["name"] == "web" and trackers["ipvs_quorum"]["state"] == "OK"
    assert trackers["vrrp"]["name"] == "VI_1" and trackers["vrrp"]["vrrp_state"] in (
        "BACKUP",
        "MASTER",
    )

    # metrics
    metrics = agent.client.get("/metrics")[1]
    assert "vigil_ipvs_kernel_available 0.0" in metrics
    assert f'vigil_ipvs_real_server_up{{real_server="{UP}:80",virtual_server="web"}} 1.0' in (
        metrics
    )
    assert 'vigil_ipvs_quorum_up{virtual_server="web"} 1.0' in metrics

    # the last server dies: down event, its notify_down, quorum lost and its script
    lab.kill_group(httpd, signal.SIGKILL)
    wait_for(lambda: vs_view(agent)["quorum"]["state"] == "DOWN", timeout=10, what="quorum DOWN")
    (lost,) = events(agent, "quorum_lost")
    assert "live weight 0 < quorum 1" in lost["message"]
    notes = tmp_path / "notes"
    wait_for(
        lambda: {"down 10.63.0.11:80", "quorum_down "} <= set(notes.read_text().splitlines()),
        timeout=10,
        what="notify_down and quorum_down ran",
        observe=lambda: notes.read_text() if notes.exists() else None,
    )
    trackers = {t["kind"]: t for t in agent.client.get("/v1/status")[1]["agent"]["trackers"]}
    assert trackers["ipvs_quorum"]["state"] == "FAILED"
    notify = [e for e in events(agent, "notify") if e["data"]["event"] == "down"]
    assert notify and notify[0]["data"]["ok"] is True
    assert agent.stop() == 0


def test_a_host_without_virtual_servers_never_opens_ipvs(lab: Lab, tmp_path: Path) -> None:
    build(lab, tmp_path)
    cfg = config(tmp_path)
    del cfg["virtual_servers"]
    agent = lab.start_vigild("lb", cfg)
    body = agent.client.get("/v1/status")[1]["ipvs"]
    assert body["kernel"]["used"] is False and body["kernel"]["error"] is None
    assert body["virtual_servers"] == []
    assert events(agent, "ipvs_unavailable") == []
    assert agent.vigilctl("ipvs", "status").stdout == "no virtual servers\n"


def test_vigild_check_validates_the_section(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(json.dumps(config(tmp_path)))
    out = subprocess.run(
        [bin_path("vigild"), "--check", "--config", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 VRRP instance, 1 virtual server" in out.stdout
    bad = config(tmp_path, schedular="rr", ha_suspend="VI_9")
    path = tmp_path / "bad.yml"
    path.write_text(json.dumps(bad))
    out = subprocess.run(
        [bin_path("vigild"), "--check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert "virtual_servers[0].schedular: unknown key; did you mean 'scheduler'?" in out.stdout
    assert "virtual_servers[0].ha_suspend: no VRRP instance named 'VI_9'" in out.stdout


def test_shipped_example_passes_vigild_check() -> None:
    """examples/ipvs/ as shipped (docs/ipvs.md's worked example), both directors and the
    pair check the collection runs."""
    for node in NODES:
        path = REPO / "examples" / "ipvs" / f"{node}.yml"
        out = subprocess.run(
            [sys.executable, "-m", "vigil.daemon", "--check", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ},
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "1 VRRP instance, 2 virtual servers" in out.stdout
    from vigil.subsystems import check_cluster, load_config

    pair = {n: load_config(str(REPO / "examples" / "ipvs" / f"{n}.yml")) for n in NODES}
    assert check_cluster(pair) == []
