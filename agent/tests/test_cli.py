"""vigilctl against a real agent on a real socket: both output formats and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_harness import BAD_CONFIG, BASE_CONFIG, AgentThread, wait_for

from vigil.cli import EXIT_API_ERROR, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main, table

FIXTURES = Path(__file__).parent / "fixtures" / "keepalived"


@pytest.fixture
def running() -> Iterator[AgentThread]:
    with AgentThread() as at:
        yield at


@pytest.fixture
def vrrp_built() -> Iterator[AgentThread]:
    """VRRP built but not started (no root here): status shows the configured instances."""
    from vigil.subsystems import specs

    with AgentThread(factories=specs(), start_agent=False) as at:
        yield at


def ctl(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_table_is_aligned_without_trailing_blanks() -> None:
    text = table(("A", "LONGER"), [("x", None), ("yyyy", "z")])
    assert text == "A     LONGER\nx\nyyyy  z\n"


def test_status_table(vrrp_built: AgentThread) -> None:
    rc, out, err = ctl("--socket", vrrp_built.socket_path, "status")
    assert rc == EXIT_OK, err
    assert "router_id: unit1" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("NAME"))
    assert header.split() == ["NAME", "STATE", "INTERFACE", "VRID", "PRIO", "MASTER", "VIPS"]
    row = ["VI_1", "INIT", "eth0", "51", "150", "-", "10.99.0.100/24"]
    assert any(line.split() == row for line in lines)
    assert any("fd00:99::100/64" in line for line in lines)


def test_status_json_is_the_api_body(vrrp_built: AgentThread) -> None:
    rc, out, _ = ctl("-s", vrrp_built.socket_path, "-o", "json", "status")
    assert rc == EXIT_OK
    doc = json.loads(out)
    assert [i["name"] for i in doc["vrrp"]["instances"]] == ["VI_1", "VI_6"]
    # -o is accepted after the command too
    rc2, out2, _ = ctl("-s", vrrp_built.socket_path, "status", "-o", "json")
    assert rc2 == EXIT_OK and json.loads(out2)["agent"]["router_id"] == "unit1"


def test_socket_from_environment(running: AgentThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_SOCKET", running.socket_path)
    rc, out, _ = ctl("health")
    assert rc == EXIT_OK
    assert "ready:" in out and "True" in out


def test_health_json(running: AgentThread) -> None:
    rc, out, _ = ctl("-s", running.socket_path, "-o", "json", "health")
    assert rc == EXIT_OK
    assert json.loads(out)["ready"] is True


def test_health_not_ready_exits_1() -> None:
    with AgentThread(start_agent=False) as at:
        rc, out, _ = ctl("-s", at.socket_path, "health")
        assert rc == EXIT_API_ERROR
        assert "starting" in out


def test_config_yaml_and_json(running: AgentThread) -> None:
    rc, out, _ = ctl("-s", running.socket_path, "config")
    assert rc == EXIT_OK
    assert out.startswith(f"# source: {running.config_path}\n")
    assert "password: <redacted>" in out
    assert "s3cret" not in out
    rc, out, _ = ctl("-s", running.socket_path, "-o", "json", "config")
    assert json.loads(out)["config"]["global"]["router_id"] == "unit1"


def test_reload_no_change_then_change(running: AgentThread) -> None:
    rc, out, _ = ctl("-s", running.socket_path, "reload")
    assert rc == EXIT_OK
    assert out == "config reloaded: no changes\n"
    running.config_path.write_text(BASE_CONFIG.replace("priority: 150", "priority: 130"))
    rc, out, _ = ctl("-s", running.socket_path, "reload")
    assert rc == EXIT_OK
    assert out.startswith("config reloaded: changed\n")
    changed = next(line for line in out.splitlines() if line.startswith("changed"))
    assert changed.split() == ["changed", "VI_1"]


def test_reload_invalid_prints_issues_and_exits_1(running: AgentThread) -> None:
    running.config_path.write_text(BAD_CONFIG)
    rc, out, err = ctl("-s", running.socket_path, "reload")
    assert rc == EXIT_API_ERROR
    assert "HTTP 422: config is invalid; the running config is unchanged" in err
    assert "vrrp_instances[0].vrid" in err
    rc, out, err = ctl("-s", running.socket_path, "-o", "json", "reload")
    assert rc == EXIT_API_ERROR
    assert json.loads(out)["error"]["code"] == 422


def test_events_table_json_and_since(running: AgentThread) -> None:
    running.publish("state_change", "VI_1", "BACKUP -> MASTER: test")
    rc, out, _ = ctl("-s", running.socket_path, "events")
    assert rc == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "KIND", "INSTANCE", "MESSAGE"]
    assert lines[2].split()[:4] == ["2", lines[2].split()[1], "state_change", "VI_1"]
    assert lines[2].endswith("BACKUP -> MASTER: test")
    rc, out, _ = ctl("-s", running.socket_path, "-o", "json", "events", "--since", "1")
    assert [e["seq"] for e in json.loads(out)] == [2]


def test_events_follow_streams_until_the_agent_stops() -> None:
    with AgentThread() as at:
        out, err = io.StringIO(), io.StringIO()
        result: list[int] = []
        argv = ["-s", at.socket_path, "-o", "json", "events", "--follow", "--since", "0"]
        t = threading.Thread(target=lambda: result.append(main(argv, out=out, err=err)))
        t.start()
        try:
            wait_for(lambda: "agent_started" in out.getvalue(), what="replayed event")
            at.publish("state_change", "VI_1", "INIT -> BACKUP: test")
            wait_for(lambda: "INIT -> BACKUP" in out.getvalue(), what="live event")
        finally:
            at.run(at.agent.stop())  # ends the stream
            t.join(timeout=15)
        assert result == [EXIT_OK]
        kinds = [json.loads(line)["kind"] for line in out.getvalue().splitlines()]
        assert kinds == ["agent_started", "state_change", "agent_stopping"]


def test_events_follow_lost_stream_exits_3() -> None:
    with AgentThread() as at:
        out, err = io.StringIO(), io.StringIO()
        result: list[int] = []
        argv = ["-s", at.socket_path, "events", "--follow", "--since", "0"]
        t = threading.Thread(target=lambda: result.append(main(argv, out=out, err=err)))
        t.start()
        try:
            wait_for(lambda: "agent_started" in out.getvalue(), what="replayed event")
        finally:
            at.run(at.server.stop())  # the API goes away without a clean agent stop
            t.join(timeout=15)
        assert result == [EXIT_UNREACHABLE]
        assert "ended unexpectedly" in err.getvalue()


def test_unreachable_exits_3_with_hint() -> None:
    rc, _, err = ctl("-s", "/tmp/vigil-no-such.sock", "status")
    assert rc == EXIT_UNREACHABLE
    assert "cannot reach vigild at /tmp/vigil-no-such.sock" in err
    assert "is vigild running? pass --socket" in err


@pytest.mark.parametrize(
    "argv",
    [[], ["bogus"], ["events", "--since", "-3"], ["-o", "xml", "status"]],
    ids=["no-command", "unknown-command", "negative-since", "bad-format"],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    rc, _, _ = ctl(*argv)
    assert rc == EXIT_USAGE


def test_import_keepalived_yaml_and_json() -> None:
    conf = FIXTURES / "unicast.conf"
    if not conf.exists():
        pytest.skip("keepalived fixtures not present")
    rc, out, err = ctl("import-keepalived", str(conf))
    assert rc in (EXIT_OK, EXIT_API_ERROR), err
    assert "vrrp_instances:" in out
    rc, out, _ = ctl("import-keepalived", str(conf), "-o", "json")
    assert "vrrp_instances" in json.loads(out)["config"]


def test_import_keepalived_missing_file_is_an_error() -> None:
    rc, _, err = ctl("import-keepalived", "/tmp/vigil-no-such-keepalived.conf")
    assert rc != EXIT_OK
    assert "vigil-no-such-keepalived.conf" in err


def test_console_script_runs() -> None:
    exe = Path(sys.executable).parent / "vigilctl"
    if not exe.exists():
        pytest.skip("vigilctl console script not installed in this environment")
    proc = subprocess.run(
        [str(exe), "--socket", "/tmp/vigil-no-such.sock", "health"],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "VIGIL_SOCKET"},
    )
    assert proc.returncode == EXIT_UNREACHABLE
    assert "cannot reach vigild" in proc.stderr
