"""Runtime control: the pure decisions (handover watch, takeover priority, durations),
the persisted maintenance store, the control routes' body checks on the real API, and
vigilctl's parsing and output. The end-to-end behaviour (VIPs moving, zero lost probes)
is in tests/integration/test_control.py."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_harness import AgentThread

from vigil.cli import EXIT_API_ERROR, EXIT_OK, EXIT_USAGE, main
from vigil.vrrp.cli import result_line as _result_line
from vigil.vrrp.control import CONTROL_FILE, MaintenanceStore
from vigil.vrrp.policy import (
    HANDOVER_LINGER,
    HandoverWatch,
    Outcome,
    default_handover_timeout,
    parse_duration,
    takeover_priority,
)

pytestmark = pytest.mark.unit

# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("1.5m", 90.0), ("2h", 7200.0), ("500ms", 0.5), ("1d", 86400.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1", "0", "0s", "400d"])
def test_parse_duration_rejects_with_the_name(text: str) -> None:
    with pytest.raises(ValueError, match=r"^hold: "):
        parse_duration(text, "hold")


def test_default_handover_timeout_covers_a_peer_skew_time() -> None:
    # A peer takes over at most one interval after our priority 0, then lingers.
    for interval in (0.1, 1.0, 3.0):
        assert default_handover_timeout(interval) > interval + HANDOVER_LINGER


# ----------------------------------------------------------------------------- handover


def test_watch_waits_then_lingers_after_the_new_master_then_done() -> None:
    w = HandoverWatch(started=10.0, timeout=3.0, own_address="10.0.0.1", linger=0.2)
    assert w.observe(10.1, "BACKUP", None, None) is Outcome.WAITING
    assert w.observe(10.6, "BACKUP", "10.0.0.2", 100) is Outcome.LINGER
    assert (w.new_master, w.new_priority) == ("10.0.0.2", 100)
    assert w.observe(10.7, "BACKUP", "10.0.0.2", 100) is Outcome.LINGER
    assert w.observe(10.8, "BACKUP", "10.0.0.2", 100) is Outcome.DONE


def test_watch_ignores_priority_zero_and_ourselves() -> None:
    w = HandoverWatch(started=0.0, timeout=1.0, own_address="10.0.0.1")
    assert w.observe(0.1, "BACKUP", "10.0.0.1", 150) is Outcome.WAITING
    assert w.observe(0.2, "BACKUP", "10.0.0.2", 0) is Outcome.WAITING
    assert w.seen_at is None


def test_watch_times_out_without_a_peer() -> None:
    w = HandoverWatch(started=0.0, timeout=1.0)
    assert w.observe(0.99, "BACKUP", None, None) is Outcome.WAITING
    assert w.observe(1.0, "BACKUP", None, None) is Outcome.TIMEOUT


def test_watch_sees_a_new_master_even_at_the_deadline() -> None:
    """A late advert still completes the handover rather than rolling back over it."""
    w = HandoverWatch(started=0.0, timeout=1.0, linger=0.2)
    assert w.observe(1.05, "BACKUP", "10.0.0.2", 100) is Outcome.LINGER


def test_watch_says_when_it_next_changes_without_a_new_observation() -> None:
    """With a fake clock: waiting ends at the timeout, lingering at the linger's end, and
    observing at exactly that time gives the next outcome (what control wakes up for)."""
    w = HandoverWatch(started=10.0, timeout=3.0, linger=0.2)
    assert w.next_deadline() == 13.0
    assert w.observe(12.999, "BACKUP", None, None) is Outcome.WAITING
    assert w.observe(w.next_deadline(), "BACKUP", None, None) is Outcome.TIMEOUT
    w = HandoverWatch(started=10.0, timeout=3.0, linger=0.2)
    assert w.observe(10.5, "BACKUP", "10.0.0.2", 100) is Outcome.LINGER
    assert w.next_deadline() == pytest.approx(10.7)
    assert w.observe(10.69, "BACKUP", "10.0.0.2", 100) is Outcome.LINGER
    assert w.observe(w.next_deadline(), "BACKUP", "10.0.0.2", 100) is Outcome.DONE


def test_watch_reports_our_own_takeover_and_faults() -> None:
    w = HandoverWatch(started=0.0, timeout=5.0)
    assert w.observe(3.5, "MASTER", "10.0.0.1", 150) is Outcome.RETOOK
    w = HandoverWatch(started=0.0, timeout=5.0)
    assert w.observe(0.5, "FAULT", None, None) is Outcome.LEFT


# ----------------------------------------------------------------------------- takeover


def test_takeover_priority() -> None:
    assert takeover_priority(150, 100) is None  # already outranks
    assert takeover_priority(100, 150) == 151
    assert takeover_priority(100, 100) == 101
    assert takeover_priority(100, 253) == 254
    assert takeover_priority(100, None) is None
    for top in (254, 255):
        with pytest.raises(ValueError, match=f"advertises priority {top}"):
            takeover_priority(100, top)


# ----------------------------------------------------------------------------- store


def test_maintenance_store_round_trip(tmp_path: Path) -> None:
    store = MaintenanceStore(tmp_path / "state")
    assert store.load() == set()
    store.save({"VI_2", "VI_1"})
    assert MaintenanceStore(tmp_path / "state").load() == {"VI_1", "VI_2"}
    data = json.loads((tmp_path / "state" / CONTROL_FILE).read_text())
    assert data == {"version": 1, "maintenance": ["VI_1", "VI_2"]}
    store.save(set())
    assert store.load() == set()


def test_maintenance_store_survives_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / CONTROL_FILE).write_text("{not json")
    assert MaintenanceStore(tmp_path).load() == set()
    (tmp_path / CONTROL_FILE).write_text('{"maintenance": "VI_1"}')
    assert MaintenanceStore(tmp_path).load() == set()


# ----------------------------------------------------------------------------- API + CLI


@pytest.fixture
def vrrp_agent() -> Iterator[AgentThread]:
    """The real app with the real VRRP subsystem built but not started (no root needed)."""
    from vigil.subsystems import specs

    with AgentThread(factories=specs(), start_agent=False) as at:
        yield at


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/vrrp/maintenance", {}, "body.enabled"),
        ("/v1/vrrp/maintenance", {"enabled": "yes"}, "body.enabled"),
        ("/v1/vrrp/maintenance", {"enabled": True, "instance": 5}, "body.instance"),
        ("/v1/vrrp/maintenance", {"enabled": True, "timeout": -1}, "body.timeout"),
        ("/v1/vrrp/maintenance", {"enabled": True, "oops": 1}, "body.oops"),
        ("/v1/vrrp/instances/VI_1/priority", {}, "body.value"),
        ("/v1/vrrp/instances/VI_1/priority", {"value": 255}, "body.value"),
        ("/v1/vrrp/instances/VI_1/priority", {"value": True}, "body.value"),
        ("/v1/vrrp/instances/VI_1/priority", {"value": None, "duration": 5}, "body.duration"),
        ("/v1/vrrp/instances/VI_1/handover", {"timeout": 1000}, "body.timeout"),
        ("/v1/vrrp/instances/VI_1/handover", {"hold": "1h"}, "body.hold"),
        ("/v1/vrrp/instances/VI_1/takeover", {"force": True}, "body.force"),
        ("/v1/vrrp/instances/VI_1/garp", {"count": 3}, "body.count"),
    ],
)
def test_control_bodies_are_checked(
    vrrp_agent: AgentThread, path: str, body: dict[str, object], field: str
) -> None:
    status, resp = vrrp_agent.client.post(path, body)
    assert status == 400, resp
    assert resp["error"]["field"] == field
    assert field in resp["error"]["message"]


def test_control_of_an_unknown_instance_is_404(vrrp_agent: AgentThread) -> None:
    for action in ("handover", "takeover", "garp"):
        status, resp = vrrp_agent.client.post(f"/v1/vrrp/instances/VI_9/{action}", {})
        assert status == 404, resp
        assert "unknown VRRP instance 'VI_9'" in resp["error"]["message"]
    status, resp = vrrp_agent.client.post(
        "/v1/vrrp/maintenance", {"enabled": True, "instance": "X"}
    )
    assert status == 404


def test_control_body_must_be_a_json_object(vrrp_agent: AgentThread) -> None:
    status, _resp = vrrp_agent.client.request("POST", "/v1/vrrp/instances/VI_1/garp", None)
    assert status == 404  # an empty body is fine; the instance is what is missing
    from test_api import raw_request

    payload = b"[1]"
    req = (
        b"POST /v1/vrrp/maintenance HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 3\r\n\r\n" + payload
    )
    code, _, raw = raw_request(vrrp_agent.socket_path, req)
    assert code == 400 and json.loads(raw)["error"]["field"] == "body"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out, err)
    return rc, out.getvalue(), err.getvalue()


def test_vigilctl_maintenance_with_no_instances(vrrp_agent: AgentThread) -> None:
    rc, out, err = run_cli("--socket", vrrp_agent.socket_path, "-o", "json", "maintenance", "on")
    assert rc == EXIT_OK, err
    body = json.loads(out)
    assert body["action"] == "maintenance" and body["enabled"] is True
    assert body["instances"] == [] and body["results"] == []


def test_vigilctl_control_errors_exit_1_with_the_message(vrrp_agent: AgentThread) -> None:
    rc, _out, err = run_cli("--socket", vrrp_agent.socket_path, "takeover", "VI_9")
    assert rc == EXIT_API_ERROR
    assert "HTTP 404: unknown VRRP instance 'VI_9'" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["priority", "VI_1"], "either VALUE"),
        (["priority", "VI_1", "100", "--clear"], "either VALUE"),
        (["priority", "VI_1", "--clear", "--for", "5m"], "--for goes with a VALUE"),
        (["priority", "VI_1", "255"], "255 is the address owner's"),
        (["priority", "VI_1", "abc"], "integer 1..254"),
        (["priority", "VI_1", "100", "--for", "soon"], "is not a duration"),
        (["handover", "VI_1", "--timeout", "0"], "more than 0"),
        (["maintenance", "maybe"], "invalid choice"),
        (["takeover"], "required"),
    ],
)
def test_vigilctl_usage_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _out, err = run_cli("--socket", "/nonexistent/vigil.sock", *argv)
    assert rc == EXIT_USAGE
    assert needle in err + capsys.readouterr().err  # argparse writes to sys.stderr


def test_result_line_shows_before_after_and_time() -> None:
    result = {
        "instance": "VI_1",
        "message": "handed over to 10.0.0.2 (priority 100)",
        "elapsed_s": 0.812,
        "before": {
            "state": "MASTER",
            "effective_priority": 150,
            "vips_present": ["10.0.0.100/24"],
            "master_address": "10.0.0.1",
        },
        "after": {
            "state": "BACKUP",
            "effective_priority": 150,
            "vips_present": [],
            "master_address": "10.0.0.2",
        },
    }
    line = _result_line(result)
    assert line == (
        "VI_1: handed over to 10.0.0.2 (priority 100) in 0.81s "
        "[MASTER prio 150 VIPs 10.0.0.100/24 -> BACKUP prio 150 VIPs none master 10.0.0.2]\n"
    )
