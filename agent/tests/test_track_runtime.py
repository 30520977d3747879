"""Trackers with real processes and files (no root): the runner, scripts, files, manager.

Scripts run as the test's own user (no privilege switch is needed then); the privilege
drop to ``nobody`` and script security on a root-owned directory are covered by the
namespace tests in tests/integration/test_track.py. The manager is driven with a small
recording stand-in for the VRRP instance (a real InstanceRuntime needs raw sockets and a
namespace, which the integration tests use).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from vigil.config import Config
from vigil.net.netlink import LinkEvent
from vigil.subsystems import validate_data
from vigil.track.config import TrackFileConfig, VrrpScriptConfig
from vigil.track.file import FileTracker
from vigil.track.registry import TrackerRegistry
from vigil.track.runner import Credentials, run_command, security_problem
from vigil.track.script import ScriptTracker
from vigil.track.service import TrackerService, tracker_metrics
from vigil.vrrp.tracking import InstanceTracking

ME = pwd.getpwuid(os.geteuid()).pw_name


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat_line.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry))
    return out


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------ runner


def test_exit_status_decides() -> None:
    creds = Credentials.resolve(ME)
    assert creds.uid is None, "running as ourselves needs no switch"
    ok = asyncio.run(run_command(("/bin/true",), timeout=5, creds=creds, secure=False))
    bad = asyncio.run(run_command(("/bin/false",), timeout=5, creds=creds, secure=False))
    assert ok.ok and ok.status == 0 and ok.describe() == "exit status 0"
    assert not bad.ok and bad.status == 1


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    child_file = tmp_path / "child"
    hang = script(tmp_path, "hang.sh", f"sleep 60 &\necho $! > {child_file}\nwait")
    pgids: list[int] = []
    result = asyncio.run(
        run_command(
            (str(hang),),
            timeout=0.3,
            creds=Credentials.resolve(ME),
            secure=False,
            on_start=pgids.append,
        )
    )
    assert result.timed_out and not result.ok
    assert "timed out" in result.describe() and "process group" in result.describe()
    assert child_file.exists(), "the script's background child never started"
    wait_until(lambda: not group_members(pgids[0]), 5, "the script's process group to be gone")


def test_cancel_kills_the_group_too(tmp_path: Path) -> None:
    hang = script(tmp_path, "hang.sh", "sleep 60 &\nwait")
    pgids: list[int] = []

    async def main() -> None:
        task = asyncio.create_task(
            run_command(
                (str(hang),),
                timeout=60,
                creds=Credentials.resolve(ME),
                secure=False,
                on_start=pgids.append,
            )
        )
        for _ in range(500):
            if pgids and len(group_members(pgids[0])) >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    wait_until(lambda: not group_members(pgids[0]), 5, "the cancelled script's group to go")


def test_missing_program_and_unknown_user_are_failures_not_exceptions(tmp_path: Path) -> None:
    creds = Credentials.resolve(ME)
    gone = asyncio.run(run_command((str(tmp_path / "nope"),), timeout=1, creds=creds))
    assert not gone.ok and "does not exist" in (gone.error or "")
    with pytest.raises(KeyError, match="does not exist"):
        Credentials.resolve("no-such-user-vigil")


def test_script_security_refuses_a_group_writable_directory(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    prog = script(loose, "chk.sh", "exit 0")
    loose.chmod(0o775)
    problem = security_problem((str(prog),))
    assert problem is not None and "refusing" in problem
    result = asyncio.run(
        run_command((str(prog),), timeout=1, creds=Credentials.resolve(ME), secure=True)
    )
    assert not result.ok and result.error is not None and "script security" in result.error
    assert stat.S_IMODE(loose.stat().st_mode) == 0o775


# ------------------------------------------------------------------ script tracker


def script_cfg(path: Path, **kw: Any) -> VrrpScriptConfig:
    base: dict[str, Any] = {
        "name": "chk",
        "script": str(path),
        "argv": (str(path),),
        "interval": 0.05,
        "timeout": 2.0,
        "user": ME,
    }
    base.update(kw)
    return VrrpScriptConfig(**base)


def test_script_tracker_falls_and_rises_with_the_flag(tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    chk = script(tmp_path, "chk.sh", f'[ ! -e "{flag}" ]')
    tracker = ScriptTracker(script_cfg(chk, rise=2, fall=3), secure=False)
    changes: list[tuple[str, int, int]] = []
    tracker.subscribe(
        lambda t: changes.append((str(t.state), t.counter.failures, t.counter.successes))
    )

    async def main() -> None:
        await tracker.start()
        try:
            await until(lambda: tracker.runs >= 2, "two passing runs")
            assert tracker.ok and not changes
            flag.touch()
            await until(lambda: changes, "the script to be FAILED")
            flag.unlink()
            await until(lambda: len(changes) == 2, "the script to be OK again")
        finally:
            await tracker.stop()

    asyncio.run(main())
    assert changes == [("FAILED", 3, 0), ("OK", 0, 2)]
    assert "in a row" in tracker.reason
    view = tracker.view()
    assert view["kind"] == "script" and view["state"] == "OK" and view["fall"] == 3


def test_init_fail_starts_failed(tmp_path: Path) -> None:
    chk = script(tmp_path, "chk.sh", "exit 0")
    tracker = ScriptTracker(script_cfg(chk, init_fail=True), secure=False)
    assert not tracker.ok

    async def main() -> None:
        await tracker.start()
        try:
            await until(lambda: tracker.ok, "one success to make it OK (rise 1)")
        finally:
            await tracker.stop()

    asyncio.run(main())


async def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------ file tracker


def test_file_tracker_reads_changes_and_init_file(tmp_path: Path) -> None:
    path = tmp_path / "prio"
    tracker = FileTracker(TrackFileConfig(name="f", file=str(path), weight=10, init_file=3))
    seen: list[int] = []
    tracker.subscribe(lambda t: seen.append(t.value))  # type: ignore[attr-defined]

    async def main() -> None:
        await tracker.start()
        try:
            assert path.read_text().strip() == "3", "init_file must create the file"
            assert tracker.value == 3 and tracker.effect(10).delta == 30
            path.write_text("-2\n")
            tracker.poll()
            assert tracker.effect(10).delta == -20
            tracker.poll()  # unchanged file: no second notification
            path.write_text("junk")
            tracker.poll()
            assert not tracker.ok and "does not hold an integer" in tracker.reason
            path.unlink()
            tracker.poll()
            assert "cannot read" in tracker.reason and tracker.value == 0
        finally:
            await tracker.stop()

    asyncio.run(main())
    assert seen == [-2, 0]


# ------------------------------------------------------------------ manager


class RecordingInstance:
    """Stands in for InstanceRuntime: records fault and priority hooks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.faults: dict[str, str] = {}
        self.deltas: dict[str, int] = {}
        self.calls = 0

    def set_fault(self, source: str, reason: str) -> None:
        self.calls += source not in self.faults
        self.faults[source] = reason

    def clear_fault(self, source: str, reason: str) -> None:
        self.calls += self.faults.pop(source, None) is not None

    def set_priority_delta(self, source: str, delta: int) -> None:
        if self.deltas.get(source, 0) != delta:
            self.calls += 1
        if delta:
            self.deltas[source] = delta
        else:
            self.deltas.pop(source, None)


