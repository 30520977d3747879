"""Notify scripts: keepalived's arguments, ordering per instance, timeouts, failures.

Real scripts run as real subprocesses (no root needed: they run as the test's own user,
with script security off because tmp_path is not root-owned when the tests are not root).
Nothing here measures time: a timeout is asserted by its effect (the run is reported as
timed out and its whole process group is gone), never by how long it took.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vigil.subsystems import validate_data
from vigil.vrrp.config import NotifyConfig
from vigil.vrrp.machine import Transition, Trigger, VrrpState
from vigil.vrrp.notify import (
    GROUP,
    INSTANCE,
    MAX_PENDING,
    Notifier,
    NotifyJob,
    NotifyManager,
    NotifyResult,
    RunAs,
    ScriptRunner,
    build_jobs,
    state_word,
)

# ------------------------------------------------------------------ arguments


def test_state_words_are_keepalived_s() -> None:
    assert state_word(VrrpState.MASTER) == "MASTER"
    assert state_word(VrrpState.BACKUP) == "BACKUP"
    assert state_word(VrrpState.FAULT) == "FAULT"
    assert state_word(VrrpState.STOPPED) == "STOP"
    assert state_word(VrrpState.INIT) is None


def test_per_state_command_then_generic_with_four_arguments() -> None:
    notify = NotifyConfig(
        master="/usr/local/bin/up.sh 'two words'",
        backup="/usr/local/bin/down.sh",
        generic="/usr/local/bin/all.sh --flag",
        timeout=3.0,
    )
    jobs = build_jobs(notify, INSTANCE, "VI_1", "MASTER", 150)
    assert [j.kind for j in jobs] == ["master", "generic"]
    assert jobs[0].argv == ("/usr/local/bin/up.sh", "two words")
    assert jobs[1].argv == ("/usr/local/bin/all.sh", "--flag", "INSTANCE", "VI_1", "MASTER", "150")
    assert all(j.timeout == 3.0 for j in jobs)


def test_group_priority_is_always_zero() -> None:
    notify = NotifyConfig(generic="/bin/g")
    (job,) = build_jobs(notify, GROUP, "G1", "FAULT", 200)
    assert job.argv == ("/bin/g", "GROUP", "G1", "FAULT", "0")
    assert job.priority == 0


def test_stop_runs_the_stop_command() -> None:
    notify = NotifyConfig(stop="/bin/stop", fault="/bin/fault")
    jobs = build_jobs(notify, INSTANCE, "VI_1", "STOP", 100)
    assert [(j.kind, j.argv) for j in jobs] == [("stop", ("/bin/stop",))]


def test_nothing_configured_runs_nothing() -> None:
    assert build_jobs(NotifyConfig(master="/bin/m"), INSTANCE, "VI_1", "BACKUP", 1) == []


def test_bad_target_and_unsplittable_command_name_the_problem() -> None:
    with pytest.raises(ValueError, match="target"):
        build_jobs(NotifyConfig(generic="/bin/g"), "ROUTER", "x", "MASTER", 1)
    with pytest.raises(ValueError, match=r"notify\.generic"):
        build_jobs(NotifyConfig(generic="/bin/g 'open"), INSTANCE, "x", "MASTER", 1)


# ------------------------------------------------------------------ helpers


def me() -> RunAs:
    return RunAs.resolve(pwd.getpwuid(os.geteuid()).pw_name)


def script(tmp: Path, name: str, body: str) -> str:
    path = tmp / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def job(
    argv: list[str], *, name: str = "VI_1", timeout: float = 10.0, kind: str = "generic"
) -> NotifyJob:
    return NotifyJob(kind, INSTANCE, name, "MASTER", 100, tuple(argv), timeout)


class Collect:
    """Gathers reported results; lets a test wait for a count with a bounded deadline."""

    def __init__(self) -> None:
        self.results: list[NotifyResult] = []

    def __call__(self, result: NotifyResult) -> None:
        self.results.append(result)

    async def wait(self, count: int, timeout: float = 20.0) -> list[NotifyResult]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.results) < count:
            assert loop.time() < deadline, f"only {len(self.results)} of {count} results"
            await asyncio.sleep(0.01)
        return self.results


def gone(pid: int) -> bool:
    """True when pid no longer runs (absent, or a zombie waiting for init)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return text.rsplit(")", 1)[1].split()[0] == "Z"


