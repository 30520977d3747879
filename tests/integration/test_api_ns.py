"""vigild's API on its real Unix socket, with agents running inside lab namespaces."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.lab import Lab, wait_for
from tests.lab.agents import AgentHandle
from tests.lab.probe import REPO_ROOT

DEMO = REPO_ROOT / "examples" / "demo"
NOBODY = 65534


def demo_config(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((DEMO / f"{name}.yml").read_text()))


def pair(lab: Lab) -> tuple[AgentHandle, AgentHandle]:
    lab.add_switch()
    agents = []
    for i, name in enumerate(("node1", "node2"), start=1):
        lab.add_namespace(name)
        lab.connect(name, addrs=[f"10.99.0.1{i}/24", f"fd00:99::1{i}/64"])
        agents.append(lab.start_vigild(name, demo_config(name)))
    return agents[0], agents[1]


def one(lab: Lab, config: dict[str, Any] | None = None) -> AgentHandle:
    lab.add_switch()
    lab.add_namespace("node1")
    lab.connect("node1", addrs=["10.99.0.11/24", "fd00:99::11/64"])
    return lab.start_vigild("node1", config or demo_config("node1"))


def raw_http(path: Path, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to the socket and parse the answer (status, headers, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(request)
        chunks = []
        for _ in range(1000):
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def test_two_agents_side_by_side_answer_on_their_own_sockets(lab: Lab) -> None:
    a1, a2 = pair(lab)
    assert a1.socket_path != a2.socket_path
    assert a1.state_dir != a2.state_dir
    for agent, rid in ((a1, "node1"), (a2, "node2")):
        status, body = agent.health()
        assert status == 200, body
        assert body["ready"] is True
        assert body["router_id"] == rid
        assert body["pid"] == agent.pid
        res = agent.vigilctl("status")
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"router_id: {rid}" in res.stdout
        assert "VI_4" in res.stdout and "VI_6" in res.stdout
    res = a1.vigilctl("status", "--output", "json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["agent"]["router_id"] == "node1"
    assert [inst["name"] for inst in status["vrrp"]["instances"]] == ["VI_4", "VI_6"]


NOBODY_CLIENT = r"""
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect-error", errno.errorcode[exc.errno])
    sys.exit(0)
