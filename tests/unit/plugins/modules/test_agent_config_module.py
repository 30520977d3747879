# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The target side of vigil.ha.agent_config: atomic write, check mode, diff, validation with
the real ``vigild --check``, and reload + wait against a real vigild on a socket in /tmp.

The agent here runs without VRRP instances (a reload of global settings and trackers), so
it touches no network and needs no root; instance changes are covered by the namespace test
tests/integration/test_ansible_agent_config.py.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.vigil.ha.plugins.module_utils._api import (
    ApiClient,
    ApiUnreachable,
)
from ansible_collections.vigil.ha.plugins.modules import agent_config as mod


def _find_vigild() -> str | None:
    """The vigild program: beside this Python, on PATH, or a wrapper running ``vigil.daemon``."""
    beside = Path(sys.executable).parent / "vigild"
    if beside.exists():
        return str(beside)
    found = shutil.which("vigild")
    if found:
        return found
    try:
        import vigil.daemon  # noqa: F401
    except ImportError:
        return None
    wrapper = Path(tempfile.mkdtemp(prefix="vglp1-bin-")) / "vigild"
    atexit.register(shutil.rmtree, wrapper.parent, True)
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m vigil.daemon "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


VIGILD = _find_vigild()
needs_vigild = pytest.mark.skipif(
    VIGILD is None, reason="the vigil agent is not installed in this Python environment"
)

CONFIG_A = "global:\n  log_level: info\n  router_id: t1\n  allow_empty_config: true\n"
CONFIG_B = "global:\n  log_level: debug\n  router_id: t1\n  allow_empty_config: true\n"


def normalized(text: str) -> dict[str, Any]:
    """What GET /v1/config will show for ``text`` (the controller computes this)."""
    import yaml

    agent_src = str(Path(__file__).resolve().parents[4] / "agent" / "src")
    if agent_src not in sys.path:
        sys.path.append(agent_src)  # an installed vigil wins; else the collection's sources
    from vigil.subsystems import validate_data

    return json.loads(json.dumps(validate_data(yaml.safe_load(text)).to_dict(redact=True)))


