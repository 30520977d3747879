"""The IPVS subsystem with a fake kernel (no root, no IPVS): what it sends, and when.

:class:`FakeKernel` stands in for :class:`vigil.ipvs.kernel.IpvsKernel` (same coroutines,
same errors, a table in memory), because this host's kernel has no IPVS; the real one is
exercised in tests/vm. Real servers are health-checked with FILE checks on files of the
test's (weight 0: the file holding 0 is up, anything else down), so a test flips a real
server's health by writing a file, with no network at all. Every wait is on an observed
condition with a deadline.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import os
import pwd
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from loop_turns import LoopTurns
from prometheus_client import CollectorRegistry

from vigil.config import ConfigError
from vigil.events import EventBus, EventPublisher
from vigil.faststart import PLAN_FILE, LoadedPlan, messages, read_plan
from vigil.ipvs import SPEC
from vigil.ipvs.config import IpvsConfig
from vigil.ipvs.genl import Reply
from vigil.ipvs.journal import cleanup
from vigil.ipvs.kernel import (
    Destination,
    DestinationState,
    IpvsError,
    Service,
    ServiceKey,
    ServiceState,
    SyncDaemon,
    _IpvsMsg,
    parse_destination,
    parse_service,
)
from vigil.ipvs.runtime import FULL_CHECK_EVERY, IpvsSubsystem
from vigil.ipvs.startplan import current_key, start_table
from vigil.journal import CleanupReport, JournalNamespace
from vigil.subsystem import SubsystemContext
from vigil.subsystems import diff_configs, validate_data
from vigil.track.base import Tracker, TrackerState
from vigil.track.registry import TrackerRegistry

VIP = "10.62.0.100"
WEB = ServiceKey.inet("tcp", VIP, 80)


# ---------------------------------------------------------------------------- the fake


def _err(op: str, target: str, code: int) -> IpvsError:
    return IpvsError(op, target, code, errno.errorcode.get(code, str(code)))


@dataclass
class FakeKernel:
    """IpvsKernel's coroutines over an in-memory table; ``log`` lists every write."""

    netns: str | None = None
    family: int = 0x1E  # the IPVS family's id (IpvsKernel's while open)
    available: bool = True
    services_: dict[ServiceKey, Service] = field(default_factory=dict)
    dests: dict[ServiceKey, dict[tuple[Any, int], Destination]] = field(default_factory=dict)
    daemons: dict[str, SyncDaemon] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    requests: int = 0
    dumps: int = 0
    daemon_lists: int = 0
    proc: bool = True  # offers /proc/net/ip_vs (False: as in another namespace)
    proc_reads: int = 0
    on_write: Callable[[str], None] | None = None

    async def open(self) -> None:
        if not self.available:
            raise IpvsError(
                "open", "IPVS generic netlink", errno.ENOENT, "this kernel has no IPVS (fake)"
            )

    async def close(self) -> None:
        return None

    def _write(self, what: str) -> None:
        self.requests += 1
        self.log.append(what)
        if self.on_write is not None:
            self.on_write(what)

    def proc_table(self) -> str | None:
        """/proc/net/ip_vs as the kernel prints it (ip_vs_ctl.c, ip_vs_info_seq_show)."""
        if not self.proc:
            return None
        self.proc_reads += 1
        lines = [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn",
        ]
        fwd = {"nat": "Masq", "dr": "Route", "tun": "Tunnel", "local": "Local"}
        for key, svc in self.services_.items():
            if key.fwmark is not None:
                head = f"FWM  {key.fwmark:08X} {svc.scheduler} "
            elif key.family == 4:
                head = f"{str(key.protocol).upper()}  {int(key.addr):08X}:{key.port:04X} "  # type: ignore[arg-type]
                head += f"{svc.scheduler} "
            else:
                assert isinstance(key.addr, ipaddress.IPv6Address)
                head = f"{str(key.protocol).upper()}  [{key.addr.exploded}]:{key.port:04X} "
                head += f"{svc.scheduler} "
            if svc.persistence_timeout:
                head += f"persistent {svc.persistence_timeout} FFFFFFFF"
            lines.append(head)
            for d in self.dests[key].values():
                addr = f"{int(d.addr):08X}" if d.addr.version == 4 else f"[{d.addr.exploded}]"
                lines.append(
                    f"  -> {addr}:{d.port:04X}      {fwd[d.forward]:<7} {d.weight:<6} "
                    f"{0:<10} {0:<10}"
                )
        return "\n".join(lines) + "\n"

    async def services(self, only: Any = None) -> list[ServiceState]:
        self.requests += 1
        self.dumps += 1
        out = []
        for key, svc in self.services_.items():
            if only is not None and key not in only:
                continue
            self.requests += 1
            dests = tuple(DestinationState(d) for d in self.dests[key].values())
            out.append(ServiceState(svc, dests))
        return out

    async def destinations(self, key: ServiceKey) -> list[DestinationState]:
        self.requests += 1
        if key not in self.services_:
            raise _err("list destinations of", str(key), errno.ESRCH)
        return [
            DestinationState(d, active_conns=1 if d.weight == 0 else 0)
            for d in self.dests[key].values()
        ]

    async def add_service(self, svc: Service) -> None:
        self._write(f"add_service {svc.key}")
        if svc.key in self.services_:
            raise _err("add service", str(svc.key), errno.EEXIST)
        self.services_[svc.key] = svc
        self.dests[svc.key] = {}

    async def set_service(self, svc: Service) -> None:
        self._write(f"set_service {svc.key}")
        if svc.key not in self.services_:
            raise _err("change service", str(svc.key), errno.ESRCH)
        self.services_[svc.key] = svc

    async def delete_service(self, key: ServiceKey) -> None:
        self._write(f"delete_service {key}")
        if key not in self.services_:
            raise _err("delete service", str(key), errno.ESRCH)
        del self.services_[key]
        del self.dests[key]

    async def add_destination(self, key: ServiceKey, dest: Destination) -> None:
        self._write(f"add_destination {dest} w{dest.weight}")
        if key not in self.services_:
            raise _err("add destination", str(dest), errno.ESRCH)
        if (dest.addr, dest.port) in self.dests[key]:
            raise _err("add destination", str(dest), errno.EEXIST)
        self.dests[key][(dest.addr, dest.port)] = dest

    async def set_destination(self, key: ServiceKey, dest: Destination) -> None:
        self._write(f"set_destination {dest} w{dest.weight}")
        if key not in self.services_ or (dest.addr, dest.port) not in self.dests[key]:
            raise _err("change destination", str(dest), errno.ENOENT)
        self.dests[key][(dest.addr, dest.port)] = dest

    async def delete_destination(self, key: ServiceKey, addr: Any, port: int) -> None:
        self._write(f"delete_destination {addr}:{port}")
        dests = self.dests.get(key, {})
        if (addr, port) not in dests:
            raise _err("delete destination", f"{addr}:{port}", errno.ENOENT)
        del dests[(addr, port)]

    async def sync_daemons(self) -> list[SyncDaemon]:
        self.requests += 1
        self.daemon_lists += 1
        return list(self.daemons.values())

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        self._write(f"start_daemon {daemon.state}")
        if daemon.state in self.daemons:
            raise _err("start", str(daemon), errno.EEXIST)
        self.daemons[daemon.state] = daemon

    async def stop_sync_daemon(self, state: str) -> None:
        self._write(f"stop_daemon {state}")
        if self.daemons.pop(state, None) is None:
            raise _err("stop", state, errno.ESRCH)

    def weights(self, key: ServiceKey = WEB) -> dict[str, int]:
        return {str(d): d.weight for d in self.dests.get(key, {}).values()}