s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
print("status", head.split()[1].decode())
print(body.decode())
"""


def test_a_client_without_root_is_refused(lab: Lab) -> None:
    agent = one(lab)
    sock = agent.socket_path
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    # Let nobody reach the socket file itself, so what refuses it is the socket's mode
    # and then the agent's SO_PEERCRED check, not a directory on the way.
    for parent in (sock.parent, sock.parent.parent, lab.shortdir):
        os.chmod(parent, 0o711)

    def as_nobody() -> str:
        res = lab.run(
            "node1",
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "/usr/bin/python3", "-c", NOBODY_CLIENT, str(sock)],
        )  # fmt: skip
        return res.stdout

    assert as_nobody().split() == ["connect-error", "EACCES"]
    os.chmod(sock, 0o666)
    out = as_nobody()
    status_line, _, body = out.partition("\n")
    assert status_line == "status 403", out
    error = json.loads(body)["error"]
    assert error["code"] == 403
    assert str(NOBODY) in error["message"]
    # root on the same socket is still served
    assert agent.health()[0] == 200


def test_malformed_http_and_unknown_paths_get_json_errors(lab: Lab) -> None:
    agent = one(lab)
    status, headers, body = raw_http(agent.socket_path, b"THIS IS NOT HTTP\r\n\r\n")
    assert status == 400
    assert "json" in headers.get("content-type", ""), headers
    assert json.loads(body)["error"]["code"] == 400

    status, body_json = agent.client.get("/v1/no-such-thing")
    assert status == 404
    assert body_json["error"]["code"] == 404
    assert "/v1/no-such-thing" in body_json["error"]["message"]

    status, body_json = agent.client.get("/v1/events?since=abc")
    assert status == 400
    assert "since" in body_json["error"]["message"]


def test_invalid_reload_keeps_the_running_config_and_a_valid_one_reports_the_diff(
    lab: Lab,
) -> None:
    config = demo_config("node1")
    agent = one(lab, config)
    before = agent.client.get("/v1/config")[1]["config"]

    bad = json.loads(json.dumps(config))
    bad["vrrp_instances"][0]["vrid"] = 300
    agent.write_config(bad)
    status, body = agent.reload()
    assert status == 422, body
    paths = [issue["path"] for issue in body["error"]["issues"]]
    assert "vrrp_instances[0].vrid" in paths
    assert agent.client.get("/v1/config")[1]["config"] == before

    # SIGHUP with the same bad file: the failure is an event, the config stays.
    seq = agent.client.get("/v1/events")[1][-1]["seq"]
    agent.sighup()
    failed = wait_for(
        lambda: [e for e in agent.client.get(f"/v1/events?since={seq}")[1]
                 if e["kind"] == "reload_failed"],
        what="a reload_failed event after SIGHUP",
    )  # fmt: skip
    assert "vrrp_instances[0].vrid" in json.dumps(failed[0]["data"])
    assert agent.client.get("/v1/config")[1]["config"] == before
    assert agent.health()[0] == 200

    good = json.loads(json.dumps(config))
    good["vrrp_instances"][0]["priority"] = 120
    agent.write_config(good)
    status, body = agent.reload()
    assert status == 200, body
    assert body["changed"] is True
    assert body["diff"]["vrrp"]["changed"] == ["VI_4"]
    assert "VI_6" in body["diff"]["vrrp"]["unchanged"]
    after = agent.client.get("/v1/config")[1]["config"]
    assert after["vrrp_instances"][0]["priority"] == 120

    # A valid change by SIGHUP: the config_reloaded event carries the diff.
    seq = agent.client.get("/v1/events")[1][-1]["seq"]
    good["vrrp_instances"][1]["priority"] = 110
    agent.write_config(good)
    agent.sighup()
    reloaded = wait_for(
        lambda: [e for e in agent.client.get(f"/v1/events?since={seq}")[1]
                 if e["kind"] == "config_reloaded"],
        what="a config_reloaded event after SIGHUP",
    )  # fmt: skip
    assert reloaded[0]["data"]["diff"]["vrrp"]["changed"] == ["VI_6"]
    assert agent.client.get("/v1/config")[1]["config"]["vrrp_instances"][1]["priority"] == 110


def test_event_stream_replays_from_since(lab: Lab) -> None:
    agent = one(lab)
    for _ in range(3):
        assert agent.reload()[0] == 200
    events = agent.client.get("/v1/events")[1]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(seqs) >= 4
    since = seqs[1]
    replayed = []
    for event in agent.client.stream(f"/v1/events?since={since}", timeout=10):
        replayed.append(event)
        if len(replayed) == len(seqs) - 2:
            break
    assert [e["id"] for e in replayed] == seqs[2:]
    assert [e["event"] for e in replayed] == [e["kind"] for e in events[2:]]
    assert agent.client.get(f"/v1/events?since={seqs[-1]}")[1] == []


def test_metrics_are_prometheus_text(lab: Lab) -> None:
    agent = one(lab)
    assert agent.reload()[0] == 200
    status, text = agent.client.get("/metrics")
    assert status == 200
    assert isinstance(text, str)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["vigil_up"].samples[0].value == 1
    reloads = {
        s.labels["result"]: s.value
        for s in families["vigil_config_reloads"].samples
        if s.name.endswith("_total")
    }
    assert reloads["success"] >= 1
    build = families["vigil_build_info"].samples[0]
    assert build.labels["router_id"] == "node1"


@pytest.fixture(autouse=True)
def _setpriv_present() -> None:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run a client as another user")