class Host:
    def __init__(self) -> None:
        self.instances: dict[str, RecordingInstance] = {}
        self.events: list[tuple[str, str | None, str, dict[str, Any]]] = []
        self.links: dict[str, str | None] = {"eth1": None}

    def publish(self, kind: str, instance: str | None, message: str, **data: Any) -> None:
        self.events.append((kind, instance, message, data))

    async def link_problem(self, ifname: str) -> str | None:
        return self.links.get(ifname, f"interface {ifname} does not exist")


class TrackerManager:
    """The core's tracker service and VRRP's instance tracking, wired as the agent does."""

    def __init__(self, host: Host) -> None:
        self.registry = TrackerRegistry()
        self.service = TrackerService(self.registry, host.link_problem)
        self.tracking = InstanceTracking(host, self.registry)

    @property
    def trackers(self) -> dict[str, Any]:
        return self.service.trackers

    async def start(self, config: Config) -> None:
        self.service.configure(config.section("track"))
        await self.tracking.start(config.section("vrrp"))

    async def apply(self, config: Config) -> None:
        await self.service.apply(config.section("track"))
        await self.tracking.apply(config.section("vrrp"))

    async def stop(self) -> None:
        await self.tracking.stop()
        await self.service.stop()

    def attach(self, inst: Any) -> None:
        self.tracking.attach(inst)

    def link_event(self, ev: LinkEvent) -> None:
        self.service.link_event(ev)

    def view(self, name: str) -> list[dict[str, Any]]:
        return self.tracking.view(name)

    def metrics(self) -> Any:
        return tracker_metrics(self.registry.trackers())


