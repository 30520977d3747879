"""vigild as a real subprocess: start-up, sd_notify, signals, locks, sockets, --check.

These run in the host's network namespace, where vigild's VRRP subsystem must not touch
anything: every config started here has no VRRP instances (Env.start checks it), so the
subsystems start and stop but no packet is sent and no address is added. VRRP itself is
tested in namespaces (tests/integration).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_harness import BAD_CONFIG, BASE_CONFIG, wait_for

from vigil.client import ApiClient, ApiUnreachable
from vigil.config import ConfigError
from vigil.daemon import StateDirError, StateDirLock
from vigil.subsystems import load_config

# No VRRP instances: safe to run in the host namespace (see the module docstring).
HOST_CONFIG = """\
global:
  router_id: unit1
  log_level: info
  allow_empty_config: true
"""


def assert_host_safe(path: Path) -> None:
    """Refuse to start vigild in the host namespace with a config that runs VRRP."""
    try:
        config = load_config(str(path))
    except ConfigError:
        return  # vigild refuses it before starting anything
    assert not config.vrrp_instances, "unit tests must not run VRRP in the host namespace"


class Env:
    """A scratch directory with configs, sockets and the vigild processes started in it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vgd", dir="/tmp"))
        self.config = self.dir / "vigil.yml"
        self.config.write_text(HOST_CONFIG)
        self.procs: list[subprocess.Popen[str]] = []
        self.notify: socket.socket | None = None

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def notify_socket(self) -> str:
        path = self.path("notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(path)
        return path

    def notifications(self, until: str, timeout: float = 15.0) -> list[str]:
        """Collect sd_notify lines until one equals `until`."""
        assert self.notify is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while until not in lines:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {until} from vigild; got {lines}")
            self.notify.settimeout(remaining)
            lines.extend(self.notify.recv(4096).decode().split("\n"))
        return lines

    def start(
        self,
        *args: str,
        socket_name: str = "run/vigil.sock",
        state: str = "state",
        env: dict[str, str] | None = None,
        stderr: Any = subprocess.PIPE,
    ) -> subprocess.Popen[str]:
        assert_host_safe(self.config)
        cmd = [
            sys.executable,
            "-m",
            "vigil.daemon",
            "--config",
            str(self.config),
            "--socket",
            self.path(socket_name),
            "--state-dir",
            self.path(state),
            *args,
        ]
        full_env = {
            k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")
        }
        full_env.update(env or {})
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=full_env)
        self.procs.append(proc)
        return proc

    def client(self, socket_name: str = "run/vigil.sock") -> ApiClient:
        return ApiClient(self.path(socket_name), timeout=5)

    def wait_ready(self, proc: subprocess.Popen[str], socket_name: str = "run/vigil.sock") -> None:
        client = self.client(socket_name)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"vigild exited with {proc.returncode}: {_stderr(proc)}")
            try:
                return client.get("/v1/health")[0] == 200
            except ApiUnreachable:
                return False

        wait_for(ready, timeout=20, what="vigild to become ready")

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        if self.notify:
            self.notify.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _stderr(proc: subprocess.Popen[str]) -> str:
    return proc.stderr.read() if proc.stderr and proc.poll() is not None else ""


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()


def _events(client: ApiClient, kind: str) -> list[dict[str, Any]]:
    status, body = client.get("/v1/events")
    assert status == 200
    return [ev for ev in body if ev["kind"] == kind]


def test_lifecycle_notify_reload_and_clean_stop(env: Env) -> None:
    notify = env.notify_socket()
    proc = env.start(env={"NOTIFY_SOCKET": notify})
    lines = env.notifications("READY=1")
    assert any(line.startswith("STATUS=running: router_id unit1") for line in lines)
    client = env.client()
    status, health = client.get("/v1/health")
    assert status == 200 and health["pid"] == proc.pid

    # files: state dir 0700 with the lock naming us, socket 0600 in a 0755 dir
    assert os.stat(env.path("state")).st_mode & 0o777 == 0o700
    assert Path(env.path("state/vigild.lock")).read_text().strip() == str(proc.pid)
    assert os.stat(env.path("run/vigil.sock")).st_mode & 0o777 == 0o600
    assert os.stat(env.path("run")).st_mode & 0o777 == 0o755

    # SIGHUP with a changed config: RELOADING=1 (+MONOTONIC_USEC), then READY=1
    env.config.write_text(HOST_CONFIG.replace("log_level: info", "log_level: debug"))
    proc.send_signal(signal.SIGHUP)
    lines = env.notifications("READY=1")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    reloaded = wait_for(lambda: _events(client, "config_reloaded"), what="reloaded event")
    assert reloaded[0]["data"]["diff"]["globals_changed"] is True
    assert client.get("/v1/config")[1]["config"]["global"]["log_level"] == "debug"

    # SIGHUP with a broken config: refused, old config kept, event + log lines
    env.config.write_text(BAD_CONFIG)
    proc.send_signal(signal.SIGHUP)
    env.notifications("READY=1")
    failed = wait_for(lambda: _events(client, "reload_failed"), what="reload_failed event")
    assert {i["path"] for i in failed[0]["data"]["issues"]} >= {"vrrp_instances[0].vrid"}
    assert client.get("/v1/config")[1]["config"]["global"]["log_level"] == "debug"
    assert client.get("/v1/health")[0] == 200

    rc, err = _stop(proc)
    assert rc == 0, err
    env.notifications("STOPPING=1")
    assert not os.path.exists(env.path("run/vigil.sock"))
    assert "vrrp_instances[0].vrid" in err  # every issue of the failed reload is logged
    assert "SIGTERM received" in err
    assert "agent: stopped" in err


