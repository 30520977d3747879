"""The benchmarks still run: one failover row for one round, a tiny CPU window, the plot.

No timing is asserted (the numbers belong in docs/benchmarks.md, not in a test); what is
asserted is that each implementation produced a measurement and what every measurement
must show: a clean stop costs probes, the VIP moved, the daemons used memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import cpu, failover, plot

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _keep_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks put their vigil snapshot first on PYTHONPATH (for the daemons they
    start); in this shared test process that must not outlive the test, or every later
    test would run that snapshot instead of the tree under test."""
    if "PYTHONPATH" in os.environ:
        monkeypatch.setenv("PYTHONPATH", os.environ["PYTHONPATH"])
    else:
        monkeypatch.delenv("PYTHONPATH", raising=False)


def test_failover_one_row_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "failover.json"
    code = failover.main(
        [
            "--rounds", "1", "--rows", "stop-v3-0.1s-ipv4", "--seed", "7",
            "--json", str(out), "--workdir", str(tmp_path / "work"), "--vigil-rev", "worktree",
        ]
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("python -m bench.failover --rounds 1")
    samples = doc["samples"]
    assert {s["impl"] for s in samples} == {"keepalived", "vigil"}
    for s in samples:
        assert "error" not in s, s.get("error")
        assert s["lost"] > 0 and s["outage_ms"] > 0, f"a clean stop cost no probes: {s}"
        assert s["vip_moved_ms"] > 0
        # The probe grid was anchored to the injection: its next probe is within one
        # interval after it (the measured offset, not a speed).
        assert 0.0 <= s["probe_grid_ms"] < 10.0, s
        assert s["probe_realtime"] == "SCHED_FIFO", s  # the client is never delayed
    (row,) = doc["summary"]
    assert row["row"] == "stop-v3-0.1s-ipv4"
    assert row["keepalived"]["rounds"] == row["vigil"]["rounds"] == 1
    assert row["ratio"] is not None
    lost_v, lost_k = row["vigil"]["median_lost"], row["keepalived"]["median_lost"]
    assert row["vigil_at_most_keepalived_lost"] is (lost_v <= lost_k)
    for impl in ("keepalived", "vigil"):
        assert 0 <= row[impl]["late_edge_rounds"] <= 1, row[impl]

    png = plot.plot(doc, tmp_path / "failover.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_tiny_window(tmp_path: Path) -> None:
    out = tmp_path / "cpu.json"
    argv = [
        "--instances", "2", "--seconds", "2", "--json", str(out),
        "--workdir", str(tmp_path), "--vigil-rev", "worktree",
    ]  # fmt: skip
    code = cpu.main(argv)
    assert code == 0
    doc = json.loads(out.read_text())
    assert [r["impl"] for r in doc["results"]] == ["keepalived", "vigil"]
    for r in doc["results"]:
        for role in ("master", "backup"):
            assert r[role]["processes"] >= 1
            assert r[role]["peak_rss_mb"] > 1.0, r
            # Two daemons that ran for 2 s used some CPU: the scheduler's count saw it.
            assert r[role]["cpu_s"] > 0.0, r
            assert r[role]["cpu_ticks"] >= 0
    assert set(doc["verdict"]) >= {"master_cpu_at_most_2x", "backup_rss_at_most_60mb"}
