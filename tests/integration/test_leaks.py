"""The lab leaves nothing behind: failing, interrupted, killed and leaking test runs.

Each case runs a child pytest (same plugin, its own run id) on a small test file and then
checks, from outside, that the namespaces and processes the child created are gone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.lab import wait_for
from tests.lab.lab import netns_exists
from tests.lab.probe import REPO_ROOT
from tests.lab.registry import RUN_ROOT, proc_alive

CHILD_TESTS = textwrap.dedent(
    """
    import json
    import os
    import subprocess
    from pathlib import Path

    import pytest

    from tests.lab import Lab, wait_for

    pytestmark = pytest.mark.integration
    INFO = Path(os.environ["LEAK_INFO"])


    def build(lab):
        lab.add_switch()
        lab.add_namespace("n1")
        lab.connect("n1", addrs=["10.99.0.11/24"])
        proc = lab.spawn("n1", ["sh", "-c", "sleep 300 & exec sleep 301"])
        wait_for(lambda: len(proc.members()) == 2, what="both sleeps")
        pids = {pid: open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]
                for pid in proc.members()}
        INFO.write_text(json.dumps({
            "pids": pids,
            "namespaces": [n.ns for n in lab.nodes.values()],
            "shortdir": str(lab.shortdir),
        }))


    def test_fails(lab):
        build(lab)
        assert False, "deliberate failure"


    def test_waits_for_a_signal(lab):
        build(lab)
        wait_for(lambda: False, timeout=60, what="the parent's signal")


    def test_leaks_an_unclosed_lab(tmp_path):
        build(Lab(tmp_path / "leak"))


    def test_leaks_a_namespace_outside_the_registry(lab):
        lab.add_namespace("n0")
        ns = f"{lab.registry.prefix}-stray"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        INFO.write_text(json.dumps({"pids": {}, "namespaces": [ns], "shortdir": ""}))
    """
)


class Child:
    """A child pytest run of CHILD_TESTS with a known run id."""

    def __init__(self, tmp_path: Path, select: str) -> None:
        self.run_id = fresh_run_id()
        self.info = tmp_path / "info.json"
        test_file = tmp_path / "test_child.py"
        test_file.write_text(CHILD_TESTS)
        env = dict(os.environ)
        env.update(
            VIGIL_LAB_RUN_ID=self.run_id,
            LEAK_INFO=str(self.info),
            PYTHONPATH=str(REPO_ROOT),
        )
        argv = [
            sys.executable, "-m", "pytest", "-p", "tests.lab.pytest_plugin",
            "-p", "no:cacheprovider", "-c", str(REPO_ROOT / "pytest.ini"),
            "--rootdir", str(REPO_ROOT), "--basetemp", str(tmp_path / "base"),
            str(test_file), "-k", select,
        ]  # fmt: skip
        self.log = tmp_path / "child.log"
        with open(self.log, "wb") as log:
            self.popen = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait(self, timeout: float = 90) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"child pytest hung:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def created(self) -> dict[str, Any]:
        return dict(json.loads(self.info.read_text()))

    def wait_built(self) -> dict[str, Any]:
        wait_for(
            lambda: self.info.exists() or self.popen.poll() is not None,
            timeout=30,
            what="the child test to build its lab",
        )
        assert self.info.exists(), f"child exited early:\n{self.output()}"
        return self.created()

    def assert_nothing_left(self) -> None:
        created = self.created()
        assert created["namespaces"], created
        for ns in created["namespaces"]:
            assert not netns_exists(ns), f"namespace {ns} left behind\n{self.output()}"
        for pid, start in created["pids"].items():
            assert not proc_alive(int(pid), int(start)), f"process {pid} left behind"
        if created["shortdir"]:
            assert not Path(created["shortdir"]).exists()
        assert not (RUN_ROOT / self.run_id).exists(), "the run registry was not removed"
        stray = [n for n in os.listdir("/run/netns") if n.startswith(f"vgl{self.run_id}")]
        assert stray == []


def fresh_run_id() -> str:
    for _ in range(100):
        run_id = secrets.token_hex(2)
        if not (RUN_ROOT / run_id).exists():
            return run_id
    raise AssertionError("no free run id")


def test_a_failing_test_leaves_nothing_and_shows_the_lab_logs(tmp_path: Path) -> None:
    child = Child(tmp_path, "test_fails")
    assert child.wait() == pytest.ExitCode.TESTS_FAILED, child.output()
    out = child.output()
    assert "deliberate failure" in out
    assert "lab log n1/sh (call)" in out
    child.assert_nothing_left()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    child = Child(tmp_path, "test_waits_for_a_signal")
    created = child.wait_built()
    assert all(netns_exists(ns) for ns in created["namespaces"])
    child.popen.send_signal(sig)
    assert child.wait() == pytest.ExitCode.INTERRUPTED, child.output()
    child.assert_nothing_left()


def test_cleanup_tool_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    child = Child(tmp_path, "test_waits_for_a_signal")
    created = child.wait_built()
    child.popen.send_signal(signal.SIGKILL)
    child.wait()
    # A SIGKILLed run cannot clean up: its resources are still there ...
    assert all(netns_exists(ns) for ns in created["namespaces"])
    assert any(proc_alive(int(p), int(s)) for p, s in created["pids"].items())
    # ... until the cleanup tool, which knows its owner is dead, removes them.
    res = subprocess.run(
        [sys.executable, "-m", "tests.lab.cleanup"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"run {child.run_id}: owner" in res.stdout
    child.assert_nothing_left()


def test_cleanup_tool_leaves_a_live_run_alone(lab: Any) -> None:
    node = lab.add_namespace("n1")
    res = subprocess.run(
        [sys.executable, "-m", "tests.lab.cleanup"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert f"run {lab.registry.run_id}: live" in res.stdout
    assert netns_exists(node.ns)


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ("test_leaks_an_unclosed_lab", "was not closed by its test"),
        ("test_leaks_a_namespace_outside_the_registry", "(not in the registry)"),
    ],
)
def test_session_fails_when_a_test_leaks(tmp_path: Path, select: str, message: str) -> None:
    child = Child(tmp_path, select)
    code = child.wait()
    out = child.output()
    assert "1 passed" in out, out
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert f"vigil lab run {child.run_id} left resources behind" in out
    assert message in out
    child.assert_nothing_left()


def test_without_root_lab_tests_fail_with_the_reason_instead_of_skipping() -> None:
    work = Path(tempfile.mkdtemp(prefix="vigil-nonroot-"))
    try:
        os.chmod(work, 0o777)
        test_file = work / "test_child.py"
        test_file.write_text(CHILD_TESTS)
        os.chmod(test_file, 0o644)
        res = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-m", "pytest", "-p", "tests.lab.pytest_plugin",
             "-p", "no:cacheprovider", "-c", str(REPO_ROOT / "pytest.ini"),
             "--rootdir", str(REPO_ROOT), "--basetemp", str(work / "base"),
             str(test_file), "-k", "test_fails", "-rA"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "LEAK_INFO": str(work / "i")},
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = res.stdout + res.stderr
    assert res.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "vigil integration tests need root" in out
    assert "skipped" not in out