def test_systemd_watchdog_pings(env: Env) -> None:
    notify = env.notify_socket()
    proc = env.start(env={"NOTIFY_SOCKET": notify, "WATCHDOG_USEC": "100000"})
    env.notifications("READY=1")
    env.notifications("WATCHDOG=1")
    env.notifications("WATCHDOG=1")  # repeated, not once
    assert _stop(proc)[0] == 0


def test_sigint_is_a_clean_stop_too(env: Env) -> None:
    proc = env.start()
    env.wait_ready(proc)
    rc, err = _stop(proc, signal.SIGINT)
    assert rc == 0, err
    assert not os.path.exists(env.path("run/vigil.sock"))


def test_second_agent_on_the_same_state_dir_is_refused(env: Env) -> None:
    first = env.start()
    env.wait_ready(first)
    second = env.start(socket_name="run/other.sock")
    _, err = second.communicate(timeout=20)
    assert second.returncode == 1
    assert f"in use by another vigild (pid {first.pid})" in err
    assert "--state-dir" in err
    assert env.client().get("/v1/health")[0] == 200  # the first one is undisturbed


def test_second_agent_on_the_same_socket_is_refused(env: Env) -> None:
    first = env.start()
    env.wait_ready(first)
    second = env.start(state="state2")
    _, err = second.communicate(timeout=20)
    assert second.returncode == 1
    assert f"in use by pid {first.pid}" in err
    assert env.client().get("/v1/health")[0] == 200


@pytest.mark.serial  # two agents on 1 s timers in one process: run alone in make test
def test_two_agents_side_by_side(env: Env) -> None:
    a = env.start()
    b = env.start(socket_name="run/b.sock", state="state-b")
    env.wait_ready(a)
    env.wait_ready(b, "run/b.sock")
    assert env.client().get("/v1/health")[1]["pid"] == a.pid
    assert env.client("run/b.sock").get("/v1/health")[1]["pid"] == b.pid
    assert _stop(a)[0] == 0
    assert env.client("run/b.sock").get("/v1/health")[0] == 200
    assert _stop(b)[0] == 0


def test_stale_socket_from_a_crash_is_replaced(env: Env) -> None:
    os.makedirs(env.path("run"))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(env.path("run/vigil.sock"))
    stale.close()  # the file stays, nobody listens: what a SIGKILLed agent leaves
    proc = env.start()
    env.wait_ready(proc)
    assert _stop(proc)[0] == 0


def test_crashed_agent_leaves_no_lock(env: Env) -> None:
    first = env.start()
    env.wait_ready(first)
    first.kill()
    first.wait(timeout=10)
    second = env.start()
    env.wait_ready(second)  # flock died with the process; the stale socket is cleared
    assert _stop(second)[0] == 0


def test_invalid_config_refuses_to_start(env: Env) -> None:
    env.config.write_text(BAD_CONFIG)
    proc = env.start()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "is invalid (2 issue(s))" in err
    assert "vrrp_instances[0].vrid" in err
    assert "prioirty" in err
    assert not os.path.exists(env.path("run/vigil.sock"))


