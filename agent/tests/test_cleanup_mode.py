"""`vigild --cleanup --state-dir DIR`: the ExecStopPost clean-up, without root.

Nothing here may touch a real address: the journals name interfaces that do not exist in
this namespace, which the clean-up must report as "already gone" (the VIP vanished with its
interface) and then forget. Removing real addresses is tested in a namespace
(tests/integration/test_cleanup_mode.py).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from ipaddress import ip_interface
from pathlib import Path

from vigil.daemon import StateDirLock, main, run_cleanup
from vigil.net.netlink import RouteSpec
from vigil.vrrp.journal import JOURNAL_NAME, Journal, JournalEntry

NO_DEV = "vglnodev0"  # a name no test host has


def write_journal(state_dir: Path) -> Journal:
    journal = Journal(state_dir)
    entry = JournalEntry()
    entry.addresses.append((NO_DEV, ip_interface("10.99.0.100/24")))
    entry.routes.append(RouteSpec.parse(to="10.98.0.0/16", via="10.99.0.254", dev=NO_DEV))
    journal.record("VI_1", entry)
    return journal


def run(state_dir: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = run_cleanup(state_dir, out)
    return code, out.getvalue()


def test_a_missing_state_dir_is_nothing_to_do(tmp_path: Path) -> None:
    code, text = run(tmp_path / "absent")
    assert code == 0
    assert "does not exist" in text
    assert not (tmp_path / "absent").exists(), "--cleanup must not create the state dir"


def test_a_state_dir_without_journal_is_nothing_to_do(tmp_path: Path) -> None:
    code, text = run(tmp_path)
    assert code == 0
    assert "nothing to clean up" in text
    assert not (tmp_path / JOURNAL_NAME).exists()


def test_entries_whose_interface_is_gone_are_reported_and_forgotten(tmp_path: Path) -> None:
    write_journal(tmp_path)
    code, text = run(tmp_path)
    assert code == 0, text
    assert f"(VI_1) already gone: VIP 10.99.0.100/24 on {NO_DEV}" in text
    assert "(VI_1) already gone: route 10.98.0.0/16" in text
    data = json.loads((tmp_path / JOURNAL_NAME).read_text())
    assert data["entries"] == {}
    # A second run finds nothing left.
    code, text = run(tmp_path)
    assert code == 0 and "nothing to clean up" in text


def test_a_running_agent_holding_the_state_dir_is_left_alone(tmp_path: Path) -> None:
    write_journal(tmp_path)
    before = (tmp_path / JOURNAL_NAME).read_text()
    holder = StateDirLock(tmp_path)
    holder.acquire()
    try:
        code, text = run(tmp_path)
    finally:
        holder.release()
    assert code == 1
    assert "refusing" in text and "in use by another vigild" in text
    assert (tmp_path / JOURNAL_NAME).read_text() == before


def test_an_unreadable_journal_is_treated_as_empty(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_NAME).write_text("{not json")
    code, text = run(tmp_path)
    assert code == 0
    assert "nothing to clean up" in text


def test_main_parses_cleanup_without_reading_any_config(tmp_path: Path) -> None:
    write_journal(tmp_path)
    # The default config path does not exist here: --cleanup must not need it.
    assert main(["--cleanup", "--state-dir", str(tmp_path), "--config", "/nonexistent"]) == 0
    assert json.loads((tmp_path / JOURNAL_NAME).read_text())["entries"] == {}


def test_the_console_script_exits_0_and_prints_what_it_did(tmp_path: Path) -> None:
    write_journal(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.daemon", "--cleanup", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "already gone: VIP 10.99.0.100/24" in proc.stdout
