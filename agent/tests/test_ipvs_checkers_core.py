"""Unit tests for the pure checker core (vigil.ipvs.checkers.core), driven by a fake clock.

Each test names the keepalived 2.2.7 rule it checks (check_tcp.c tcp_epilog,
check_data.c start-up, check_misc.c dynamic weight, track_file.c for FILE_CHECK).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from vigil.ipvs.checkers.core import (
    TRANSITIONS,
    WEIGHT_MAX,
    Action,
    Anchor,
    CheckMachine,
    CheckResult,
    CheckState,
    CheckTiming,
    IllegalTransition,
    RunCheck,
    ServerHealth,
    TimingError,
    Transition,
    Trigger,
    is_allowed,
)
from vigil.ipvs.checkers.settings import (
    DnsCheck,
    FileCheck,
    HttpCheck,
    HttpUrl,
    MiscCheck,
    PingCheck,
    RealServer,
    SettingsError,
    SmtpCheck,
    TcpCheck,
    UdpCheck,
    parse_hex,
    parse_reply_pattern,
    parse_status_codes,
)

OK = CheckResult(ok=True, latency=0.001)
FAIL = CheckResult(ok=False, latency=0.002, error="connection refused")


def timing(**kw: Any) -> CheckTiming:
    values: dict[str, Any] = {
        "delay_loop": 5.0,
        "retry": 2,
        "delay_before_retry": 1.0,
        "warmup": 4.0,
    }
    values.update(kw)
    return CheckTiming(**values)


class Sim:
    """A fake clock and a fake prober: each run takes ``duration`` and answers per
    ``script(attempt_number)``; records every action with its time."""

    def __init__(
        self,
        machine: CheckMachine,
        script: Callable[[int], CheckResult],
        duration: float = 0.1,
    ) -> None:
        self.m = machine
        self.script = script
        self.duration = duration
        self.now = 0.0
        self.runs: list[float] = []
        self.log: list[tuple[float, Action]] = []

    def start(self, jitter: float = 0.5) -> None:
        for a in self.m.start(self.now, jitter):
            self.log.append((self.now, a))

    def until(self, t_end: float, max_steps: int = 10_000) -> None:
        for _ in range(max_steps):
            deadline = self.m.next_deadline()
            if deadline is None or deadline > t_end:
                self.now = t_end
                return
            self.now = deadline
            actions = self.m.timer_expired(self.now)
            assert [type(a) for a in actions] == [RunCheck]
            self.runs.append(self.now)
            self.now += self.duration
            for a in self.m.result(self.now, self.script(len(self.runs))):
                self.log.append((self.now, a))
        raise AssertionError("simulation did not settle")

    def transitions(self) -> list[tuple[CheckState, CheckState]]:
        return [(a.old, a.new) for _, a in self.log if isinstance(a, Transition)]


def results(pattern: str) -> Callable[[int], CheckResult]:
    """'++--+' : run n answers pattern[n-1]; past the end the last one repeats."""
    return lambda n: OK if pattern[min(n, len(pattern)) - 1] == "+" else FAIL


# ----------------------------------------------------------------------- table and timing


def test_every_transition_in_the_table_is_reachable_by_name() -> None:
    assert is_allowed(CheckState.UP, CheckState.DOWN, Trigger.FAILURE)
    assert not is_allowed(CheckState.DOWN, CheckState.FAILING, Trigger.FAILURE)
    assert not is_allowed(CheckState.UP, CheckState.DOWN, Trigger.SUCCESS)
    targets = {new for (_, new) in TRANSITIONS}
    assert targets == set(CheckState) - {CheckState.INIT}


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"delay_loop": 0}, "delay_loop"),
        ({"delay_before_retry": -1}, "delay_before_retry"),
        ({"warmup": float("nan")}, "warmup"),
        ({"retry": -1}, "retry"),
        ({"retry": True}, "retry"),
    ],
)
def test_timing_rejects_bad_values_naming_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(TimingError, match=f"CheckTiming.{field}"):
        timing(**kw)


# ----------------------------------------------------------------------- start and warmup


def test_starts_up_and_first_run_is_warmup_times_jitter() -> None:
    m = CheckMachine("rs tcp", timing(warmup=4.0))
    [t] = m.start(10.0, 0.25)
    assert isinstance(t, Transition)
    assert (t.old, t.new, t.trigger) == (CheckState.INIT, CheckState.UP, Trigger.START)
    assert m.next_deadline() == pytest.approx(11.0)
    assert m.alive


def test_alpha_starts_down() -> None:
    m = CheckMachine("rs tcp", timing(alpha=True))
    [t] = m.start(0.0, 0.0)
    assert isinstance(t, Transition) and t.new is CheckState.DOWN
    assert "alpha" in str(t)
    assert not m.alive


def test_jitter_outside_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        CheckMachine("x", timing()).start(0.0, 1.0)


def test_warmup_spreads_first_runs_over_the_warmup_window() -> None:
    rng = random.Random(7)
    firsts = []
    for i in range(200):
        m = CheckMachine(f"c{i}", timing(warmup=2.0))
        m.start(0.0, rng.random())
        deadline = m.next_deadline()
        assert deadline is not None
        firsts.append(deadline)
    assert min(firsts) >= 0.0 and max(firsts) < 2.0
    assert max(firsts) - min(firsts) > 1.5  # spread, not bunched


def test_start_twice_is_a_bug() -> None:
    m = CheckMachine("x", timing())
    m.start(0.0, 0.0)
    with pytest.raises(IllegalTransition, match="already started"):
        m.start(1.0, 0.0)


# ----------------------------------------------------------------------- the retry rule


def test_first_run_failure_goes_down_at_once_without_retries() -> None:
    """check_data.c: retry_it = retry at start, so the first failure is final."""
    sim = Sim(CheckMachine("rs tcp", timing(retry=3)), results("-"))
    sim.start(0.0)
    sim.until(0.05)
    assert sim.m.state is CheckState.DOWN
    assert sim.transitions() == [(CheckState.INIT, CheckState.UP), (CheckState.UP, CheckState.DOWN)]
    assert "first check failed" in str(sim.log[-1][1])


def test_up_goes_down_on_retry_plus_one_consecutive_failures() -> None:
    """tcp_epilog: while up, a failure schedules a retry after delay_before_retry until
    retry_it reaches retry; the next failure is DOWN."""
    sim = Sim(CheckMachine("rs tcp", timing(retry=2, delay_before_retry=1.0)), results("+---"))
    sim.start(0.0)
    sim.until(5.0)  # run 1 at 0.0 ok
    assert sim.m.state is CheckState.UP
    sim.until(5.15)  # run 2 at 5.1 fails
    assert sim.m.state is CheckState.FAILING and sim.m.alive
    sim.until(6.25)  # retry 1 at 6.2 fails
    assert sim.m.state is CheckState.FAILING
    sim.until(7.35)  # retry 2 at 7.3 fails: third failure in a row
    assert sim.m.state is CheckState.DOWN
    assert sim.runs == pytest.approx([0.0, 5.1, 6.2, 7.3])
    down = sim.log[-1][1]
    assert isinstance(down, Transition)
    assert str(down) == (
        "(rs tcp) FAILING -> DOWN: 3 failures in a row (retry 2), last: connection refused"
    )


def test_retry_zero_goes_down_on_the_first_failure_after_a_success() -> None:
    sim = Sim(CheckMachine("c", timing(retry=0)), results("+-"))
    sim.start(0.0)
    sim.until(5.15)
    assert sim.transitions()[-1] == (CheckState.UP, CheckState.DOWN)
    assert "retry 0" in str(sim.log[-1][1])


def test_a_success_during_retries_resets_the_count() -> None:
    sim = Sim(CheckMachine("c", timing(retry=2)), results("+--+--+"))
    sim.start(0.0)
    sim.until(30.0)
    assert CheckState.DOWN not in [new for _, new in sim.transitions()]
    assert sim.m.state is CheckState.UP


def test_down_is_checked_every_delay_loop_and_one_success_brings_it_up() -> None:
    sim = Sim(CheckMachine("c", timing(retry=2, delay_loop=5.0)), results("---+"))
    sim.start(0.0)
    sim.until(16.0)
    # first failure at 0.0 took it down; no retries while down
    assert sim.runs == pytest.approx([0.0, 5.1, 10.2, 15.3])
    assert sim.m.state is CheckState.UP
    assert sim.transitions()[-1] == (CheckState.DOWN, CheckState.UP)


def test_alpha_needs_one_success_and_failures_while_down_change_nothing() -> None:
    sim = Sim(CheckMachine("c", timing(alpha=True)), results("--+"))
    sim.start(0.0)
    sim.until(12.0)
    assert sim.transitions() == [
        (CheckState.INIT, CheckState.DOWN),
        (CheckState.DOWN, CheckState.UP),
    ]


def test_runs_are_delay_loop_apart_from_the_end_of_the_previous_run() -> None:
    sim = Sim(CheckMachine("c", timing(delay_loop=1.0)), results("+"), duration=0.3)
    sim.start(0.0)
    sim.until(5.0)
    gaps = [b - a for a, b in zip(sim.runs, sim.runs[1:], strict=False)]
    assert gaps == pytest.approx([1.3] * len(gaps))


def test_misc_runs_are_delay_loop_apart_from_the_start_of_the_previous_run() -> None:
    sim = Sim(
        CheckMachine("c", timing(delay_loop=1.0, anchor=Anchor.START)), results("+"), duration=0.3
    )
    sim.start(0.0)
    sim.until(5.0)
    gaps = [b - a for a, b in zip(sim.runs, sim.runs[1:], strict=False)]
    assert gaps == pytest.approx([1.0] * len(gaps))


# ----------------------------------------------------------------------- inputs out of place


def test_early_and_duplicate_timer_calls_do_nothing() -> None:
    m = CheckMachine("c", timing())
    m.start(0.0, 0.5)
    assert m.timer_expired(1.0) == []
    assert len(m.timer_expired(2.0)) == 1
    assert m.running and m.next_deadline() is None
    assert m.timer_expired(3.0) == []  # already running


def test_a_result_without_a_run_is_a_bug() -> None:
    m = CheckMachine("c", timing())
    m.start(0.0, 0.0)
    with pytest.raises(IllegalTransition, match="without a run"):
        m.result(0.0, OK)


def test_stop_then_a_late_result_is_ignored_and_restart_is_fresh() -> None:
    m = CheckMachine("c", timing())
    m.start(0.0, 0.0)
    m.timer_expired(0.0)
    [t] = m.stop(0.1, "server removed")
    assert isinstance(t, Transition) and t.new is CheckState.STOPPED
    assert m.result(0.2, FAIL) == []
    assert m.next_deadline() is None
    assert m.stop(0.3) == []
    [t2] = m.start(1.0, 0.0)
    assert isinstance(t2, Transition) and (t2.old, t2.new) == (CheckState.STOPPED, CheckState.UP)


def test_known_first_result_decides_the_initial_state() -> None:
    m = CheckMachine("c", timing(delay_loop=1.0))
    [t] = m.start(0.0, 0.9, known=CheckResult(ok=False, error="file says 1"))
    assert isinstance(t, Transition) and t.new is CheckState.DOWN
    assert m.next_deadline() == pytest.approx(1.0)  # delay_loop, not warmup
    m2 = CheckMachine("c2", timing())
    [t2] = m2.start(0.0, 0.0, known=CheckResult(ok=True, weight_offset=5))
    assert isinstance(t2, Transition) and t2.new is CheckState.UP
    assert m2.weight_contribution(10) == 5


def test_to_dict_is_json_friendly() -> None:
    import json

    sim = Sim(CheckMachine("c", timing()), results("+-"))
    sim.start(0.0)
    sim.until(6.0)
    d = sim.m.to_dict()
    json.dumps(d)
    assert d["state"] == "FAILING" and d["consecutive_failures"] == 1
    assert d["counters"]["runs"] == 2


# ----------------------------------------------------------------------- the real server


def machine_with(results_seq: list[CheckResult], t: CheckTiming | None = None) -> CheckMachine:
    """A started machine that has consumed ``results_seq`` (one run each)."""
    m = CheckMachine(f"m{id(results_seq)}", t or timing(retry=0))
    m.start(0.0, 0.0)
    now = 0.0
    for r in results_seq:
        deadline = m.next_deadline()
        assert deadline is not None
        now = deadline
        m.timer_expired(now)
        m.result(now, r)
    return m


def test_server_alive_only_while_no_checker_is_down() -> None:
    up = machine_with([OK])
    failing = machine_with([OK, FAIL], timing(retry=1))
    assert failing.state is CheckState.FAILING
    down = machine_with([FAIL])
    s = ServerHealth("rs", 3, False, [up, failing])
    assert s.alive and s.weight == 3
    change = s.evaluate(1.0, "start")
    assert change is not None and change.present and change.ipvs_weight == 3
    assert change.was_alive is None
    assert s.evaluate(2.0, "again") is None  # nothing changed
    s2 = ServerHealth("rs2", 3, False, [up, down])
    c2 = s2.evaluate(1.0, "start")
    assert c2 is not None and not c2.alive and not c2.present and c2.ipvs_weight == 0


def test_inhibit_on_failure_keeps_a_dead_server_with_weight_zero() -> None:
    s = ServerHealth("rs", 7, True, [machine_with([FAIL])])
    c = s.evaluate(0.0, "start")
    assert c is not None and not c.alive and c.present and c.ipvs_weight == 0
    assert "in IPVS with weight 0" in str(c)


def test_a_server_without_checkers_is_always_alive() -> None:
    s = ServerHealth("rs", 1, False, [])
    c = s.evaluate(0.0, "start")
    assert c is not None and c.alive


def test_misc_dynamic_weight_sets_the_server_weight_to_status_minus_two() -> None:
    """check_misc.c: cur_weight = status - 2 - configured weight."""
    m = machine_with([CheckResult(ok=True, weight=10)])
    s = ServerHealth("rs", 3, False, [m])
    assert s.weight == 10
    s.evaluate(0.0, "start")
    # exit 0 later: back to the configured weight
    now = m.next_deadline() or 0.0
    m.timer_expired(now)
    m.result(now, CheckResult(ok=True))
    c = s.evaluate(now, "result")
    assert c is not None and (c.was_weight, c.weight) == (10, 3)
    assert str(c) == "[rs] weight 10 -> 3 (in IPVS with weight 3): result"


def test_a_down_checker_drops_its_weight_contribution() -> None:
    m = machine_with([CheckResult(ok=True, weight=20), FAIL])
    assert m.state is CheckState.DOWN
    assert m.weight_contribution(3) == 0


def test_two_dynamic_checkers_add_their_contributions() -> None:
    a = machine_with([CheckResult(ok=True, weight=10)])
    b = machine_with([CheckResult(ok=True, weight=20)])
    s = ServerHealth("rs", 5, False, [a, b])
    assert s.weight == 5 + (10 - 5) + (20 - 5)


def test_weight_is_clamped_to_ipvs_range() -> None:
    neg = machine_with([CheckResult(ok=True, weight_offset=-100)])
    assert ServerHealth("rs", 5, False, [neg]).weight == 0
    big = machine_with([CheckResult(ok=True, weight_offset=2**40)])
    assert ServerHealth("rs", 5, False, [big]).weight == WEIGHT_MAX


def test_server_change_log_lines() -> None:
    s = ServerHealth("10.0.0.2:80", 1, False, [machine_with([OK])])
    c = s.evaluate(0.0, "all checks up")
    assert str(c) == "[10.0.0.2:80] starts alive, weight 1 (in IPVS with weight 1): all checks up"


# ----------------------------------------------------------------------- settings


def test_kind_defaults_follow_keepalived() -> None:
    assert TcpCheck().timing() == CheckTiming(60.0, 1, 1.0, 60.0)
    assert HttpCheck().timing().delay_before_retry == 3.0
    dns = DnsCheck(delay_loop=7).timing()
    assert (dns.retry, dns.delay_before_retry) == (3, 7.0)
    misc = MiscCheck(argv=("/bin/true",)).timing()
    assert (misc.retry, misc.anchor) == (0, Anchor.START)
    assert MiscCheck(argv=("/bin/true",), delay_loop=4).effective_timeout() == 4.0
    f = FileCheck(path="/run/w").timing()
    assert (f.retry, f.warmup, f.delay_loop) == (0, 0.0, 1.0)
    assert TcpCheck(delay_loop=2, warmup=0).timing().warmup == 0.0


def test_settings_list_every_problem_at_once() -> None:
    with pytest.raises(SettingsError) as err:
        TcpCheck(connect_port=0, retry=-1, connect_ip="example.org", fwmark=-1)
    text = str(err.value)
    for part in ("TcpCheck.connect_port", "TcpCheck.retry", "TcpCheck.connect_ip", "fwmark"):
        assert part in text
    assert "never resolve names" in text


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: HttpCheck(enable_sni=True), "need tls"),
        (lambda: HttpCheck(http_protocol="2"), "http_protocol"),
        (lambda: HttpUrl(path="x"), "path"),
        (lambda: HttpUrl(digest="abc"), "digest"),
        (lambda: HttpUrl(regex="("), "regex"),
        (lambda: DnsCheck(type="PTRX"), "type"),
        (lambda: DnsCheck(query_name="a..b"), "empty label"),
        (lambda: UdpCheck(reply_pattern=b"x"), "require_reply"),
        (lambda: UdpCheck(min_reply_length=5, max_reply_length=4), "min/max"),
        (lambda: PingCheck(connect_port=1), "no ports"),
        (lambda: SmtpCheck(helo_name="a b"), "helo_name"),
        (lambda: MiscCheck(argv=()), "argv"),
        (lambda: FileCheck(path="rel"), "absolute"),
        (lambda: TcpCheck(connect_ip="10.0.0.1", bindto="fd00::1"), "cannot reach"),
    ],
)
def test_settings_errors(build: Callable[[], object], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        build()


def test_real_server_needs_a_port_for_port_checks_and_names_its_checkers() -> None:
    with pytest.raises(SettingsError, match="connect_port"):
        RealServer(address="10.0.0.2", checks=(TcpCheck(),))
    rs = RealServer(
        address="fd00::2",
        port=80,
        checks=(TcpCheck(), HttpCheck(), HttpCheck(tls=True), TcpCheck(), PingCheck()),
    )
    assert rs.label == "[fd00::2]:80"
    assert rs.check_names() == [
        "[fd00::2]:80 tcp#1",
        "[fd00::2]:80 http",
        "[fd00::2]:80 https",
        "[fd00::2]:80 tcp#2",
        "[fd00::2]:80 ping",
    ]
    assert RealServer(address="10.0.0.2", checks=(PingCheck(), DnsCheck())).label == "10.0.0.2"


def test_status_code_ranges() -> None:
    assert parse_status_codes("200 300-399 503") == ((200, 200), (300, 399), (503, 503))
    url = HttpUrl(status_codes=parse_status_codes("200-299 404"))
    assert url.status_ok(204) and url.status_ok(404) and not url.status_ok(500)
    with pytest.raises(SettingsError):
        parse_status_codes("299-200")
    with pytest.raises(SettingsError):
        parse_status_codes("2xx")


def test_keepalived_hex_strings() -> None:
    # keepalived.conf(5)'s own example: "Ab12f 3 456 546443123"
    assert parse_hex("Ab12f 3 456 546443123") == bytes.fromhex("ab120f0345065464431203")
    data, mask = parse_reply_pattern("01x2 ff")
    assert data == bytes([0x01, 0x02, 0xFF]) and mask == bytes([0xFF, 0x0F, 0xFF])
    with pytest.raises(SettingsError):
        parse_hex("zz")


@pytest.mark.parametrize("phase", [0.001, 0.25, 0.5, 0.999])
def test_a_death_is_declared_one_delay_before_retry_after_the_next_run(phase: float) -> None:
    """bench.ipvs's death: delay_loop 1, retry 1, delay_before_retry 1, the backend's
    refusal instant. As keepalived's tcp_epilog: the next regular run fails (the
    server stays up, FAILING), the retry 1 s after it fails too, and that is the
    verdict; so 1-2 s after the death, whatever the phase, and no later."""
    dead_from = 10.0 + phase
    sim = Sim(
        CheckMachine("rs tcp", timing(delay_loop=1.0, retry=1, delay_before_retry=1.0)),
        lambda n: FAIL if sim.now >= dead_from else OK,
        duration=0.0,
    )
    sim.start(0.0)
    sim.until(dead_from)
    assert sim.m.state is CheckState.UP
    sim.until(dead_from + 3.0)
    downs = [t for t, a in sim.log if isinstance(a, Transition) and a.new is CheckState.DOWN]
    next_run = min(r for r in sim.runs if r >= dead_from)
    assert downs == pytest.approx([next_run + 1.0])
    assert 1.0 <= downs[0] - dead_from <= 2.0