def run_module(args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    full = {"cluster": {}, "vigild_path": VIGILD or "/nonexistent/vigild", **args}
    with patch_module_args(full), pytest.raises(SystemExit):
        mod.main()
    out = capsys.readouterr().out
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (Unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vglp1-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Vigild:
    """A real vigild on a socket in ``workdir``, reading ``config``."""

    def __init__(self, workdir: Path, config: Path) -> None:
        self.socket = str(workdir / "api.sock")
        self.log = open(workdir / "vigild.log", "w+")  # noqa: SIM115
        assert VIGILD is not None
        self.proc = subprocess.Popen(
            [
                VIGILD,
                "--config",
                str(config),
                "--socket",
                self.socket,
                "--state-dir",
                str(workdir / "state"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = ApiClient(self.socket, timeout=5.0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.text()
            with contextlib.suppress(ApiUnreachable):
                if self.client.get("/v1/health")[0] == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"vigild did not become ready:\n{self.text()}")

    def text(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def vigild_agent(workdir: Path) -> Iterator[Vigild]:
    dest = workdir / "vigil.yml"
    dest.write_text(CONFIG_A)
    handle = Vigild(workdir, dest)
    yield handle
    handle.stop()


# ---------------------------------------------------------------------------- pure helpers


def test_matches_compares_common_keys_and_whole_lists() -> None:
    assert mod.matches({"a": 1, "new": 2}, {"a": 1})
    assert not mod.matches({"a": 1}, {"a": 2})
    assert not mod.matches({"l": [1, 2]}, {"l": [1]})
    assert mod.matches({"l": [{"x": 1}]}, {"l": [{"x": 1, "y": 0}]})
    assert not mod.matches({"b": True}, {"b": 1})


def test_instance_diff_sorts_instances_by_fate() -> None:
    old = {"vrrp_instances": [{"name": "A", "priority": 1}, {"name": "B"}, {"name": "C"}]}
    new = {"vrrp_instances": [{"name": "A", "priority": 2}, {"name": "B"}, {"name": "D"}]}
    assert mod.instance_diff(new, old) == {
        "added": ["D"],
        "changed": ["A"],
        "removed": ["C"],
        "unchanged": ["B"],
    }


def plan(master: str, preempt: bool = True) -> dict[str, Any]:
    return {
        "host": "lb1",
        "instances": {
            "VI_1": {
                "priority": 150 if master == "lb1" else 100,
                "preempt": preempt,
                "priorities": {"lb1": 150 if master == "lb1" else 100, "lb2": 140},
                "preempts": {"lb1": preempt, "lb2": preempt},
                "master": master,
            }
        },
    }


def test_vip_moves_away_from_a_master_that_loses_the_highest_priority() -> None:
    moves = mod.vip_moves(plan("lb2"), [{"name": "VI_1", "state": "MASTER"}], [])
    assert moves == [
        {
            "instance": "VI_1",
            "from": "lb1",
            "to": "lb2",
            "reason": "lb2 gets the highest priority (140) and preempts",
        }
    ]
    assert (
        mod.vip_moves(plan("lb2", preempt=False), [{"name": "VI_1", "state": "MASTER"}], []) == []
    )
    assert mod.vip_moves(plan("lb1"), [{"name": "VI_1", "state": "MASTER"}], []) == []


def test_vip_moves_here_and_away_with_a_removed_instance() -> None:
    state = [{"name": "VI_1", "state": "BACKUP", "master_address": "10.0.0.12"}]
    assert mod.vip_moves(plan("lb1"), state, [])[0]["to"] == "lb1"
    gone = mod.vip_moves({"host": "lb1"}, [{"name": "VI_9", "state": "MASTER"}], ["VI_9"])
    assert gone == [
        {
            "instance": "VI_9",
            "from": "lb1",
            "to": None,
            "reason": "the instance is removed here; its VIPs are removed",
        }
    ]


# ---------------------------------------------------------------------------- the file


def test_without_content_it_says_to_use_the_action(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_module({"dest": "/nonexistent/x.yml"}, capsys)
    assert result["failed"] is True
    assert "run it as a task (its action plugin sets content)" in result["msg"]


@needs_vigild
def test_check_mode_predicts_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = workdir / "etc" / "vigil.yml"
    args = {
        "dest": str(dest),
        "content": CONFIG_A,
        "socket": str(workdir / "none.sock"),
        "_ansible_check_mode": True,
        "_ansible_diff": True,
    }
    result = run_module(args, capsys)
    assert result["changed"] is True and result["validated"] is True
    assert result["diff"]["before"] == "" and result["diff"]["after"] == CONFIG_A
    assert not dest.exists() and not dest.parent.exists()
    assert result["agent"]["running"] is False
    bad = CONFIG_A + "vrrp_scripts:\n  chk:\n    script: /nonexistent/check-haproxy\n"
    refused = run_module(dict(args, content=bad), capsys)
    assert refused["failed"] is True and "vrrp_scripts.chk.script" in refused["msg"]
    assert not dest.parent.exists()


CONFIG_LB = (
    "virtual_servers:\n  - address: 10.62.0.100\n    port: 80\n    real_servers:\n"
    "      - address: 10.62.1.11\n        port: 80\n"
)


@needs_vigild
def test_the_validation_leaves_the_start_plan_in_the_state_dir(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With state_dir, the host's ``vigild --check`` leaves the new config's IPVS start plan
    where the agent's next start looks; in check mode it writes nothing there."""
    import hashlib

    normalized(CONFIG_A)  # (puts the agent's sources on the path if it is not installed)
    from vigil.ipvs.startplan import CHECKED_PLAN_FILE, current_key, written_key

    dest, state = workdir / "etc" / "vigil.yml", workdir / "state"
    state.mkdir()
    args = {
        "dest": str(dest),
        "content": CONFIG_LB,
        "socket": str(workdir / "none.sock"),
        "state_dir": str(state),
    }
    preview = run_module(dict(args, _ansible_check_mode=True), capsys)
    assert preview["validated"] is True and os.listdir(state) == []
    result = run_module(args, capsys)
    assert result["changed"] is True and result["validated"] is True
    assert os.listdir(state) == [CHECKED_PLAN_FILE]
    key = current_key(state, hashlib.sha256(dest.read_bytes()).hexdigest())[0]
    assert written_key(state, CHECKED_PLAN_FILE) == key


@needs_vigild
def test_apply_writes_atomically_with_mode_and_is_idempotent(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = workdir / "etc" / "vigil.yml"
    args = {"dest": str(dest), "content": CONFIG_A, "socket": str(workdir / "none.sock")}
    first = run_module(args, capsys)
    assert first["changed"] is True and first["validated"] is True
    assert dest.read_text() == CONFIG_A
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(dest.parent)) == ["vigil.yml"]  # no temp file left
    second = run_module(args, capsys)
    assert second["changed"] is False and second["validated"] is False
    dest.chmod(0o644)
    third = run_module(args, capsys)
    assert third["changed"] is True
    assert oct(dest.stat().st_mode & 0o777) == "0o600"


@needs_vigild
def test_backup_keeps_the_previous_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = workdir / "vigil.yml"
    dest.write_text(CONFIG_A)
    args = {
        "dest": str(dest),
        "content": CONFIG_B,
        "backup": True,
        "socket": str(workdir / "none.sock"),
    }
    result = run_module(args, capsys)
    assert result["changed"] is True
    assert Path(result["backup_file"]).read_text() == CONFIG_A
    assert dest.read_text() == CONFIG_B


@needs_vigild
def test_vigild_check_on_the_target_refuses_and_keeps_the_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A program that only the target can see missing: the controller could not know."""
    dest = workdir / "vigil.yml"
    dest.write_text(CONFIG_A)
    bad = CONFIG_A + "vrrp_scripts:\n  chk:\n    script: /nonexistent/check-haproxy\n"
    result = run_module({"dest": str(dest), "content": bad, "socket": "/nonexistent.sock"}, capsys)
    assert result["failed"] is True
    assert (
        f"vigild --check on this host rejected the new config; {dest} is unchanged"
        in (result["msg"])
    )
    assert "vrrp_scripts.chk.script" in result["msg"]
    assert "/nonexistent/check-haproxy" in result["msg"]
    assert result["validation_errors"][0]["file"] == str(dest)
    assert dest.read_text() == CONFIG_A
    assert sorted(os.listdir(workdir)) == ["vigil.yml"]


def test_a_missing_vigild_names_the_option(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {
        "dest": str(workdir / "vigil.yml"),
        "content": CONFIG_A,
        "vigild_path": str(workdir / "no-vigild"),
        "socket": "/nonexistent.sock",
    }
    result = run_module(args, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith(f"vigild_path: {workdir}/no-vigild is not an executable")
    assert not (workdir / "vigil.yml").exists()


# ---------------------------------------------------------------------------- the agent


@needs_vigild
def test_reload_applies_and_waits_for_the_running_config(
    vigild_agent: Vigild, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = workdir / "vigil.yml"
    args = {
        "dest": str(dest),
        "content": CONFIG_B,
        "expected": normalized(CONFIG_B),
        "socket": vigild_agent.socket,
        "wait_timeout": 10,
    }
    result = run_module(args, capsys)
    assert result["changed"] is True and result["reloaded"] is True
    assert result["agent"] == {
        "running": True,
        "socket": vigild_agent.socket,
        "config_source": str(dest),
    }
    status, body = vigild_agent.client.get("/v1/config")
    assert status == 200 and body["config"]["global"]["log_level"] == "debug"
    again = run_module(args, capsys)
    assert again["changed"] is False and again["reloaded"] is False


@needs_vigild
def test_check_mode_with_a_running_agent_changes_nothing(
    vigild_agent: Vigild, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = workdir / "vigil.yml"
    args = {
        "dest": str(dest),
        "content": CONFIG_B,
        "expected": normalized(CONFIG_B),
        "socket": vigild_agent.socket,
        "_ansible_check_mode": True,
    }
    result = run_module(args, capsys)
    assert result["changed"] is True and result["reloaded"] is False
    assert dest.read_text() == CONFIG_A
    assert vigild_agent.client.get("/v1/config")[1]["config"]["global"]["log_level"] == "info"


@needs_vigild
def test_a_stale_agent_is_reloaded_even_when_the_file_is_current(
    vigild_agent: Vigild, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file was written by an earlier run whose reload never happened."""
    dest = workdir / "vigil.yml"
    dest.write_text(CONFIG_B)
    args = {
        "dest": str(dest),
        "content": CONFIG_B,
        "expected": normalized(CONFIG_B),
        "socket": vigild_agent.socket,
    }
    result = run_module(args, capsys)
    assert result["changed"] is True and result["reloaded"] is True
    assert vigild_agent.client.get("/v1/config")[1]["config"]["global"]["log_level"] == "debug"


@needs_vigild
def test_an_agent_running_another_file_is_not_reloaded(
    vigild_agent: Vigild, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = workdir / "other.yml"
    args = {
        "dest": str(other),
        "content": CONFIG_B,
        "expected": normalized(CONFIG_B),
        "socket": vigild_agent.socket,
    }
    result = run_module(args, capsys)
    assert result["changed"] is True and result["reloaded"] is False
    assert result["reload_skipped"] == (
        f"the agent at {vigild_agent.socket} runs {workdir / 'vigil.yml'}, not {other}; "
        "it was not reloaded"
    )
    assert vigild_agent.client.get("/v1/config")[1]["config"]["global"]["log_level"] == "info"
