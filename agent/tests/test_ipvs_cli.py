"""vigilctl's IPVS group and the pure parts of drain/enable (vigil.ipvs.cli, .control).

The API answers are stood in by a small client object (the real API over a socket is
covered by tests/integration/test_ipvs_host.py and, with a kernel, tests/vm).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from vigil.cli import EXIT_API_ERROR, EXIT_OK, EXIT_USAGE, main
from vigil.clikit import Ctl
from vigil.ipvs.cli import cmd_drain, cmd_enable, status_table
from vigil.ipvs.control import ControlError, DrainStore, DrainWatch, Outcome, resolve_target
from vigil.subsystems import validate_data


def section() -> dict[str, Any]:
    rs = {
        "name": "10.62.1.11:80",
        "address": "10.62.1.11",
        "port": 80,
        "state": "UP",
        "drained": False,
        "suspended": False,
        "forwarding": "nat",
        "ipvs_weight": 1,
        "connections": {"active": 3, "inactive": 7, "persistent": 0},
        "latency_s": 0.0012,
        "consecutive_failures": 0,
        "last_error": None,
        "checks": [{"kind": "http", "state": "UP"}],
    }
    down = {
        **rs,
        "name": "10.62.1.12:80",
        "state": "DOWN",
        "ipvs_weight": None,
        "connections": None,
        "consecutive_failures": 2,
        "last_error": "connect: connection refused",
        "checks": [{"kind": "tcp", "state": "DOWN"}],
    }
    drained = {**rs, "name": "10.62.1.13:80", "drained": True, "ipvs_weight": 0}
    return {
        "kernel": {"available": True, "used": True},
        "virtual_servers": [
            {
                "name": "web",
                "services": ["tcp 10.62.0.100:80"],
                "scheduler": "wlc",
                "scheduler_flags": [],
                "persistence": {"timeout": 300},
                "in_ipvs": True,
                "quorum": {"state": "UP", "quorum": 1, "live_weight": 1},
                "sorry_server": {"address": "10.62.1.99", "port": 80, "active": False},
                "real_servers": [rs, down, drained],
            },
            {
                "name": "mark",
                "services": ["fwmark 7 (IPv4)"],
                "scheduler": "sh",
                "scheduler_flags": ["sh-port"],
                "in_ipvs": False,
                "quorum": {"state": "DOWN", "quorum": 1, "live_weight": 0},
                "ha_suspend": {"instance": "VI_1", "vrrp_state": "BACKUP", "suspended": True},
                "real_servers": [],
            },
        ],
        "sync_daemon": {
            "interface": "eth0",
            "instance": "VI_1",
            "vrrp_state": "MASTER",
            "syncid": 51,
            "running": ["master"],
        },
    }


def test_status_reads_like_ipvsadm_with_health_columns() -> None:
    lines = status_table(section()).splitlines()
    assert lines[0] == (
        "TCP  10.62.0.100:80 wlc persistent 300  [web] quorum UP (live weight 1, quorum 1); "
        "sorry server 10.62.1.99:80 standing by"
    )
    assert lines[1].split() == [
        "->", "RemoteAddress:Port", "Forward", "Weight", "ActiveConn", "InActConn", "State",
        "Checks", "Latency", "Fails", "Last", "error",
    ]  # fmt: skip
    assert lines[2].split() == [
        "->", "10.62.1.11:80", "Masq", "1", "3", "7", "UP", "http:up", "1.2ms", "0", "-",
    ]  # fmt: skip
    assert lines[3].split()[:8] == [
        "->",
        "10.62.1.12:80",
        "Masq",
        "-",
        "-",
        "-",
        "DOWN",
        "tcp:down",
    ]
    assert lines[3].split()[-4:] == ["2", "connect:", "connection", "refused"]
    assert lines[4].split()[3] == "0" and "DRAINED" in lines[4]
    assert lines[5] == (
        "FWM  7 (IPv4) sh (sh-port)  [mark] quorum DOWN (live weight 0, quorum 1); checks "
        "suspended (VI_1 is BACKUP); NOT IN IPVS"
    )
    assert lines[6] == "sync daemon on eth0 syncid 51: master running (follows VI_1: MASTER)"


def test_status_says_when_ipvs_is_missing() -> None:
    data = {"kernel": {"available": False, "used": True, "error": "no IPVS"}, "virtual_servers": []}
    assert status_table(data) == "IPVS NOT AVAILABLE: no IPVS\nno virtual servers\n"


class FakeClient:
    def __init__(self, status: int, body: Any) -> None:
        self.timeout = 5.0
        self.answer = (status, body)
        self.posts: list[tuple[str, Any]] = []

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        self.posts.append((path, body))
        return self.answer


def run(cmd: Any, answer: tuple[int, Any], **args: Any) -> tuple[int, str, str, FakeClient]:
    client = FakeClient(*answer)
    out, err = io.StringIO(), io.StringIO()
    ctl = Ctl(client, "text", out, err)  # type: ignore[arg-type]
    ns = argparse.Namespace(**{"wait": False, "action_timeout": None, **args})
    return cmd(ctl, ns), out.getvalue(), err.getvalue(), client


def test_drain_wait_exit_codes_say_which_outcome() -> None:
    drained = {
        "virtual_server": "web",
        "real_server": "10.62.1.11:80",
        "message": "drained: weight 0 in IPVS; no active connection left after 1.5s",
        "elapsed_s": 1.6,
        "wait": {"outcome": "drained", "active_connections": 0},
    }
    rc, out, _, client = run(
        cmd_drain, (200, drained), virtual_server="web", real_server="10.62.1.11",
        wait=True, action_timeout=30.0,
    )  # fmt: skip
    assert rc == EXIT_OK
    assert out == f"web/10.62.1.11:80: {drained['message']} (1.60s)\n"
    path, body = client.posts[0]
    assert path == "/v1/ipvs/virtual_servers/web/real_servers/10.62.1.11/drain"
    assert body == {"wait": True, "timeout": 30.0} and client.timeout >= 45
    timed_out = {**drained, "wait": {"outcome": "timeout", "active_connections": 4}}
    rc, _, err, _ = run(
        cmd_drain, (200, timed_out), virtual_server="web", real_server="[fd00::1]:80",
        wait=True,
    )  # fmt: skip
    assert rc == EXIT_API_ERROR
    assert "timeout: 4 active connection(s) still open" in err


def test_errors_are_printed_with_exit_1() -> None:
    error = {"error": {"code": 503, "message": "IPVS is not available: no IPVS"}}
    rc, _, err, _ = run(cmd_enable, (503, error), virtual_server="web", real_server="x")
    assert rc == EXIT_API_ERROR and "IPVS is not available: no IPVS" in err


def test_usage_errors() -> None:
    out, err = io.StringIO(), io.StringIO()
    rc = main(["ipvs", "drain", "web", "10.0.0.1:80", "--timeout", "5"], out=out, err=err)
    assert rc == EXIT_USAGE and "--timeout goes with --wait" in err.getvalue()
    assert main(["drain", "web"], out=io.StringIO(), err=io.StringIO()) == EXIT_USAGE


# ---------------------------------------------------------------------------- control


def test_drain_watch() -> None:
    watch = DrainWatch(started=10.0, timeout=5.0)
    assert watch.observe(11.0, 3) is Outcome.WAITING
    assert watch.observe(16.0, 1) is Outcome.TIMEOUT
    assert watch.observe(16.0, 0) is Outcome.DRAINED
    assert DrainWatch(0.0, 1.0).observe(0.0, None) is Outcome.DRAINED  # not in IPVS


def test_drain_store_is_all_or_nothing(tmp_path: Path) -> None:
    store = DrainStore(tmp_path)
    assert store.load() == {}
    store.save({"web": {"10.0.0.1:80", "10.0.0.2:80"}, "api": set()})
    assert json.loads((tmp_path / "ipvs-control.json").read_text()) == {
        "version": 1,
        "drained": {"web": ["10.0.0.1:80", "10.0.0.2:80"]},
    }
    assert store.load() == {"web": {"10.0.0.1:80", "10.0.0.2:80"}}
    (tmp_path / "ipvs-control.json").write_text("{broken")
    assert store.load() == {}
    (tmp_path / "ipvs-control.json").chmod(0o644)
    blocked = DrainStore(tmp_path / "file")
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OSError):
        blocked.save({"web": {"x"}})


def test_resolve_target_names_what_exists() -> None:
    cfg = validate_data(
        {
            "virtual_servers": [
                {
                    "name": "web",
                    "address": "10.0.0.1",
                    "port": 80,
                    "real_servers": [
                        {"address": "10.0.1.1"},
                        {"address": "10.0.1.2", "port": 80},
                        {"address": "10.0.1.2", "port": 8080},
                    ],
                }
            ]
        },
        check_files=False,
    ).section("ipvs")
    assert resolve_target(cfg, "web", "10.0.1.1")[1].label == "10.0.1.1:80"
    assert resolve_target(cfg, "web", "10.0.1.2:8080")[1].port == 8080
    with pytest.raises(ControlError) as info:
        resolve_target(cfg, "web", "10.0.1.2")
    assert info.value.status == 404 and "ambiguous" in info.value.message
    with pytest.raises(ControlError) as info:
        resolve_target(cfg, "wbe", "10.0.1.1")
    assert "unknown virtual server 'wbe'; this config has: web" in info.value.message
