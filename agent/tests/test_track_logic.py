"""Tracker logic without I/O: weight rules, rise/fall, track-file values, process matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.track.base import Effect, RiseFall, Tracker, TrackerState, file_effect, weight_effect
from vigil.track.config import TrackProcessConfig
from vigil.track.file import parse_value
from vigil.track.interface import InterfaceTracker
from vigil.track.process import ProcessMatcher, ProcInfo, Quorum, params_match, scan_proc

# ------------------------------------------------------------------ weights


@pytest.mark.parametrize(
    ("ok", "weight", "reverse", "expected"),
    [
        # weight 0: FAULT while failed; reversed, FAULT while OK
        (True, 0, False, Effect()),
        (False, 0, False, Effect(fault=True)),
        (True, 0, True, Effect(fault=True)),
        (False, 0, True, Effect()),
        # negative: subtracted while failed
        (True, -20, False, Effect()),
        (False, -20, False, Effect(delta=-20)),
        # positive: added while OK
        (True, 10, False, Effect(delta=10)),
        (False, 10, False, Effect()),
        # reversed: negative subtracted while OK, positive added while failed
        (True, -20, True, Effect(delta=-20)),
        (False, -20, True, Effect()),
        (True, 10, True, Effect()),
        (False, 10, True, Effect(delta=10)),
    ],
)
def test_weight_rules_match_the_docs(
    ok: bool, weight: int, reverse: bool, expected: Effect
) -> None:
    assert weight_effect(ok, weight, reverse) == expected


@pytest.mark.parametrize(
    ("value", "weight", "reverse", "expected"),
    [
        (0, 0, False, Effect()),
        (3, 0, False, Effect(fault=True)),
        (0, 0, True, Effect(fault=True)),
        (3, 0, True, Effect()),
        (5, 1, False, Effect(delta=5)),
        (-3, 20, False, Effect(delta=-60)),
        (-3, 20, True, Effect(delta=60)),
        (2, -10, False, Effect(delta=-20)),
        (-253, 1, False, Effect(delta=-253)),
        (-254, 1, False, Effect(fault=True)),
        (100, 254, False, Effect(delta=253)),
        (-1, 254, False, Effect(fault=True)),
    ],
)
def test_track_file_value_times_weight(
    value: int, weight: int, reverse: bool, expected: Effect
) -> None:
    assert file_effect(value, weight, reverse) == expected


def test_effect_describes_itself() -> None:
    assert "FAULT" in Effect(fault=True).describe()
    assert Effect(delta=-20).describe() == "priority -20"
    assert Effect(delta=5).describe() == "priority +5"


@pytest.mark.parametrize(
    ("text", "value"),
    [("5\n", 5), ("  -12 trailing", -12), ("+7", 7), ("", None), ("abc", None), ("0x10", 0)],
)
def test_track_file_parsing(text: str, value: int | None) -> None:
    assert parse_value(text) == value


# ------------------------------------------------------------------ rise / fall


def test_fall_failures_in_a_row_then_rise_successes() -> None:
    rf = RiseFall(rise=2, fall=3)
    assert rf.ok
    assert [rf.record(False), rf.record(False)] == [False, False]
    assert rf.ok, "two failures with fall=3 must not fail yet"
    assert rf.record(True) is False  # a success resets the failure count
    assert [rf.record(False), rf.record(False)] == [False, False]
    assert rf.record(False) is True
    assert not rf.ok and rf.failures == 3
    assert rf.record(True) is False and not rf.ok
    assert rf.record(False) is False  # resets successes
    assert rf.record(True) is False
    assert rf.record(True) is True and rf.ok


def test_init_fail_starts_failed_and_needs_rise() -> None:
    rf = RiseFall(rise=1, fall=1, initially_ok=False)
    assert not rf.ok
    assert rf.record(False) is False
    assert rf.record(True) is True and rf.ok


def test_rise_fall_reject_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RiseFall(rise=0, fall=1)


# ------------------------------------------------------------------ tracker base


def test_tracker_notifies_on_change_only_and_survives_a_bad_listener() -> None:
    tracker = InterfaceTracker("eth1")
    seen: list[TrackerState] = []

    def bad(_t: Tracker) -> None:
        raise RuntimeError("listener bug")

    tracker.subscribe(bad)
    unsubscribe = tracker.subscribe(lambda t: seen.append(t.state))
    tracker.link_changed(None)  # already OK: no notification
    tracker.link_changed("interface eth1 has no carrier")
    tracker.link_changed("interface eth1 is administratively down")  # still FAILED
    assert seen == [TrackerState.FAILED]
    assert tracker.reason == "interface eth1 is administratively down"
    unsubscribe()
    tracker.link_changed(None)
    assert seen == [TrackerState.FAILED] and tracker.ok
    assert tracker.key == "interface:eth1"
    assert tracker.view()["state"] == "OK"


# ------------------------------------------------------------------ processes


def proc_cfg(**kw: object) -> TrackProcessConfig:
    base: dict[str, object] = {"name": "p", "process": "haproxy"}
    base.update(kw)
    return TrackProcessConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wanted", "actual", "mode", "expected"),
    [
        (("-f", "/etc/h.cfg"), ("-f", "/etc/h.cfg"), "exact", True),
        (("-f", "/etc/h.cfg"), ("-f", "/etc/h.cfg", "-D"), "exact", False),
        (("-f",), ("-f", "/etc/h.cfg"), "partial", True),
        (("-f", "/etc/h"), ("-f", "/etc/h.cfg"), "partial", False),
        (("-f", "/etc/h"), ("-f", "/etc/h.cfg"), "initial", True),
        (("-x", "/etc/h"), ("-f", "/etc/h.cfg"), "initial", False),
        (("-f", "/etc/h.cfg"), ("-f",), "partial", False),
    ],
)
def test_param_match_modes(
    wanted: tuple[str, ...], actual: tuple[str, ...], mode: str, expected: bool
) -> None:
    assert params_match(wanted, actual, mode) is expected


def test_param_match_unknown_mode_is_named() -> None:
    with pytest.raises(ValueError, match="param_match"):
        params_match(("a",), ("a",), "fuzzy")


def test_process_matcher_by_name_parameters_and_full_command() -> None:
    by_name = ProcessMatcher(proc_cfg())
    assert by_name.matches(ProcInfo(1, "haproxy"))
    assert not by_name.matches(ProcInfo(1, "haproxy-x"))
    assert not by_name.wants_argv("haproxy")

    with_params = ProcessMatcher(proc_cfg(parameters="-f /etc/h.cfg"))
    assert with_params.wants_argv("haproxy") and not with_params.wants_argv("bash")
    assert with_params.matches(ProcInfo(1, "haproxy", ("haproxy", "-f", "/etc/h.cfg")))
    assert not with_params.matches(ProcInfo(1, "haproxy", ("haproxy", "-f", "/x")))
    assert not with_params.matches(ProcInfo(1, "haproxy", None))

    full = ProcessMatcher(proc_cfg(process="/usr/sbin/haproxy -f /etc/h.cfg", full_command=True))
    assert full.wants_argv("anything")
    assert full.matches(ProcInfo(1, "haproxy", ("/usr/sbin/haproxy", "-f", "/etc/h.cfg")))
    assert not full.matches(ProcInfo(1, "haproxy", ("/usr/sbin/haproxy",)))
    assert not full.matches(ProcInfo(2, "kworker/0:1", ()))

    long_name = ProcessMatcher(proc_cfg(process="a-very-long-process-name"))
    assert long_name.matches(ProcInfo(1, "a-very-long-pro"))  # comm is cut at 15


def test_quorum_and_quorum_max() -> None:
    q = Quorum(proc_cfg(quorum=2, quorum_max=3), TrackerState.OK)
    assert q.target(1) is TrackerState.FAILED
    assert q.target(2) is TrackerState.OK
    assert q.target(3) is TrackerState.OK
    assert q.target(4) is TrackerState.FAILED
    assert q.observe(1, now=0.0) is TrackerState.FAILED
    assert q.observe(2, now=1.0) is TrackerState.OK


def test_delay_holds_a_change_and_a_recovery_cancels_it() -> None:
    q = Quorum(proc_cfg(delay=5.0), TrackerState.OK)
    assert q.observe(0, now=10.0) is None
    assert q.deadline() == 15.0
    assert q.observe(1, now=12.0) is None  # came back: nothing happens
    assert q.deadline() is None
    assert q.observe(0, now=20.0) is None
    assert q.observe(0, now=24.9) is None
    assert q.observe(0, now=25.0) is TrackerState.FAILED
    assert q.observe(1, now=26.0) is None and q.deadline() == 31.0


def test_terminate_delay_applies_to_terminations_only() -> None:
    q = Quorum(proc_cfg(delay=1.0, terminate_delay=8.0, quorum_max=1), TrackerState.OK)
    assert q.observe(0, now=0.0) is None and q.deadline() == 8.0  # terminated
    assert q.observe(1, now=1.0) is None
    assert q.observe(2, now=2.0) is None and q.deadline() == 3.0  # too many: delay


def test_scan_proc_reads_a_proc_tree(tmp_path: Path) -> None:
    def add(pid: str, comm: str, argv: list[str]) -> None:
        d = tmp_path / pid
        d.mkdir()
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))

    add("10", "haproxy", ["haproxy", "-f", "/etc/h.cfg"])
    add("11", "bash", ["bash"])
    (tmp_path / "self").mkdir()
    (tmp_path / "12").mkdir()  # vanished mid-scan: no comm file
    procs = {p.pid: p for p in scan_proc(lambda comm: comm == "haproxy", root=str(tmp_path))}
    assert set(procs) == {10, 11}
    assert procs[10].argv == ("haproxy", "-f", "/etc/h.cfg")
    assert procs[11].argv is None  # not wanted: cmdline not read
