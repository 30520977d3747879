"""The BFD subsystem: two of them on an in-memory wire, with the agent's real registry.

The wire (from test_bfd_runtime) stands in for UDP; everything else is the production
path: config models, the engine, the trackers in a real TrackerRegistry, events on a real
EventBus, the control file in a temporary state dir. The namespace tests
(tests/integration/test_bfd_interop.py) run the same code in vigild against FRR, BIRD and
keepalived. Also: the API routes and ``vigilctl bfd`` through a real Agent and API server.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from test_api_harness import AgentThread
from test_bfd_runtime import FakeTransport, Wire, wait_until

from vigil.bfd.config import BfdConfig, diff_bfd
from vigil.bfd.control import CONTROL_FILE, BfdControl
from vigil.bfd.runtime import BfdEngine
from vigil.bfd.subsystem import BfdSubsystem
from vigil.cli import main as vigilctl
from vigil.config import GlobalConfig
from vigil.events import EventBus, EventPublisher
from vigil.journal import Journal
from vigil.net.netlink import AddrEvent, LinkEvent, NetlinkEvent
from vigil.subsystem import SubsystemContext, SubsystemSpec
from vigil.subsystems import validate_data
from vigil.track.registry import TrackerRegistry

pytestmark = pytest.mark.unit

ADDR = {"a": "10.0.0.1", "b": "10.0.0.2"}
FAST = {"min_tx": 0.02, "min_rx": 0.02, "multiplier": 3}


class FakeNetlink:
    def __init__(self) -> None:
        self.addrs: list[Any] = []

    async def addresses(self) -> list[Any]:
        return self.addrs


class FakeKernel:
    """What the subsystem uses of vigil.kernel.KernelEvents."""

    def __init__(self) -> None:
        self.netlink = FakeNetlink()
        self.subscribers: list[Callable[[NetlinkEvent], Any]] = []

    def subscribe(self, name: str, callback: Any, *, order: int = 0) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    async def emit(self, event: NetlinkEvent) -> None:
        for callback in list(self.subscribers):
            await callback(event)


@dataclass
class Node:
    sub: BfdSubsystem
    bus: EventBus
    kernel: FakeKernel
    registry: TrackerRegistry
    state_dir: Path
    tracker_log: list[tuple[str, str]] = field(default_factory=list)

    def events(self, kind: str = "bfd_transition") -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.bus.since(0) if e.kind == kind]

    def view(self, name: str) -> dict[str, Any]:
        return self.sub.view(name)


def section(*sessions: dict[str, Any], **bfd: Any) -> BfdConfig:
    data = {"global": {"router_id": "x"}, "bfd": {"sessions": list(sessions), **bfd}}
    model: BfdConfig = validate_data(data, check_files=False).section("bfd")
    return model


def session(me: str, name: str = "s", **extra: Any) -> dict[str, Any]:
    other = "b" if me == "a" else "a"
    return {"name": name, "peer": ADDR[other], "local": ADDR[me], **FAST, **extra}


def make_node(wire: Wire, me: str, state_dir: Path) -> Node:
    bus = EventBus()
    kernel = FakeKernel()
    registry = TrackerRegistry()
    addr = ipaddress.ip_address(ADDR[me])

    def engine(**kw: Any) -> BfdEngine:
        return BfdEngine(transport=lambda cb: FakeTransport(wire, addr, cb), **kw)

    ctx = SubsystemContext(
        name="bfd",
        events=EventPublisher(bus, "bfd", frozenset()),
        registry=CollectorRegistry(),
        state_dir=state_dir,
        router_id=me,
        globals=GlobalConfig(me),
        journal=Journal(state_dir).namespace("bfd"),
        kernel=kernel,  # type: ignore[arg-type]
        trackers=registry,
    )
    node = Node(BfdSubsystem(ctx, engine_factory=engine), bus, kernel, registry, state_dir)

    def watch(key: str, tracker: Any, what: str) -> None:
        node.tracker_log.append((what, "-" if tracker is None else str(tracker.state)))

    registry.watch("bfd:s", watch)
    return node


async def up_pair(tmp_path: Path, **extra: Any) -> tuple[Wire, Node, Node]:
    wire = Wire(asyncio.get_running_loop())
    a = make_node(wire, "a", tmp_path / "a")
    b = make_node(wire, "b", tmp_path / "b")
    await a.sub.start(section(session("a", **extra)))
    await b.sub.start(section(session("b", **extra)))
    await wait_until(
        lambda: all(n.view("s")[k] == "Up" for n in (a, b) for k in ("state", "remote_state")),
        5,
        "both Up, each knowing the other is",
    )
    return wire, a, b


async def test_sessions_come_up_as_trackers_and_events(tmp_path: Path) -> None:
    _wire, a, b = await up_pair(tmp_path)
    try:
        tracker = a.registry.get("bfd:s")
        assert tracker is not None and tracker.ok and tracker.kind == "bfd"
        assert a.tracker_log[0] == ("published", "FAILED")
        assert a.tracker_log[-1] == ("changed", "OK")
        ups = [e for e in a.events() if e["data"]["new"] == "Up"]
        assert len(ups) == 1 and ups[0]["instance"] == "s" and ups[0]["subsystem"] == "bfd"
        assert ups[0]["message"].startswith(("Down -> Up: remote", "Init -> Up: remote"))
        assert ups[0]["data"]["peer"] == ADDR["b"] and "monotonic" in ups[0]["data"]
        view = a.view("s")
        assert view["tracker"] == "bfd:s" and view["config"]["peer"] == ADDR["b"]
        assert view["remote_state"] == "Up" and view["error"] is None
        status = a.sub.status()
        assert [s["name"] for s in status["sessions"]] == ["s"] and status["unmatched"] == {}
        names = {m.name for m in a.sub.collect_metrics()}
        assert {"vigil_bfd_session_up", "vigil_bfd_transitions", "vigil_bfd_rejected"} <= names
        up = next(m for m in a.sub.collect_metrics() if m.name == "vigil_bfd_session_up")
        assert [s.value for s in up.samples] == [1.0]
    finally:
        await a.sub.stop()
        await b.sub.stop()
    assert a.registry.get("bfd:s") is None


async def test_path_cut_goes_down_with_diag_1_and_the_tracker_fails(tmp_path: Path) -> None:
    wire, a, b = await up_pair(tmp_path)
    try:
        wire.up = False
        await wait_until(lambda: a.view("s")["state"] == "Down", 2, "a Down")
        (down,) = [e for e in a.events() if e["data"]["new"] == "Down"]
        assert down["data"]["diag"] == 1 and "detection time 3 x 20ms" in down["message"]
        tracker = a.registry.get("bfd:s")
        assert tracker is not None and not tracker.ok
        assert tracker.details()["diag"] == 1 and tracker.details()["bfd_state"] == "Down"
        wire.up = True
        await wait_until(lambda: a.view("s")["state"] == "Up", 5, "a Up again")
    finally:
        await a.sub.stop()
        await b.sub.stop()


async def test_timer_change_and_key_rollover_by_reload_without_a_flap(tmp_path: Path) -> None:
    one = {"type": "keyed_sha1", "keys": [{"id": 1, "secret": "k1"}]}
    _wire, a, b = await up_pair(tmp_path, auth=one)
    try:
        await wait_until(lambda: a.view("s")["counters"]["polls_completed"] >= 1, 2, "first poll")
        polls = a.view("s")["counters"]["polls_completed"]
        count = len(a.events()) + len(b.events())

        async def reload(node: Node, me: str, **extra: Any) -> None:
            new = section(session(me, **extra))
            diff = diff_bfd(node.sub.section, new)
            assert not diff.empty and not diff.recreated
            await node.sub.apply(new, diff)

        await reload(a, "a", auth=one, min_tx=0.05, min_rx=0.04)
        await wait_until(
            lambda: a.view("s")["counters"]["polls_completed"] > polls, 2, "the Poll's Final"
        )
        assert a.view("s")["detection_time"] == pytest.approx(0.12)
        keys = [{"id": 1, "secret": "k1"}, {"id": 2, "secret": "k2"}]
        both = {"type": "keyed_sha1", "keys": keys}
        for node, me in ((a, "a"), (b, "b")):
            await reload(node, me, auth={**both, "send_key_id": 1}, min_tx=0.05, min_rx=0.04)
        for node, me in ((b, "b"), (a, "a")):
            await reload(node, me, auth={**both, "send_key_id": 2}, min_tx=0.05, min_rx=0.04)
        seen = a.view("s")["counters"]["packets_in"]
        await wait_until(lambda: a.view("s")["counters"]["packets_in"] > seen + 10, 3, "packets")
        assert len(a.events()) + len(b.events()) == count, a.events() + b.events()
        assert a.view("s")["auth_failures"] == 0 and b.view("s")["auth_failures"] == 0
    finally:
        await a.sub.stop()
        await b.sub.stop()


async def test_recreate_keeps_the_tracker_and_removal_tells_the_peer(tmp_path: Path) -> None:
    _wire, a, b = await up_pair(tmp_path)
    try:
        tracker = a.registry.get("bfd:s")
        new = section(session("a", interface="eth9"))
        diff = diff_bfd(a.sub.section, new)
        assert diff.recreated == ("s",)
        await a.sub.apply(new, diff)
        assert a.registry.get("bfd:s") is tracker and ("withdrawn", "-") not in a.tracker_log
        assert a.view("s")["interface"] == "eth9"
        # The wire delivers on no interface: the bound session hears nothing; b saw AdminDown.
        await wait_until(lambda: b.view("s")["remote_state"] != "Up", 2, "b told")
        empty = section()
        await a.sub.apply(empty, diff_bfd(a.sub.section, empty))
        assert a.registry.get("bfd:s") is None and a.tracker_log[-1] == ("withdrawn", "-")
    finally:
        await a.sub.stop()
        await b.sub.stop()


async def test_link_down_takes_sessions_on_that_interface_down_at_once(tmp_path: Path) -> None:
    wire = Wire(asyncio.get_running_loop())
    a = make_node(wire, "a", tmp_path / "a")
    b = make_node(wire, "b", tmp_path / "b")
    a.kernel.netlink.addrs = []
    await a.sub.start(section(session("a")))
    await b.sub.start(section(session("b")))
    try:
        await wait_until(lambda: a.view("s")["state"] == "Up", 5, "Up")
        # The session names no interface: its local address tells which one it is on.
        await a.kernel.emit(AddrEvent("eth1", ipaddress.ip_interface(f"{ADDR['a']}/24"), True))
        await a.kernel.emit(LinkEvent("eth0", 2, up=False, carrier=False))
        assert a.view("s")["state"] == "Up"  # another interface
        await a.kernel.emit(LinkEvent("eth1", 3, up=True, carrier=False))
        assert a.view("s")["state"] == "Down"  # at once, not after the detection time
        last = a.view("s")["last_transition"]
        assert last["diag"] == 5 and last["reason"] == "interface eth1 lost its carrier"
        await wait_until(lambda: a.view("s")["state"] == "Up", 5, "back Up on its own")
    finally:
        await a.sub.stop()
        await b.sub.stop()


async def test_shutdown_and_enable_are_verified_and_survive_a_restart(tmp_path: Path) -> None:
    wire, a, b = await up_pair(tmp_path)
    try:
        result = await a.sub.control.shutdown_session("s", 2.0)
        assert result["after"]["state"] == "AdminDown" and result["peer_acknowledged"]
        assert result["message"] == "shut down; the peer answered Down"
        assert b.view("s")["state"] == "Down" and b.view("s")["remote_diag"] == 7
        saved = json.loads((a.state_dir / CONTROL_FILE).read_text())
        assert saved == {"shutdown": ["s"]}
        await a.sub.stop()
        again = make_node(wire, "a", a.state_dir)
        await again.sub.start(section(session("a")))
        assert again.view("s")["state"] == "AdminDown" and again.view("s")["shutdown_by_operator"]
        result = await again.sub.control.enable_session("s", 5.0, True)
        assert result["after"]["state"] == "Up" and result["message"] == "enabled and Up"
        assert json.loads((a.state_dir / CONTROL_FILE).read_text()) == {"shutdown": []}
        await again.sub.stop()
    finally:
        await b.sub.stop()


async def test_enable_that_does_not_come_up_is_504_with_what_was_seen(tmp_path: Path) -> None:
    from vigil.bfd.control import ControlError

    wire = Wire(asyncio.get_running_loop())
    a = make_node(wire, "a", tmp_path / "a")
    await a.sub.start(section(session("a", admin_down=True)))
    try:
        with pytest.raises(ControlError) as info:
            await a.sub.control.enable_session("s", 0.2, True)
        assert info.value.status == 504 and "enabled but not Up after 0.2s" in info.value.message
        assert info.value.data["observed"]["state"] == "Down"
    finally:
        await a.sub.stop()


async def test_an_unwritable_state_dir_changes_nothing(tmp_path: Path) -> None:
    from vigil.bfd.control import ControlError

    _wire, a, b = await up_pair(tmp_path)
    try:
        a.sub.control.path = tmp_path / "missing" / "file" / CONTROL_FILE
        (tmp_path / "missing").write_text("a file, not a directory")
        with pytest.raises(ControlError) as info:
            await a.sub.control.shutdown_session("s", 1.0)
        assert info.value.status == 503 and a.view("s")["state"] == "Up"
    finally:
        await a.sub.stop()
        await b.sub.stop()


async def test_a_session_that_cannot_start_stops_start_up_with_its_name(tmp_path: Path) -> None:
    class Busy(FakeTransport):
        def listen(self, family: int, multihop: bool) -> None:
            raise OSError(98, "Address already in use")

    wire = Wire(asyncio.get_running_loop())
    node = make_node(wire, "a", tmp_path)
    addr = ipaddress.ip_address(ADDR["a"])
    node.sub._engine_factory = lambda **kw: BfdEngine(
        transport=lambda cb: Busy(wire, addr, cb), **kw
    )
    with pytest.raises(RuntimeError, match=r"bfd session s: cannot start: .*already in use"):
        await node.sub.start(section(session("a")))
    assert node.registry.get("bfd:s") is None


def test_control_file_that_cannot_be_read_is_ignored(tmp_path: Path) -> None:
    (tmp_path / CONTROL_FILE).write_text("{not json")
    control = BfdControl(None, tmp_path)  # type: ignore[arg-type]
    control.load()
    assert control.shutdown == set()


# --------------------------------------------------------------------------- API and CLI


CONFIG = f"""\
global: {{router_id: unit1}}
bfd:
  sessions:
    - {{name: s, peer: {ADDR["b"]}, local: {ADDR["a"]}, min_tx: 0.02, min_rx: 0.02}}