class VrrpState(Tracker):
    """Stands in for VRRP's tracker ``vrrp:<instance>`` (OK while MASTER)."""

    kind = "vrrp"

    def __init__(self, name: str) -> None:
        super().__init__(name, TrackerState.FAILED)
        self.state_word = "BACKUP"

    def go(self, word: str) -> None:
        self.state_word = word
        self._set_state(TrackerState.OK if word == "MASTER" else TrackerState.FAILED, word)

    def details(self) -> dict[str, Any]:
        return {"vrrp_state": self.state_word}


# ---------------------------------------------------------------------------- harness


@dataclass
class Harness:
    sub: IpvsSubsystem
    kernel: FakeKernel
    bus: EventBus
    files: Path
    state_dir: Path
    trackers: TrackerRegistry

    def health(self, octet: int, up: bool) -> None:
        (self.files / f"rs{octet}").write_text("0\n" if up else "1\n")

    def events(self, kind: str) -> list[Any]:
        return [e for e in self.bus.since(0) if e.kind == kind]

    async def until(self, cond: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for _ in range(int(timeout / 0.01) + 2):
            value = cond()
            if value:
                return value
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}; kernel: {self.kernel.weights()}")


def section(files: Path, *, servers: tuple[int, ...] = (11, 12), **extra: Any) -> IpvsConfig:
    vs: dict[str, Any] = {
        "name": "web",
        "address": VIP,
        "port": 80,
        "scheduler": "rr",
        "delay_loop": 0.05,
        "real_servers": [
            {
                "address": f"10.62.1.{o}",
                "checks": [{"type": "file", "path": str(files / f"rs{o}"), "weight": 0,
                            "delay_loop": 0.02}],
            }
            for o in servers
        ],
    }  # fmt: skip
    top = {k: v for k, v in extra.items() if k in ("ipvs_sync_daemon",)}
    vs.update({k: v for k, v in extra.items() if k not in top})
    vrrp = {"name": "VI_1", "interface": "eth0", "vrid": 1, "virtual_ipaddresses": [f"{VIP}/24"]}
    data: dict[str, Any] = {"vrrp_instances": [vrrp], "virtual_servers": [vs], **top}
    model: IpvsConfig = validate_data(data, check_files=False).section("ipvs")
    return model