def test_check_text_and_json(env: Env) -> None:
    env.config.write_text(BASE_CONFIG)  # --check only validates; nothing is started
    ok = subprocess.run(
        [sys.executable, "-m", "vigil.daemon", "--check", "--config", str(env.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0
    assert "OK (2 VRRP instances)" in ok.stdout
    env.config.write_text(BAD_CONFIG)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.daemon",
            "--check",
            "--format",
            "json",
            "-c",
            str(env.config),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)
    assert doc["valid"] is False
    assert "vrrp_instances[0].vrid" in {e["path"] for e in doc["errors"]}


def test_usage_error_exits_2(env: Env) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.daemon", "--api-allow-uid", "bob"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--api-allow-uid: 'bob' is not a numeric uid" in proc.stderr


def test_journald_format_without_timestamps(env: Env) -> None:
    log_path = env.path("stderr.log")
    with open(log_path, "w") as log_file:
        st = os.fstat(log_file.fileno())
        proc = env.start(env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stderr=log_file)
        env.wait_ready(proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    lines = Path(log_path).read_text().splitlines()
    started = (
        "<6>agent: started (router_id unit1, 0 BFD sessions, 0 VRRP instances, "
        "0 virtual servers, config "
    )
    assert started in "\n".join(lines)
    assert all(line.startswith("<") for line in lines), lines
    assert not any(line[3:4].isdigit() for line in lines)  # no timestamp after <N>


def test_state_dir_lock_in_process() -> None:
    d = Path(tempfile.mkdtemp(prefix="vgl", dir="/tmp"))
    try:
        first = StateDirLock(d / "s")
        first.acquire()
        second = StateDirLock(d / "s")
        with pytest.raises(
            StateDirError, match=f"in use by another vigild \\(pid {os.getpid()}\\)"
        ):
            second.acquire()
        first.release()
        second.acquire()  # free again once released
        second.release()
    finally:
        shutil.rmtree(d)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, port: int, path: str) -> tuple[int, str, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def test_metrics_listen_serves_metrics_only(env: Env) -> None:
    port = _free_port()
    proc = env.start("--metrics-listen", f"127.0.0.1:{port}")
    env.wait_ready(proc)
    status, ctype, body = _http("GET", port, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    assert "\nvigil_up 1.0\n" in body
    # The same registry as the socket's /metrics.
    sock_body = env.client().get("/metrics")[1]
    assert "vigil_build_info" in body and "vigil_build_info" in str(sock_body)
    # Nothing else: no API, no control actions, no other method.
    assert _http("GET", port, "/v1/status")[0] == 404
    assert _http("POST", port, "/v1/vrrp/maintenance")[0] == 404
    assert _http("POST", port, "/metrics")[0] == 405
    assert _stop(proc)[0] == 0
    with pytest.raises(OSError):
        _http("GET", port, "/metrics")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9650", "expected ADDRESS:PORT"),
        ("127.0.0.1:0", "port in 1..65535"),
        ("localhost:9650", "'localhost' is not an IP address"),
    ],
)
def test_metrics_listen_bad_value_is_refused(env: Env, value: str, expected: str) -> None:
    proc = env.start("--metrics-listen", value)
    rc, err = proc.wait(timeout=20), proc.stderr.read() if proc.stderr else ""
    assert rc == 2
    assert "--metrics-listen" in err and expected in err


def test_metrics_listen_port_in_use_fails_start(env: Env) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = env.start("--metrics-listen", f"127.0.0.1:{port}")
        rc, err = proc.wait(timeout=20), proc.stderr.read() if proc.stderr else ""
    assert rc == 1
    assert f"cannot listen for metrics on 127.0.0.1 port {port}" in err


# ---------------------------------------------------------------- the start plan's hand-over

# vigil.daemon.main with a stand-in for what vigil.faststart hands over: its held lock, and
# undo() (which says it ran; the real one deletes the plan's IPVS services, tested in the
# VM). In a child process: main() sets up logging and prometheus_client for the process.
_EARLY = """
import sys
from vigil.daemon import main
from vigil.statedir import StateDirLock

class Early:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.lock = StateDirLock(state_dir)
        self.lock.acquire()

    def describe(self):
        return "start plan: 1 IPVS service(s) with 1 real server(s) programmed in 0.01 s"

    def undo(self):
        print("UNDONE", file=sys.stderr)
        return "start plan: the agent is not starting; deleted the 1 service(s) it added"

state_dir, *argv = sys.argv[1:]
try:
    code = main([*argv, "--state-dir", state_dir], early=Early(state_dir))
except SystemExit as exc:
    code = exc.code
StateDirLock(state_dir).acquire()  # the agent let it go
sys.exit(code)
"""


def _with_early(state_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _EARLY, str(state_dir), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_invalid_config_takes_the_start_plan_back_and_frees_the_lock(tmp_path: Path) -> None:
    config = tmp_path / "vigil.yml"
    config.write_text(BAD_CONFIG)
    done = _with_early(tmp_path / "state", "--config", str(config))
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("UNDONE") == 1
    assert "deleted the 1 service(s) it added" in done.stderr


def test_a_bad_argument_takes_the_start_plan_back(tmp_path: Path) -> None:
    done = _with_early(tmp_path / "state", "--log-level", "loud")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("UNDONE") == 1
    assert "invalid choice: 'loud'" in done.stderr