def config(path: Path, file_weight: int = 10, router: str = "n1") -> Config:
    return validate_data(
        {
            "global": {"router_id": router},
            "track_files": {"prio": {"file": str(path), "weight": file_weight}},
            "vrrp_instances": [
                {
                    "name": "VI_1",
                    "interface": "eth0",
                    "vrid": 51,
                    "virtual_ipaddresses": ["10.0.0.100/24"],
                    "track": {"interfaces": ["eth1"], "files": ["prio"]},
                },
                {
                    "name": "VI_2",
                    "interface": "eth0",
                    "vrid": 52,
                    "virtual_ipaddresses": ["10.0.0.101/24"],
                    "track": {"interfaces": [{"name": "eth1", "weight": -30}]},
                },
            ],
        },
        check_files=False,
    )


def test_manager_applies_events_and_keeps_state_across_reloads(tmp_path: Path) -> None:
    path = tmp_path / "prio"
    path.write_text("2\n")
    host = Host()
    vi1, vi2 = RecordingInstance("VI_1"), RecordingInstance("VI_2")
    host.instances = {"VI_1": vi1, "VI_2": vi2}
    manager = TrackerManager(host)

    async def main() -> None:
        await manager.start(config(path))
        assert set(manager.trackers) == {"interface:eth1", "file:prio"}
        manager.attach(vi1)  # type: ignore[arg-type]
        manager.attach(vi2)  # type: ignore[arg-type]
        assert vi1.deltas == {"file:prio": 20} and not vi1.faults
        assert vi2.deltas == {} and not vi2.faults

        manager.link_event(LinkEvent("eth1", 3, up=True, carrier=False))
        assert "interface:eth1" in vi1.faults and "carrier" in vi1.faults["interface:eth1"]
        assert vi2.deltas == {"interface:eth1": -30} and not vi2.faults
        kinds = [(e[0], e[1], e[3]["tracker"]) for e in host.events]
        assert kinds == [("tracker", "VI_1", "eth1"), ("tracker", "VI_2", "eth1")]
        assert host.events[1][3]["delta"] == -30 and host.events[0][3]["fault"] is True

        path.write_text("-1\n")
        file_tracker = manager.trackers["file:prio"]
        assert isinstance(file_tracker, FileTracker)
        file_tracker.poll()
        assert vi1.deltas["file:prio"] == -10

        # an unrelated reload: same trackers, same state, no hook call at all
        calls = (vi1.calls, vi2.calls)
        kept = manager.trackers["file:prio"]
        await manager.apply(config(path, router="n9"))
        assert manager.trackers["file:prio"] is kept
        assert (vi1.calls, vi2.calls) == calls

        # a changed track file definition replaces only that tracker
        eth1 = manager.trackers["interface:eth1"]
        await manager.apply(config(path, file_weight=5))
        assert manager.trackers["file:prio"] is not kept
        assert manager.trackers["interface:eth1"] is eth1
        assert vi1.deltas["file:prio"] == -5
        assert "interface:eth1" in vi1.faults

        views = {v["kind"]: v for v in manager.view("VI_1")}
        assert views["file"]["value"] == -1 and views["file"]["delta"] == -5
        assert views["interface"]["fault"] is True and views["interface"]["state"] == "FAILED"
        metrics = {s.labels["tracker"]: s.value for m in manager.metrics() for s in m.samples}
        assert metrics == {"eth1": 0.0, "prio": 1.0}

        manager.link_event(LinkEvent("eth1", 3, up=True, carrier=True))
        assert not vi1.faults and vi2.deltas == {}
        await manager.stop()
        assert not manager.trackers

    asyncio.run(main())