def context(
    state_dir: Path, bus: EventBus, trackers: TrackerRegistry, sec: Any, digest: Any = None
) -> Any:
    @dataclass
    class Netlink:
        netns: str | None = None

    @dataclass
    class Kernel:
        netlink: Netlink = field(default_factory=Netlink)

    ns = JournalNamespace(state_dir, "ipvs")
    ns.load()
    return SubsystemContext(
        name="ipvs",
        events=EventPublisher(bus, "ipvs", SPEC.warning_kinds),
        registry=CollectorRegistry(),
        state_dir=state_dir,
        router_id="t",
        globals=None,  # type: ignore[arg-type]
        journal=ns,
        kernel=Kernel(),  # type: ignore[arg-type]
        trackers=trackers,
        section=sec,
        # the agent's running config: only what the start plan's writer reads of it
        config=(
            None
            if digest is None
            else digest
            if callable(digest)
            else lambda: SimpleNamespace(digest=digest, sections={"ipvs": sec})
        ),
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """The health files of rs11..rs13 (0: up)."""
    path = tmp_path / "health"
    path.mkdir()
    for o in (11, 12, 13):
        (path / f"rs{o}").write_text("0\n")
    return path


@pytest.fixture
async def harness(tmp_path: Path, files: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Harness] = []

    async def make(
        sec: IpvsConfig | None = None,
        kernel: FakeKernel | None = None,
        *,
        start: bool = True,
        trackers: TrackerRegistry | None = None,
        digest: Any = None,  # the config file's digest, or a getter of the running config
    ) -> Harness:
        sec = sec or section(files)
        state_dir = tmp_path / "state"
        state_dir.mkdir(exist_ok=True)
        bus = EventBus()
        trackers = trackers or TrackerRegistry()
        sub = IpvsSubsystem(context(state_dir, bus, trackers, sec, digest))
        fake = kernel or FakeKernel()
        sub.kernel = fake  # type: ignore[assignment]
        h = Harness(sub, fake, bus, files, state_dir, trackers)
        made.append(h)
        if start:
            await sub.start(sec)
        return h

    yield make
    for h in made:
        await h.sub.stop()


def journal(state_dir: Path) -> dict[str, Any]:
    return dict(json.loads((state_dir / "ipvs-journal.json").read_text())["entries"])


# ---------------------------------------------------------------------------- tests


async def test_start_programs_the_table_journal_first(harness: Any, tmp_path: Path) -> None:
    seen: list[bool] = []
    fake = FakeKernel()

    def on_write(what: str) -> None:
        if what.startswith("add_service"):
            path = tmp_path / "state" / "ipvs-journal.json"
            seen.append(path.exists() and "service:tcp|10.62.0.100|80" in path.read_text())

    fake.on_write = on_write
    h = await harness(kernel=fake)
    assert seen == [True], "the journal names the service before it is added"
    assert h.kernel.log == [
        f"add_service {WEB}",
        "add_destination 10.62.1.11:80 w1",
        "add_destination 10.62.1.12:80 w1",
    ]
    status = h.sub.status()
    assert status["kernel"]["available"] is True
    (vs,) = status["virtual_servers"]
    assert vs["in_ipvs"] is True and vs["quorum"]["state"] == "UP"
    assert [r["ipvs_weight"] for r in vs["real_servers"]] == [1, 1]


async def test_a_dead_server_is_one_delete_and_comes_back_with_one_add(harness: Any) -> None:
    h = await harness()
    h.kernel.log.clear()
    h.health(12, up=False)
    await h.until(lambda: "10.62.1.12:80" not in h.kernel.weights(), "rs12 removed")
    assert h.kernel.log == ["delete_destination 10.62.1.12:80"]
    (down,) = h.events("real_server_down")
    assert down.instance == "web" and down.data["real_server"] == "10.62.1.12:80"
    h.health(12, up=True)
    await h.until(lambda: "10.62.1.12:80" in h.kernel.weights(), "rs12 back")
    assert h.kernel.log == ["delete_destination 10.62.1.12:80", "add_destination 10.62.1.12:80 w1"]
    assert h.events("real_server_up")


async def test_a_death_during_a_drift_check_is_applied_right_after_it(harness: Any) -> None:
    """A real server that goes down while the worker awaits the kernel's dump must leave
    IPVS in the pass right after, not only at the next drift check (bench.ipvs found the
    mark cleared at the end of the pass that had not seen it)."""
    h = await harness()
    await h.until(lambda: h.kernel.weights() == {"10.62.1.11:80": 1, "10.62.1.12:80": 1}, "up")
    gate, entered = asyncio.Event(), asyncio.Event()
    gate.set()
    dump = h.kernel.services

    async def gated(only: Any = None) -> list[ServiceState]:
        if not gate.is_set():
            entered.set()
            await gate.wait()
        return await dump(only)

    h.kernel.services = gated  # type: ignore[method-assign]
    gate.clear()
    await asyncio.wait_for(entered.wait(), 10)  # a drift check is waiting for its dump
    held = h.sub.stats["drift_checks"]
    h.health(12, False)
    await h.until(lambda: h.sub.real_server_state("web", "10.62.1.12:80") == "DOWN", "verdict")
    gate.set()
    await h.until(lambda: h.kernel.weights() == {"10.62.1.11:80": 1}, "rs12 out of IPVS")
    assert h.sub.stats["drift_checks"] == held, "it waited for another drift check"


async def test_a_large_config_starts_without_holding_the_loop(harness: Any) -> None:
    """Taking on thousands of real servers is pure work: the engine yields between them
    (every slice; a slice of 0 here, so every server) instead of one long callback that
    holds every VRRP advert and BFD packet (14 s under QEMU at 1000 x 10)."""
    sec = validate_data(
        {
            "virtual_servers": [
                {"name": "web", "address": VIP, "port": 80,
                 "real_servers": [{"address": f"10.62.1.{o}"} for o in range(1, 201)]}
            ]
        },
        check_files=False,
    ).section("ipvs")  # fmt: skip
    h = await harness(sec, start=False)
    h.sub.slice_s = 0.0
    async with LoopTurns() as turns:
        await h.sub.start(sec)
    assert turns.count >= 2 * 200, turns.count  # once per server added, once started
    assert len(h.kernel.weights()) == 200


async def test_drift_is_corrected_and_reported(harness: Any) -> None:
    h = await harness()
    h.kernel.services_.clear()  # ipvsadm -C
    h.kernel.dests.clear()
    await h.until(lambda: len(h.kernel.weights()) == 2, "table restored")
    (drift,) = await h.until(lambda: h.events("drift_corrected"), "drift event")
    assert f"add service {WEB}: missing" in drift.data["findings"]
    h.kernel.dests[WEB][(next(iter(h.kernel.dests[WEB])))] = Destination(
        addr=next(iter(h.kernel.dests[WEB]))[0], port=80, weight=9
    )
    await h.until(lambda: set(h.kernel.weights().values()) == {1}, "weight restored")
    assert "weight 9, want 1" in h.events("drift_corrected")[-1].message


async def test_drift_seen_half_done_is_reported_in_full_when_the_correction_fails(
    harness: Any,
) -> None:
    """``ipvsadm -C`` racing a dump (found by the VM suite): the dump saw the service
    without its real servers, and the flush removed the service before the correction's
    adds reached it (ESRCH). The dump that redoes the correction reports the missing
    service as drift too, not only the first half."""
    h = await harness()
    await h.until(lambda: h.sub.stats["light_checks"] >= 1, "a light check")
    dump = h.kernel.services
    raced: list[bool] = []

    async def racing(only: Any = None) -> list[ServiceState]:
        states = await dump(only)
        if not raced:
            raced.append(True)
            h.kernel.services_.clear()  # the flush finishes after the dump
            h.kernel.dests.clear()
        return states

    h.kernel.services = racing  # type: ignore[method-assign]
    h.kernel.dests[WEB].clear()  # the flush has removed the real servers so far
    await h.until(lambda: len(h.kernel.weights()) == 2, "table restored")
    findings = [f for e in h.events("drift_corrected") for f in e.data["findings"]]
    assert any(f.startswith("add ") and f"to {WEB}: missing" in f for f in findings), findings
    assert f"add service {WEB}: missing" in findings, findings


async def test_drift_checks_read_proc_and_dump_only_every_tenth(harness: Any) -> None:
    """Between full dumps a drift check is one read of /proc/net/ip_vs: no netlink."""
    h = await harness()
    await h.until(lambda: h.sub.stats["light_checks"] >= 1, "a light check")
    dumps, light = h.kernel.dumps, h.sub.stats["light_checks"]
    await h.until(lambda: h.sub.stats["light_checks"] >= light + 2 * FULL_CHECK_EVERY, "20 more")
    checks = h.sub.stats["light_checks"] - light
    assert h.kernel.dumps - dumps <= checks // (FULL_CHECK_EVERY - 1) + 1, (
        "a dump at most every tenth drift check"
    )
    assert h.kernel.dumps - dumps >= 1, "the full dump still comes"
    assert not h.events("drift_corrected")