"""


def test_api_and_vigilctl(tmp_path: Path) -> None:
    holder: dict[str, Any] = {}

    def factory(ctx: SubsystemContext) -> BfdSubsystem:
        wire = holder["wire"]
        addr = ipaddress.ip_address(ADDR["a"])
        return BfdSubsystem(
            ctx,
            engine_factory=lambda **kw: BfdEngine(
                transport=lambda cb: FakeTransport(wire, addr, cb), **kw
            ),
        )

    spec = SubsystemSpec(
        name="bfd", section="vigil.bfd.config:SECTION", factory=factory, cli="vigil.bfd.cli:GROUP"
    )
    at = AgentThread(CONFIG, factories=[spec])
    at.thread.start()

    async def make_wire() -> None:
        holder["wire"] = Wire(asyncio.get_running_loop())

    at.run(make_wire())
    peer_node = at.run(_peer(holder["wire"], tmp_path))
    try:
        at.run(at._setup())
        at.run(
            wait_until(lambda: at.agent.status()["bfd"]["sessions"][0]["state"] == "Up", 5, "up")
        )
        status, body = at.client.get("/v1/bfd/sessions")
        assert status == 200 and body["sessions"][0]["name"] == "s"
        status, body = at.client.get("/v1/bfd/sessions/nope")
        assert status == 404 and "unknown BFD session 'nope'; this agent has: s" in str(body)
        status, body = at.client.post("/v1/bfd/sessions/s/shutdown", {"timeout": 2})
        assert status == 200 and body["action"] == "shutdown" and body["ok"], body
        assert body["after"]["state"] == "AdminDown"
        status, body = at.client.post("/v1/bfd/sessions/s/enable", {"bogus": 1})
        assert status == 400 and "body.bogus" in str(body)
        out, err = io.StringIO(), io.StringIO()
        rc = vigilctl(["--socket", at.socket_path, "bfd", "enable", "s"], out=out, err=err)
        assert rc == 0, err.getvalue()
        assert out.getvalue().startswith("s: enabled and Up in ")
        out = io.StringIO()
        assert vigilctl(["--socket", at.socket_path, "bfd", "show"], out=out, err=err) == 0
        header, row = out.getvalue().splitlines()
        assert header.split()[:4] == ["SESSION", "STATE", "REMOTE", "PEER"]
        assert row.split()[:4] == ["s", "Up", "Up", ADDR["b"]]
        out = io.StringIO()
        assert vigilctl(["--socket", at.socket_path, "bfd", "show", "s"], out=out, err=err) == 0
        assert "remote diagnostic:" in out.getvalue() and "packets in/out:" in out.getvalue()
        out = io.StringIO()
        assert vigilctl(["--socket", at.socket_path, "status"], out=out, err=err) == 0
        assert "SESSION" in out.getvalue()
        metrics = at.client.get("/metrics")[1]
        assert 'vigil_bfd_session_up{session="s"} 1.0' in metrics
    finally:
        if hasattr(at, "agent"):
            at.run(at._teardown())
        at.run(peer_node.sub.stop())
        at.loop.call_soon_threadsafe(at.loop.stop)
        at.thread.join(timeout=10)
        at.loop.close()


async def _peer(wire: Wire, tmp_path: Path) -> Node:
    node = make_node(wire, "b", tmp_path / "peer")
    await node.sub.start(section(session("b")))
    return node