async def wait_gone(pid: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not gone(pid):
        assert loop.time() < deadline, f"pid {pid} still runs"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ running


def test_runs_in_order_per_instance(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    slow = script(tmp_path, "slow.sh", f'sleep 0.3; echo "slow $*" >> {out}\n')
    fast = script(tmp_path, "fast.sh", f'echo "fast $*" >> {out}\n')

    async def main() -> list[NotifyResult]:
        got = Collect()
        notifier = Notifier(got, script_security=False, run_as=me())
        notifier.submit([job([slow, "1"])])
        notifier.submit([job([fast, "2"]), job([slow, "3"]), job([fast, "4"])])
        results = await got.wait(4)
        assert await notifier.wait_idle(5)
        return results

    results = asyncio.run(main())
    assert out.read_text().splitlines() == ["slow 1", "fast 2", "slow 3", "fast 4"]
    assert [r.job.argv[-1] for r in results] == ["1", "2", "3", "4"]
    assert all(r.ok and r.exit_code == 0 for r in results)


def test_keepalived_arguments_reach_the_script(tmp_path: Path) -> None:
    out = tmp_path / "args"
    generic = script(tmp_path, "gen.sh", f'printf "%s|" "$@" > {out}\n')
    notify = NotifyConfig(generic=f"{generic} first", timeout=5)

    async def main() -> None:
        got = Collect()
        notifier = Notifier(got, script_security=False, run_as=me())
        notifier.submit(build_jobs(notify, INSTANCE, "VI_7", "FAULT", 42))
        await got.wait(1)

    asyncio.run(main())
    assert out.read_text() == "first|INSTANCE|VI_7|FAULT|42|"


def test_hung_script_is_killed_with_its_group_and_the_next_one_runs(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    out = tmp_path / "after"
    hang = script(tmp_path, "hang.sh", f"sleep 1000 &\necho $! > {pidfile}\nwait\n")
    after = script(tmp_path, "after.sh", f"echo ran > {out}\n")

    async def main() -> list[NotifyResult]:
        got = Collect()
        notifier = Notifier(got, script_security=False, run_as=me())
        notifier.submit([job([hang], timeout=0.5), job([after])])
        results = await got.wait(2)
        child = int(pidfile.read_text())
        await wait_gone(child)
        return results

    first, second = asyncio.run(main())
    assert first.timed_out and first.exit_code is None and not first.ok
    assert "killed after its 0.5s timeout" in first.summary()
    assert second.ok and out.read_text().strip() == "ran"


def test_failure_reports_exit_code_and_stderr_tail(tmp_path: Path) -> None:
    bad = script(tmp_path, "bad.sh", "echo first line >&2\necho 'boom: disk full' >&2\nexit 3\n")

    async def main() -> NotifyResult:
        return await ScriptRunner(script_security=False, run_as=me()).run(job([bad]))

    result = asyncio.run(main())
    assert result.exit_code == 3 and not result.ok and not result.timed_out
    assert result.stderr.endswith("boom: disk full")
    data = result.to_data()
    assert data["exit_code"] == 3 and data["timed_out"] is False
    assert data["argv"] == [bad]


def test_background_helper_holding_stderr_does_not_block_the_queue(tmp_path: Path) -> None:
    pidfile = tmp_path / "helper.pid"
    leaves = script(tmp_path, "leaves.sh", f"sleep 1000 &\necho $! > {pidfile}\nexit 0\n")

    async def main() -> NotifyResult:
        runner = ScriptRunner(script_security=False, run_as=me())
        result = await asyncio.wait_for(runner.run(job([leaves], timeout=30)), 20)
        os.kill(int(pidfile.read_text()), 9)
        return result

    result = asyncio.run(main())
    assert result.ok and not result.timed_out


def test_missing_program_is_not_run_and_says_why(tmp_path: Path) -> None:
    async def main() -> NotifyResult:
        return await ScriptRunner(script_security=False).run(job([str(tmp_path / "nope.sh")]))

    result = asyncio.run(main())
    assert result.error is not None and "does not exist" in result.error
    assert "not run" in result.summary()


def test_script_security_refuses_a_world_writable_directory(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    path = script(open_dir, "n.sh", "exit 0\n")

    async def main() -> NotifyResult:
        return await ScriptRunner(script_security=True).run(job([path]))

    result = asyncio.run(main())
    assert result.error is not None and result.error.startswith("refusing")
    assert "script_security" in result.error
    assert stat.S_IMODE(open_dir.stat().st_mode) == 0o777


def test_overflow_drops_the_oldest_waiting_run_and_keeps_the_latest(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    hang = script(tmp_path, "hang.sh", "exec sleep 1000\n")
    mark = script(tmp_path, "mark.sh", f'echo "$1" >> {out}\n')
    extra = 5

    async def main() -> tuple[list[NotifyResult], Notifier]:
        got = Collect()
        notifier = Notifier(got, script_security=False, run_as=me())
        notifier.submit([job([hang], timeout=1.0)])
        queue = notifier.queues[(INSTANCE, "VI_1")]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while queue.current is None:  # the hung one must be running before the flood
            assert loop.time() < deadline, "the first notify command never started"
            await asyncio.sleep(0.01)
        notifier.submit([job([mark, str(i)]) for i in range(MAX_PENDING + extra)])
        results = await got.wait(1 + MAX_PENDING + extra)
        return results, notifier

    results, notifier = asyncio.run(main())
    dropped = [r for r in results if r.error and r.error.startswith("dropped")]
    assert notifier.dropped == extra == len(dropped)
    ran = out.read_text().split()
    assert ran[-1] == str(MAX_PENDING + extra - 1), "the newest must always run"
    assert ran == [str(i) for i in range(extra, MAX_PENDING + extra)]


def test_close_kills_what_is_still_running(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hang = script(tmp_path, "hang.sh", f"echo $$ > {pidfile}\nexec sleep 1000\n")

    async def main() -> int:
        notifier = Notifier(lambda r: None, script_security=False, run_as=me())
        notifier.submit([job([hang], timeout=1000)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        await notifier.close(0.2)
        pid = int(pidfile.read_text())
        await wait_gone(pid)
        assert notifier.idle
        return pid

    assert asyncio.run(main()) > 0


def test_run_as_resolves_users_and_names_the_unknown_one() -> None:
    own = me()
    assert not own.switches
    with pytest.raises(LookupError, match="no-such-user-xyz"):
        RunAs.resolve("no-such-user-xyz")
    with pytest.raises(LookupError, match="group 'no-such-group-xyz'"):
        RunAs.resolve(f"{pwd.getpwuid(os.geteuid()).pw_name}:no-such-group-xyz")
    if os.geteuid() == 0:
        nobody = RunAs.resolve("nobody")
        assert nobody.switches and nobody.uid == pwd.getpwnam("nobody").pw_uid


# ------------------------------------------------------------------ agent wiring


class FakeOwner:
    """What NotifyManager needs from the VRRP subsystem: hooks and the event bus."""

    def __init__(self) -> None:
        self.transition_hooks: list[Any] = []
        self.events: list[tuple[str, str | None, str, dict[str, Any]]] = []

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None:
        self.events.append((kind, instance, message, data))


class FakeInstance:
    def __init__(self, notify: NotifyConfig) -> None:
        self.name = "VI_1"
        self.cfg = SimpleNamespace(notify=notify)
        self.machine = SimpleNamespace(effective_priority=120)


def test_manager_runs_transitions_and_group_changes_and_publishes(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    gen = script(tmp_path, "gen.sh", f'echo "$*" >> {out}\n')
    bad = script(tmp_path, "bad.sh", "echo nope >&2\nexit 2\n")
    user = pwd.getpwuid(os.geteuid()).pw_name
    config = validate_data(
        {"global": {"router_id": "r1", "script_user": user, "script_security": False}},
        check_files=False,
    )

    async def main() -> tuple[FakeOwner, NotifyManager]:
        owner = FakeOwner()
        manager = NotifyManager(owner)  # type: ignore[arg-type]
        manager.configure(config.section("vrrp"))
        assert owner.transition_hooks == [manager.on_transition]
        inst = FakeInstance(NotifyConfig(master=bad, generic=gen, timeout=5))
        tr = Transition("VI_1", VrrpState.BACKUP, VrrpState.MASTER, Trigger.MASTER_DOWN, "x", 0)
        manager.on_transition(inst, tr)  # type: ignore[arg-type]
        manager.group_changed("G1", NotifyConfig(generic=gen, timeout=5), "MASTER")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len([e for e in owner.events if e[0] == "notify"]) < 3:
            assert loop.time() < deadline, owner.events
            await asyncio.sleep(0.01)
        await manager.close()
        return owner, manager

    owner, manager = asyncio.run(main())
    assert sorted(out.read_text().splitlines()) == ["GROUP G1 MASTER 0", "INSTANCE VI_1 MASTER 120"]
    by_script = {(e[3]["target"], e[3]["script"]): e for e in owner.events}
    failed = by_script[("INSTANCE", "master")]
    assert failed[1] == "VI_1" and failed[3]["exit_code"] == 2 and failed[3]["stderr"] == "nope"
    group_event = by_script[("GROUP", "generic")]
    assert group_event[1] is None and group_event[3]["name"] == "G1"
    (metric,) = list(manager.metrics())
    samples = {(s.labels["target"], s.labels["result"]): s.value for s in metric.samples}
    assert samples[("instance", "failed")] == 1 and samples[("instance", "ok")] == 1
    assert samples[("group", "ok")] == 1