async def test_a_proc_file_that_misreads_is_counted_and_said_once(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The kernel's /proc/net/ip_vs drops part of a large table while another namespace
    holds IPVS services (seen in the VM); netlink shows it all. Such a check is a dump
    with nothing to correct: counted as a misread, warned about once, not drift."""
    h = await harness()
    await h.until(lambda: h.sub.stats["light_checks"] >= 1, "a light check")
    whole = h.kernel.proc_table
    h.kernel.proc_table = lambda: "\n".join(  # type: ignore[method-assign]
        line for line in (whole() or "").splitlines() if "->" not in line or "Remote" in line
    )
    with caplog.at_level("WARNING", logger="vigil.ipvs"):
        await h.until(lambda: h.sub.stats["proc_misreads"] >= 3, "three misreads", timeout=10)
    warned = [r for r in caplog.records if "does not show this namespace" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]
    assert not h.events("drift_corrected")
    assert len(h.kernel.weights()) == 2  # nothing was touched


async def test_drift_proc_cannot_show_is_corrected_by_the_full_dump(harness: Any) -> None:
    """A threshold is not in /proc/net/ip_vs: the periodic netlink dump finds it."""
    h = await harness()
    await h.until(lambda: h.sub.stats["light_checks"] >= 1, "a light check")
    key = next(iter(h.kernel.dests[WEB]))
    old = h.kernel.dests[WEB][key]
    h.kernel.dests[WEB][key] = Destination(
        addr=old.addr, port=old.port, weight=old.weight, upper_threshold=77
    )
    (drift,) = await h.until(lambda: h.events("drift_corrected"), "drift event", timeout=10)
    assert "upper threshold" in drift.message or "threshold" in drift.message, drift.message
    assert h.kernel.dests[WEB][key].upper_threshold == 0


async def test_a_failed_dump_or_op_does_not_stop_the_light_checks(harness: Any) -> None:
    """A failure makes the next drift check a full one (to retry); once that went
    through, /proc answers again (a failure remembered for its report must not turn
    every later check into a dump)."""
    h = await harness()
    await h.until(lambda: h.sub.stats["light_checks"] >= 1, "a light check")
    dump = h.kernel.services
    failed: list[bool] = []

    async def once(only: Any = None) -> list[ServiceState]:
        if not failed:
            failed.append(True)
            raise _err("list", "IPVS services", errno.EIO)
        return await dump(only)

    h.kernel.services = once  # type: ignore[method-assign]
    h.kernel.services_.clear()  # ipvsadm -C: /proc differs, the dump fails once
    h.kernel.dests.clear()
    await h.until(lambda: len(h.kernel.weights()) == 2, "table restored after the failure")
    assert failed and h.events("ipvs_error")
    light = h.sub.stats["light_checks"]
    await h.until(lambda: h.sub.stats["light_checks"] >= light + 3, "light checks again")


async def test_without_proc_every_drift_check_dumps(harness: Any) -> None:
    h = await harness(kernel=FakeKernel(proc=False))
    await h.until(lambda: h.sub.stats["drift_checks"] >= 3, "three drift checks")
    assert h.sub.stats["light_checks"] == 0


async def test_adoption_keeps_the_service_and_corrects_it_in_place(
    harness: Any, tmp_path: Path
) -> None:
    """What a previous run left (journalled) is adopted: set, not delete + add."""
    fake = FakeKernel()
    fake.services_[WEB] = Service(WEB, "wlc")
    fake.dests[WEB] = {
        (d.addr, d.port): d
        for d in (
            Destination(addr="10.62.1.11", port=80, weight=5),  # type: ignore[arg-type]
            Destination(addr="10.62.1.99", port=80, weight=1),  # type: ignore[arg-type]
        )
    }
    other = ServiceKey.inet("tcp", "10.9.9.9", 22)  # someone else's: never touched
    fake.services_[other] = Service(other, "rr")
    fake.dests[other] = {}
    state = tmp_path / "state"
    state.mkdir()
    (state / "ipvs-journal.json").write_text(
        json.dumps(
            {
                "version": 2,
                "entries": {
                    "service:tcp|10.62.0.100|80": {
                        "kind": "service",
                        "vs": "web",
                        "service": {"protocol": "tcp", "address": VIP, "port": 80},
                    }
                },
            }
        )
    )
    h = await harness(kernel=fake)
    assert h.kernel.log == [
        f"set_service {WEB}",
        "add_destination 10.62.1.12:80 w1",
        "set_destination 10.62.1.11:80 w1",
        "delete_destination 10.62.1.99:80",
    ]
    assert other in h.kernel.services_
    (adopted,) = h.events("ipvs_adopted")
    assert adopted.data["services"] == [str(WEB)]


async def test_the_startup_cleanup_removes_only_what_the_config_no_longer_wants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vigil.ipvs.kernel as kernel_module
    from vigil.ipvs import journal as ipvs_journal

    state = tmp_path / "state"
    state.mkdir()
    ns = JournalNamespace(state, "ipvs")
    for port in (80, 8080):
        service = {"protocol": "tcp", "address": VIP, "port": port}
        ns.record(f"service:tcp|{VIP}|{port}", {"kind": "service", "vs": "x", "service": service})
    ns.record("sync:master", {"kind": "sync_daemon", "state": "master", "interface": "eth0"})
    ns.flush()
    fake = FakeKernel()
    old = ServiceKey.inet("tcp", VIP, 8080)
    for key in (WEB, old):
        fake.services_[key] = Service(key, "rr")
        fake.dests[key] = {}
    fake.daemons["master"] = SyncDaemon("master", "eth0")
    lines: list[str] = []
    report = CleanupReport("ipvs", lambda kind, key, msg, data: lines.append(f"({key}) {msg}"))
    ipvs_journal.adopt_at_startup(ns, [f"service:tcp|{VIP}|80"])
    monkeypatch.setattr(kernel_module, "IpvsKernel", lambda netns=None: fake)
    await cleanup(ns, report, None)
    assert lines == [
        "(service:tcp|10.62.0.100|8080) removed service tcp 10.62.0.100:8080 (x)",
        "(sync:master) removed master sync daemon on eth0",
    ]
    assert list(fake.services_) == [WEB] and fake.daemons == {}
    assert list(ns.entries) == [f"service:tcp|{VIP}|80"]


async def test_quorum_loss_brings_the_sorry_server_and_publishes_the_tracker(
    harness: Any, files: Path
) -> None:
    trackers = TrackerRegistry()
    h = await harness(section(files, quorum=2, sorry_server="10.62.1.99"), trackers=trackers)
    tracker = trackers.get("ipvs_quorum:web")
    assert tracker is not None and tracker.ok
    h.health(11, up=False)
    await h.until(lambda: h.kernel.weights() == {"10.62.1.99:80": 1}, "sorry server only")
    assert not tracker.ok
    (lost,) = h.events("quorum_lost")
    assert "sorry server 10.62.1.99:80 takes over" in lost.message
    h.health(11, up=True)
    await h.until(lambda: "10.62.1.99:80" not in h.kernel.weights(), "sorry server gone")
    assert tracker.ok and h.events("quorum_gained")
    assert h.kernel.weights() == {"10.62.1.11:80": 1, "10.62.1.12:80": 1}


async def test_the_sync_daemon_follows_the_vrrp_instance(harness: Any, files: Path) -> None:
    trackers = TrackerRegistry()
    vrrp = VrrpState("VI_1")
    trackers.publish(vrrp)
    sec = section(files, ipvs_sync_daemon={"interface": "eth0", "instance": "VI_1", "syncid": 7})
    h = await harness(sec, trackers=trackers)
    assert set(h.kernel.daemons) == {"backup"}
    vrrp.go("MASTER")
    await h.until(lambda: set(h.kernel.daemons) == {"master"}, "master daemon")
    assert h.kernel.log[-2:] == ["stop_daemon backup", "start_daemon master"]
    assert h.kernel.daemons["master"].syncid == 7
    vrrp.go("FAULT")
    await h.until(lambda: set(h.kernel.daemons) == {"backup"}, "backup daemon")
    assert [e.message.split(":")[0] for e in h.events("sync_daemon")][-2:] == [
        "master sync daemon on eth0 (syncid 7) stopped",
        "backup sync daemon on eth0 (syncid 7) started",
    ]
    assert set(journal(h.state_dir)) >= {"sync:backup"}


async def test_a_sync_daemon_stopped_by_someone_else_is_restarted_with_the_dumps(
    harness: Any, files: Path
) -> None:
    """The daemons are listed with the netlink dumps (every tenth drift check), not on the
    light checks in between: a stopped one comes back within ten delay_loops, reported."""
    trackers = TrackerRegistry()
    trackers.publish(VrrpState("VI_1"))
    sec = section(files, ipvs_sync_daemon={"interface": "eth0", "instance": "VI_1", "syncid": 7})
    h = await harness(sec, trackers=trackers)
    assert set(h.kernel.daemons) == {"backup"}
    await h.until(lambda: h.sub.stats["light_checks"] >= 1, "a light check")
    lists, dumps, light = h.kernel.daemon_lists, h.kernel.dumps, h.sub.stats["light_checks"]
    await h.until(lambda: h.sub.stats["light_checks"] >= light + 2 * FULL_CHECK_EVERY, "20 more")
    assert h.kernel.daemon_lists - lists <= h.kernel.dumps - dumps, "listed only with dumps"
    assert h.kernel.daemon_lists > lists, "but listed all the same"
    del h.kernel.daemons["backup"]  # ipvsadm --stop-daemon backup
    await h.until(lambda: set(h.kernel.daemons) == {"backup"}, "the daemon back", timeout=10)
    (drift,) = h.events("drift_corrected")
    assert "backup sync daemon was stopped by someone else" in drift.message


async def test_ha_suspend_holds_the_pool_and_resumes_checks_on_master(
    harness: Any, files: Path
) -> None:
    trackers = TrackerRegistry()
    vrrp = VrrpState("VI_1")
    trackers.publish(vrrp)
    h = await harness(section(files, ha_suspend="VI_1"), trackers=trackers)
    assert h.sub.engine is not None and h.sub.engine.servers() == []
    assert h.kernel.weights() == {"10.62.1.11:80": 1, "10.62.1.12:80": 1}  # assumed alive
    h.health(12, up=False)  # not checked while suspended: the pool is held
    vrrp.go("MASTER")
    await h.until(lambda: h.sub.engine is not None and h.sub.engine.servers(), "checks resumed")
    await h.until(lambda: "10.62.1.12:80" not in h.kernel.weights(), "rs12 seen down")
    assert [e.data["suspended"] for e in h.events("ha_suspend")] == [True, False]


async def test_reload_touches_only_what_changed(harness: Any) -> None:
    h = await harness()
    old_cfg = validate_data(
        {"virtual_servers": [h.sub.section.virtual_servers[0].to_dict()]}, check_files=False
    )
    new_sec = section(h.files, servers=(11, 12, 13))
    new_cfg = validate_data(
        {"virtual_servers": [new_sec.virtual_servers[0].to_dict()]}, check_files=False
    )
    diff = diff_configs(old_cfg, new_cfg).section("ipvs")
    assert diff is not None
    h.kernel.log.clear()
    await h.sub.apply(new_cfg.section("ipvs"), diff)
    assert h.kernel.log == ["add_destination 10.62.1.13:80 w1"]
    # the virtual server goes: its service (and only it) is deleted and forgotten
    empty = validate_data({}, check_files=False)
    await h.sub.apply(empty.section("ipvs"), diff_configs(new_cfg, empty).section("ipvs"))
    assert h.kernel.log[-1] == f"delete_service {WEB}"
    assert h.sub.ctx.journal.entries == {}
    assert h.sub.status()["virtual_servers"] == []


async def test_drain_and_enable_are_verified_and_persisted(harness: Any) -> None:
    h = await harness()
    result = await h.sub.control.drain("web", "10.62.1.11")
    assert result["message"] == "drained: weight 0 in IPVS"
    assert result["after"]["ipvs_weight"] == 0 and result["after"]["drained"] is True
    assert h.kernel.weights()["10.62.1.11:80"] == 0
    stored = json.loads((h.state_dir / "ipvs-control.json").read_text())
    assert stored == {"version": 1, "drained": {"web": ["10.62.1.11:80"]}}
    # --wait: the fake reports one active connection while the weight is 0
    waited = await h.sub.control.drain("web", "10.62.1.11:80", wait=True, timeout=0.6)
    assert waited["wait"]["outcome"] == "timeout" and waited["wait"]["active_connections"] == 1
    assert "1 active connection(s) still open after 0.6s" in waited["message"]
    assert h.events("real_server_drained")[0].data["real_server"] == "10.62.1.11:80"
    result = await h.sub.control.enable("web", "10.62.1.11:80")
    assert result["message"] == "drain lifted: weight 1 in IPVS"
    assert h.kernel.weights()["10.62.1.11:80"] == 1
    assert json.loads((h.state_dir / "ipvs-control.json").read_text())["drained"] == {}


async def test_drain_persists_across_a_restart(harness: Any) -> None:
    h = await harness()
    await h.sub.control.drain("web", "10.62.1.12:80")
    await h.sub.stop()
    h2 = await harness(kernel=FakeKernel())
    assert h2.kernel.weights() == {"10.62.1.11:80": 1, "10.62.1.12:80": 0}


async def test_without_ipvs_the_checks_run_and_actions_say_why(harness: Any) -> None:
    from vigil.ipvs.control import ControlError

    h = await harness(kernel=FakeKernel(available=False))
    status = h.sub.status()
    assert status["kernel"]["available"] is False
    assert "no IPVS" in status["kernel"]["error"]
    (ev,) = h.events("ipvs_unavailable")
    assert "IPVS is not available" in ev.message
    with pytest.raises(ControlError) as info:
        await h.sub.control.drain("web", "10.62.1.11:80")
    assert info.value.status == 503 and "no IPVS" in info.value.message
    with pytest.raises(ControlError) as info:
        await h.sub.control.drain("nope", "10.62.1.11:80")
    assert info.value.status == 404 and "this config has: web" in info.value.message
    h.health(12, up=False)
    await h.until(
        lambda: h.sub.real_server_state("web", "10.62.1.12:80") == "DOWN", "checks still run"
    )


async def test_stop_removes_what_it_added_and_empties_the_journal(harness: Any) -> None:
    h = await harness()
    await h.sub.stop()
    assert h.kernel.services_ == {}
    assert journal(h.state_dir) == {}


async def test_metrics_cover_servers_checks_and_the_kernel(harness: Any) -> None:
    h = await harness()
    names = {m.name for m in h.sub.collect_metrics()}
    assert {
        "vigil_ipvs_real_server_up",
        "vigil_ipvs_real_server_weight",
        "vigil_ipvs_check_latency_seconds",
        "vigil_ipvs_quorum_up",
        "vigil_ipvs_kernel_available",
        "vigil_ipvs_drift_corrections",
        "vigil_ipvs_sync_daemon_running",
    } <= names
    up = next(m for m in h.sub.collect_metrics() if m.name == "vigil_ipvs_real_server_up")
    assert {(s.labels["real_server"], s.value) for s in up.samples} == {
        ("10.62.1.11:80", 1.0),
        ("10.62.1.12:80", 1.0),
    }


async def test_status_and_metrics_built_in_slices_are_the_synchronous_ones(
    harness: Any, files: Path
) -> None:
    """The API builds the status section and the metric families a few virtual servers at
    a time (vigil.incremental); the result must be what the one-shot builders give."""
    h = await harness()
    await h.until(lambda: h.sub.observed, "a read of the kernel")
    h.health(12, False)
    await h.until(lambda: h.sub.real_server_state("web", "10.62.1.12:80") == "DOWN", "rs12 down")
    await h.sub.refresh()
    pause = h.sub._lock  # nothing changes the table while both are built
    async with pause:
        sync = h.sub.status()
        sliced = await h.sub.status_async()
        moving = ("latency_s", "counters", "last_result", "consecutive_failures", "last_error")
        for part in (sync, sliced):  # the checks run on between the two: compare the rest
            for vs in part["virtual_servers"]:
                for rs in vs["real_servers"]:
                    for c in [rs, *rs["checks"]]:
                        for key in moving:
                            c.pop(key, None)
        sync.pop("checker"), sliced.pop("checker")
        assert sliced == sync
        assert sync["virtual_servers"][0]["real_servers"][1]["state"] == "DOWN"
        names = [m.name for m in h.sub.collect_metrics()]
        assert [m.name for m in await h.sub.collect_metrics_async()] == names


async def test_a_file_check_moves_the_weight(harness: Any, files: Path) -> None:
    sec = section(files)
    vs = sec.virtual_servers[0].to_dict()
    vs["real_servers"][0]["checks"] = [
        {"type": "file", "path": str(files / "w11"), "weight": 2, "delay_loop": 0.02}
    ]
    (files / "w11").write_text("0\n")
    model = validate_data({"virtual_servers": [vs]}, check_files=False).section("ipvs")
    h = await harness(model)
    assert h.kernel.weights()["10.62.1.11:80"] == 1
    (files / "w11").write_text("3\n")
    await h.until(lambda: h.kernel.weights()["10.62.1.11:80"] == 7, "weight 1 + 3 x 2")
    (ev,) = h.events("real_server_weight")
    assert ev.data["was_weight"] == 1 and ev.data["weight"] == 7
    view = h.sub.status()["virtual_servers"][0]["real_servers"][0]
    assert (view["configured_weight"], view["effective_weight"], view["ipvs_weight"]) == (1, 7, 7)


async def test_notify_commands_and_omega(harness: Any, files: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    script = tmp_path / "note.sh"
    script.write_text(f'#!/bin/sh\necho "$VIGIL_EVENT $VIGIL_REAL_SERVER" >> {notes}\n')
    script.chmod(0o755)
    vs = section(files).virtual_servers[0].to_dict()
    vs.update(omega=True, quorum_down=str(script), quorum_up=str(script))
    for rs in vs["real_servers"]:
        rs.update(notify_down=str(script), notify_up=str(script))
    model = validate_data(
        {
            "global": {
                "script_user": pwd.getpwuid(os.geteuid()).pw_name,
                "script_security": False,
            },
            "virtual_servers": [vs],
        },
        check_files=False,
    ).section("ipvs")
    h = await harness(model)
    h.health(12, up=False)
    await h.until(lambda: notes.exists() and "down 10.62.1.12:80" in notes.read_text(), "down")
    h.health(12, up=True)
    await h.until(lambda: "up 10.62.1.12:80" in notes.read_text(), "notify_up")
    await h.sub.stop()  # omega: the down notifiers that apply run at shutdown
    lines = notes.read_text().splitlines()
    assert lines[-3:] == ["down 10.62.1.11:80", "down 10.62.1.12:80", "quorum_down "]
    assert all(e.data["ok"] for e in h.events("notify"))


def bfd_section(files: Path) -> IpvsConfig:
    """rs11 with a BFD check on session ``gw`` (delay_loop 30 s: only the session's own
    changes can move it within a test), rs12 with its FILE check."""
    sec = section(files)
    data: dict[str, Any] = {
        "bfd": {"sessions": [{"name": "gw", "peer": "10.62.1.254", "local": "10.62.1.1"}]},
        "vrrp_instances": [
            {"name": "VI_1", "interface": "eth0", "vrid": 1, "virtual_ipaddresses": [f"{VIP}/24"]}
        ],
        "virtual_servers": [sec.virtual_servers[0].to_dict()],
    }
    data["virtual_servers"][0]["real_servers"][0]["checks"] = [
        {"type": "bfd", "session": "gw", "delay_loop": 30}
    ]
    model: IpvsConfig = validate_data(data, check_files=False).section("ipvs")
    return model


async def test_a_bfd_check_follows_its_session_at_once(harness: Any, files: Path) -> None:
    """The BFD subsystem's tracker (the real class, fed by hand: no sockets here) drives
    the check; every move happens far sooner than its 30 s delay_loop."""
    from vigil.bfd.packet import State
    from vigil.bfd.subsystem import BfdTracker

    trackers = TrackerRegistry()
    gw = BfdTracker("gw")
    trackers.publish(gw)
    h = await harness(bfd_section(files), trackers=trackers)
    await h.until(lambda: h.kernel.weights() == {"10.62.1.12:80": 1}, "rs11 out (session Down)")
    h.kernel.log.clear()
    gw.update(State.UP, "session Up", {"bfd_state": "Up"})
    await h.until(lambda: "10.62.1.11:80" in h.kernel.weights(), "rs11 in", timeout=2.0)
    assert h.kernel.log == ["add_destination 10.62.1.11:80 w1"]
    gw.update(State.DOWN, "control detection time expired", {"bfd_state": "Down"})
    await h.until(lambda: "10.62.1.11:80" not in h.kernel.weights(), "rs11 out", timeout=2.0)
    first, down = [
        e for e in h.events("real_server_down") if e.data["real_server"] == "10.62.1.11:80"
    ]
    assert "session Down (starting)" in first.message  # the first read, before it came Up
    assert "BFD session gw" in down.message and "detection time expired" in down.message
    # the session disappearing (a reload removed it) counts as Down too
    gw.update(State.UP, "session Up", {"bfd_state": "Up"})
    await h.until(lambda: "10.62.1.11:80" in h.kernel.weights(), "rs11 back", timeout=2.0)
    trackers.withdraw("bfd:gw")
    await h.until(lambda: "10.62.1.11:80" not in h.kernel.weights(), "rs11 out", timeout=2.0)
    assert h.kernel.weights() == {"10.62.1.12:80": 1}


async def test_a_bfd_check_without_its_session_is_down(harness: Any, files: Path) -> None:
    h = await harness(bfd_section(files))  # nobody publishes bfd:gw
    await h.until(lambda: h.kernel.weights() == {"10.62.1.12:80": 1}, "rs11 out")
    (vs,) = h.sub.status()["virtual_servers"]
    rs11 = next(r for r in vs["real_servers"] if r["name"].endswith("10.62.1.11:80"))
    assert "no such session is running" in json.dumps(rs11)


def test_a_bfd_check_must_name_a_session(files: Path) -> None:
    data: dict[str, Any] = {
        "bfd": {"sessions": [{"name": "uplink", "peer": "10.62.1.254", "local": "10.62.1.1"}]},
        "virtual_servers": [section(files).virtual_servers[0].to_dict()],
    }
    data["virtual_servers"][0]["real_servers"][0]["checks"] = [{"type": "bfd", "session": "uplnk"}]
    with pytest.raises(ConfigError) as err:
        validate_data(data, check_files=False)
    text = str(err.value)
    assert "virtual_servers[0].real_servers[0].checks[0]" in text
    assert "no BFD session named 'uplnk'" in text and "did you mean 'uplink'" in text


# ---------------------------------------------------------------------------- start plan


def plan_table(plan: Any) -> dict[ServiceKey, tuple[Service, dict[str, Destination]]]:
    """What the plan's requests would build, decoded as the kernel would read them."""
    out = {}
    adds = messages(plan.adds)
    assert len(adds) == plan.count
    for i, add in enumerate(adds):
        attr = Reply(bytes(add[16:]), _IpvsMsg).get_attr("IPVS_CMD_ATTR_SERVICE")
        svc, _ = parse_service(attr)
        (gone,) = plan.delete_payloads([i])
        assert parse_service(Reply(gone, _IpvsMsg).get_attr("IPVS_CMD_ATTR_SERVICE"))[0].key == (
            svc.key
        ), "its delete names the same service"
        dests = {}
        for raw in plan.dest_messages([i]):
            dest = Reply(bytes(raw[16:]), _IpvsMsg).get_attr("IPVS_CMD_ATTR_DEST")
            d = parse_destination(dest, 4)
            dests[str(d.destination)] = d.destination
        out[svc.key] = (svc, dests)
    return out


async def test_the_start_plan_is_the_table_the_start_programmed_and_follows_drains(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vigil.ipvs.runtime as runtime_mod

    writes: list[Any] = []
    real_write = runtime_mod.write_plan

    def counting(state_dir: Path, plan: Any) -> None:
        real_write(state_dir, plan)  # (in a thread: counted once the file is there)
        writes.append(plan)

    monkeypatch.setattr(runtime_mod, "write_plan", counting)
    digest = "ab" * 32
    h = await harness(digest=digest)
    path = h.state_dir / PLAN_FILE
    await h.until(lambda: len(writes) == 1, "the start plan")
    plan = LoadedPlan(path.read_bytes())
    assert plan.key == current_key(h.state_dir, digest)[0]
    kernel = {
        key: (svc, {str(d): d for d in h.kernel.dests[key].values()})
        for key, svc in h.kernel.services_.items()
    }
    assert plan_table(plan) == kernel, "the plan builds what the start programmed"
    assert plan.journal_keys == list(journal(h.state_dir))
    assert json.loads(bytes(plan.journal_text))["entries"] == journal(h.state_dir)
    # nothing changed: due again, but not written again
    h.sub._plan_due = True
    await h.sub.settle()
    await h.until(lambda: not h.sub._plan_due, "the writer to look")
    assert len(writes) == 1
    # a drain changes the next start's table: the plan follows
    await h.sub.control.drain("web", "10.62.1.12")
    await h.until(lambda: len(writes) == 2, "the plan after the drain")
    plan = LoadedPlan(path.read_bytes())
    ((_, dests),) = plan_table(plan).values()
    assert {k: d.weight for k, d in dests.items()} == {"10.62.1.11:80": 1, "10.62.1.12:80": 0}
    assert plan.key == current_key(h.state_dir, digest)[0]


async def test_without_a_config_file_no_plan_is_written(harness: Any) -> None:
    h = await harness()
    await h.sub.settle()
    await h.until(lambda: not h.sub._plan_due, "the writer to look")
    assert not (h.state_dir / PLAN_FILE).exists()


async def test_the_plan_assumes_alpha_servers_dead_and_keeps_inhibited_ones(
    harness: Any, files: Path
) -> None:
    """alpha: dead until checked (kept at weight 0 with inhibit_on_failure); with every
    server assumed dead, the quorum is lost at start and the sorry server is in."""
    sec = section(
        files, servers=(11, 12, 13), quorum=1, sorry_server={"address": "10.62.9.9", "port": 80}
    )
    vs = sec.virtual_servers[0]
    rss = [
        replace(
            rs,
            checks=tuple(replace(c, settings=replace(c.settings, alpha=True)) for c in rs.checks),
            inhibit_on_failure=(i == 0),
        )
        for i, rs in enumerate(vs.real_servers)
    ]
    sec = replace(sec, virtual_servers=(replace(vs, real_servers=tuple(rss)),))
    ((_, entry),) = start_table(sec, {}).items()
    assert {str(d): d.weight for d in entry.destinations.values()} == {
        "10.62.1.11:80": 0,
        "10.62.9.9:80": 1,
    }


async def test_after_a_reload_the_plan_is_written_once_the_agent_runs_the_new_config(
    harness: Any, files: Path
) -> None:
    """The agent swaps its config after every subsystem applied it, so the writer, which
    may look during the reload's own pass, sees the old config then and must look again."""
    sec = section(files)
    running = {"config": SimpleNamespace(digest="aa" * 32, sections={"ipvs": sec})}
    h = await harness(sec, digest=lambda: running["config"])
    path = h.state_dir / PLAN_FILE
    await h.until(lambda: read_plan(str(h.state_dir)) is not None, "the first plan")
    new_sec = section(files, servers=(11, 12, 13))
    old_cfg = validate_data(
        {"virtual_servers": [sec.virtual_servers[0].to_dict()]}, check_files=False
    )
    new_cfg = validate_data(
        {"virtual_servers": [new_sec.virtual_servers[0].to_dict()]}, check_files=False
    )
    diff = diff_configs(old_cfg, new_cfg).section("ipvs")
    await h.sub.apply(new_cfg.section("ipvs"), diff)  # (its pass: the agent's config is old)
    running["config"] = SimpleNamespace(
        digest="bb" * 32, sections={"ipvs": new_cfg.section("ipvs")}
    )
    h.sub._wake.set()  # the next pass, as the next drift check would
    want = current_key(h.state_dir, "bb" * 32)[0]
    await h.until(
        lambda: (p := read_plan(str(h.state_dir))) is not None and p.key == want,
        "the plan of the new config",
    )
    ((_, dests),) = plan_table(LoadedPlan(path.read_bytes())).values()
    assert sorted(dests) == ["10.62.1.11:80", "10.62.1.12:80", "10.62.1.13:80"]


# ---------------------------------------------------------------------------- vigild --check


CHECKED_CONFIG = """\
global:
  state_dir: {state}
virtual_servers:
  - name: web
    address: 10.62.0.100
    port: 80
    scheduler: wrr
    real_servers:
      - address: 10.62.1.11
        port: 80
        weight: 3
        checks: [{{type: tcp}}]
      - address: 10.62.1.12
        port: 80
        checks: [{{type: tcp}}]
"""


def check_config(tmp_path: Path, text: str = CHECKED_CONFIG) -> tuple[Path, Path]:
    state, path = tmp_path / "checked-state", tmp_path / "checked.yml"
    state.mkdir(exist_ok=True)
    path.write_text(text.format(state=state))
    return state, path


def run_vigild_check(path: Path, state_dir: Path | None) -> tuple[int, str, str]:
    import io

    from vigil.daemon import run_check

    out, notes = io.StringIO(), io.StringIO()
    where = None if state_dir is None else str(state_dir)
    code = run_check(str(path), "json", out, state_dir=where, notes=notes)
    return code, out.getvalue(), notes.getvalue()


def test_vigild_check_writes_the_start_plan_of_the_config_it_accepts(tmp_path: Path) -> None:
    """The collection checks every config on the director before it installs it: that
    config's first start then programs IPVS from a plan too. The drain file is followed,
    and the running config's own plan is left as it was."""
    from vigil.faststart import CHECKED_PLAN_FILE
    from vigil.subsystems import load_config

    state, path = check_config(tmp_path)
    (state / "ipvs-control.json").write_text('{"drained": {"web": ["10.62.1.12:80"]}}')
    (state / PLAN_FILE).write_bytes(b"the running config's plan")
    # a check without --state-dir writes nothing, not even in the config's state dir
    assert run_vigild_check(path, None)[0] == 0
    assert sorted(p.name for p in state.iterdir()) == ["ipvs-control.json", PLAN_FILE]
    code, out, notes = run_vigild_check(path, state)
    assert code == 0 and json.loads(out)["valid"] is True and notes == ""
    plan = LoadedPlan((state / CHECKED_PLAN_FILE).read_bytes())
    digest = load_config(str(path)).digest
    assert digest is not None and plan.key == current_key(state, digest)[0]
    ((svc, dests),) = plan_table(plan).values()
    assert svc.key == ServiceKey.inet("tcp", "10.62.0.100", 80)
    assert {k: d.weight for k, d in dests.items()} == {"10.62.1.11:80": 3, "10.62.1.12:80": 0}
    assert (state / PLAN_FILE).read_bytes() == b"the running config's plan"
    # checked again, unchanged: the plan is there already and is not written again
    before = (state / CHECKED_PLAN_FILE).stat().st_mtime_ns
    (state / CHECKED_PLAN_FILE).touch()
    touched = (state / CHECKED_PLAN_FILE).stat().st_mtime_ns
    assert run_vigild_check(path, state)[0] == 0
    assert (state / CHECKED_PLAN_FILE).stat().st_mtime_ns == touched >= before


def test_vigild_check_writes_no_plan_for_a_bad_config_and_makes_a_new_state_dir(
    tmp_path: Path,
) -> None:
    from vigil.faststart import CHECKED_PLAN_FILE

    state, path = check_config(tmp_path, CHECKED_CONFIG.replace("wrr", "wrong"))
    code, out, _ = run_vigild_check(path, state)
    assert code == 1 and "scheduler" in out
    assert list(state.iterdir()) == []
    # valid, on a node where no agent ran yet: the state dir is made as the agent makes it
    _, path = check_config(tmp_path)
    new = tmp_path / "new" / "state"
    code, _, notes = run_vigild_check(path, new)
    assert code == 0 and notes == ""
    assert (new / CHECKED_PLAN_FILE).exists() and new.stat().st_mode & 0o777 == 0o700


def test_a_plan_that_cannot_be_written_is_a_note_and_the_verdict_stands(tmp_path: Path) -> None:
    from vigil.faststart import CHECKED_PLAN_FILE

    state, path = check_config(tmp_path)
    (state / "ipvs-start-plan.checked.tmp").mkdir()  # where the plan is written first
    code, out, notes = run_vigild_check(path, state)
    assert code == 0 and json.loads(out)["valid"] is True
    assert notes.startswith(f"vigild --check: ipvs: no IPVS start plan written in {state}: ")
    assert not (state / CHECKED_PLAN_FILE).exists()


async def test_the_agent_takes_the_checked_plan_instead_of_building_it(
    harness: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A start of the config ``vigild --check`` accepted: its plan becomes the running
    config's as it is (same key, same family id), not built a second time."""
    import vigil.ipvs.runtime as runtime_mod
    from vigil.faststart import CHECKED_PLAN_FILE, Plan

    built: list[Any] = []
    real_build = runtime_mod.build_plan

    async def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return await real_build(*args, **kwargs)

    monkeypatch.setattr(runtime_mod, "build_plan", counting)
    digest = "cd" * 32
    state = tmp_path / "state"
    state.mkdir()
    key = current_key(state, digest)[0]
    checked = Plan(key, "IPVS", "ipvs", ["ipvs-control.json"], [], FakeKernel.family).encode()
    (state / CHECKED_PLAN_FILE).write_bytes(checked)
    h = await harness(digest=digest)
    await h.until(lambda: (state / PLAN_FILE).exists(), "the start plan")
    assert (state / PLAN_FILE).read_bytes() == checked
    assert not (state / CHECKED_PLAN_FILE).exists() and built == []
    # one for another family id (the module was reloaded since the check): built anew
    (state / PLAN_FILE).unlink()
    other = Plan(key, "IPVS", "ipvs", ["ipvs-control.json"], [], FakeKernel.family + 1)
    (state / CHECKED_PLAN_FILE).write_bytes(other.encode())
    h.sub._plan_due = True
    h.sub._wake.set()
    await h.until(lambda: (state / PLAN_FILE).exists(), "the plan built anew")
    assert len(built) == 1 and LoadedPlan((state / PLAN_FILE).read_bytes()).count == 1
