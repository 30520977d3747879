"""BfdEngine on a real event loop with real timers, two engines joined by an in-memory wire.

The wire stands in for UDP (tests/integration/test_bfd_interop.py runs the real sockets
in namespaces against FRR, BIRD and keepalived): it hands each datagram to the engine
owning the destination address after a short delay, with a TTL the test chooses, and can
be cut. Everything else is the production path: codec, session table, TTL and
authentication checks, machines, PreciseTimer.

Also here: the pure parts of vigil.bfd.transport (session table, TTL check, the ancillary
data decoder) and SessionSpec validation.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.bfd.auth import AuthConfig, AuthKey
from vigil.bfd.packet import (
    AuthSection,
    AuthType,
    ControlPacket,
    Diag,
    Rejection,
    RejectReason,
    State,
)
from vigil.bfd.runtime import BfdEngine, BfdEvent, SessionSnapshot
from vigil.bfd.spec import SessionSpec, SessionSpecError
from vigil.bfd.transport import (
    IP_PKTINFO,
    IP_TTL,
    IPV6_HOPLIMIT,
    IPV6_PKTINFO,
    BfdDatagram,
    SessionKey,
    SessionTable,
    UdpTransport,
    check_ttl,
)

A4, B4 = ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2")
C4 = ipaddress.ip_address("10.0.0.3")
FAST = {"min_tx": 0.02, "min_rx": 0.02, "multiplier": 3}


# --------------------------------------------------------------------------- session table


def key(peer: str, local: str | None = None, iface: str | None = None, mh: bool = False):
    return SessionKey(
        ipaddress.ip_address(peer),
        None if local is None else ipaddress.ip_address(local),
        iface,
        mh,
    )


def lookup(table: SessionTable[str], your: int = 0, **kw: object) -> str | Rejection:
    args: dict[str, object] = {
        "your_discr": your,
        "src": B4,
        "dst": A4,
        "ifname": "eth0",
        "multihop": False,
    }
    args.update(kw)
    found = table.lookup(**args)  # type: ignore[arg-type]
    return found if isinstance(found, Rejection) else found[1]


class TestSessionTable:
    def test_your_discriminator_selects_and_addresses_must_match(self) -> None:
        table: SessionTable[str] = SessionTable()
        table.add(key("10.0.0.2"), 11, "b")
        table.add(key("10.0.0.3"), 12, "c")
        assert lookup(table, your=11) == "b"
        rej = lookup(table, your=12)  # c's discriminator in a packet from b
        assert isinstance(rej, Rejection) and rej.reason is RejectReason.ADDRESS
        rej = lookup(table, your=99)
        assert isinstance(rej, Rejection) and rej.reason is RejectReason.NO_SESSION
        rej = lookup(table, your=11, multihop=True)
        assert isinstance(rej, Rejection) and rej.reason is RejectReason.ADDRESS

    def test_zero_discriminator_picks_the_most_specific_session(self) -> None:
        table: SessionTable[str] = SessionTable()
        table.add(key("10.0.0.2"), 1, "any")
        table.add(key("10.0.0.2", iface="eth0"), 2, "eth0")
        table.add(key("10.0.0.2", "10.0.0.1", "eth0"), 3, "exact")
        table.add(key("10.0.0.2", "10.0.0.1", mh=True), 4, "multihop")
        assert lookup(table) == "exact"
        assert lookup(table, dst=ipaddress.ip_address("10.0.0.9")) == "eth0"
        assert lookup(table, ifname="eth1") == "any"
        assert lookup(table, multihop=True) == "multihop"
        rej = lookup(table, src=C4)
        assert isinstance(rej, Rejection) and rej.reason is RejectReason.NO_SESSION

    def test_equal_remote_discriminators_do_not_matter(self) -> None:
        """Two peers using the same My Discriminator: the table never looks at it."""
        table: SessionTable[str] = SessionTable()
        table.add(key("10.0.0.2"), 21, "b")
        table.add(key("10.0.0.3"), 22, "c")
        assert lookup(table, src=B4) == "b" and lookup(table, src=C4) == "c"

    def test_add_remove_and_duplicates(self) -> None:
        table: SessionTable[str] = SessionTable()
        table.add(key("10.0.0.2"), 1, "b")
        with pytest.raises(ValueError, match="exists already"):
            table.add(key("10.0.0.2"), 2, "b2")
        with pytest.raises(ValueError, match="discriminator 1 is in use"):
            table.add(key("10.0.0.3"), 1, "c")
        assert table.remove(key("10.0.0.2")) == "b" and len(table) == 0
        assert table.remove(key("10.0.0.2")) is None
        assert not table.discriminator_in_use(1)

    def test_key_rules(self) -> None:
        with pytest.raises(ValueError, match="needs an interface"):
            key("fe80::1")
        with pytest.raises(ValueError, match="needs a local address"):
            key("10.0.0.2", mh=True)
        with pytest.raises(ValueError, match="IPv6 but peer"):
            key("10.0.0.2", "fd00::1")
        assert str(key("fe80::2", "fe80::1", "eth0")) == "fe80::2%eth0 from fe80::1"
        assert key("10.0.0.2", "10.0.0.1", mh=True).port == 4784


class TestTtl:
    def test_single_hop_needs_255(self) -> None:
        k = key("10.0.0.2")
        assert check_ttl(255, k, 254) is None
        rej = check_ttl(254, k, 254)
        assert rej is not None and rej.reason is RejectReason.TTL and "crossed" in rej.detail
        rej = check_ttl(-1, k, 254)
        assert rej is not None and "no TTL" in rej.detail

    def test_multihop_needs_the_minimum(self) -> None:
        k = key("fd00::2", "fd00::1", mh=True)
        assert check_ttl(250, k, 250) is None
        rej = check_ttl(249, k, 250)
        assert rej is not None and "hop limit 249" in rej.detail


class TestAncillaryData:
    def decode(self, family: int, ancdata: list[tuple[int, int, bytes]], address: object):
        transport = UdpTransport(lambda d: None, loop=asyncio.new_event_loop())
        return transport._decode(b"x", ancdata, address, family, False)  # type: ignore[arg-type]

    def test_ipv4_ttl_destination_and_interface(self) -> None:
        pktinfo = struct.pack("=i4s4s", 7, bytes(4), A4.packed)
        got = self.decode(
            4,
            [
                (socket.IPPROTO_IP, IP_PKTINFO, pktinfo),
                (socket.IPPROTO_IP, IP_TTL, struct.pack("=i", 255)),
            ],
            ("10.0.0.2", 49999),
        )
        assert got is not None
        assert got._replace(raw=None) == BfdDatagram(b"x", 4, B4, 49999, A4, 7, 255, False)
        assert got.raw is not None and got.raw[0] == ("10.0.0.2", 49999)  # for the short path

    def test_ipv6_hop_limit_and_link_local_source(self) -> None:
        dst = ipaddress.ip_address("fe80::1")
        pktinfo = struct.pack("=16sI", dst.packed, 3)
        got = self.decode(
            6,
            [
                (socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo),
                (socket.IPPROTO_IPV6, IPV6_HOPLIMIT, struct.pack("=i", 255)),
            ],
            ("fe80::2%eth0", 50000, 0, 3),
        )
        assert got is not None
        assert (got.src, got.dst, got.ifindex, got.ttl) == (
            ipaddress.ip_address("fe80::2"),
            dst,
            3,
            255,
        )

    def test_short_or_missing_ancillary_data_is_no_crash(self) -> None:
        got = self.decode(4, [(socket.IPPROTO_IP, IP_PKTINFO, b"\x01")], ("10.0.0.2", 1))
        assert got is not None and (got.ttl, got.dst, got.ifindex) == (-1, None, 0)
        assert self.decode(4, [], ("not an address", 1)) is None
        assert self.decode(4, [], ()) is None


class TestSpec:
    def test_every_problem_at_once_with_its_field(self) -> None:
        with pytest.raises(SessionSpecError) as info:
            SessionSpec("10.0.0.2", min_tx=0, multiplier=0, min_ttl=300, interface="a b")
        text = str(info.value)
        for fieldname in ("min_tx", "multiplier", "min_ttl", "interface"):
            assert f"bfd session 10.0.0.2: {fieldname}:" in text

    def test_key_and_machine_params(self) -> None:
        spec = SessionSpec("fd00::2", "fd00::1", multihop=True, min_tx=0.05, min_rx=0.07)
        assert spec.key == key("fd00::2", "fd00::1", mh=True)
        params = spec.machine_params(9)
        assert (params.desired_min_tx, params.required_min_rx, params.local_discr) == (
            50_000,
            70_000,
            9,
        )
        assert spec.label == "fd00::2 from fd00::1 multihop"

    def test_secrets_stay_out_of_repr_and_dict(self) -> None:
        spec = SessionSpec("10.0.0.2", auth=AuthConfig.single(AuthType.KEYED_MD5, 3, "hunter2"))
        assert "hunter2" not in repr(spec) and "hunter2" not in str(spec.to_dict())
        assert spec.to_dict()["auth"] == {"type": "keyed_md5", "key_ids": [3], "send_key_id": 3}

    def test_link_local_peer_without_interface(self) -> None:
        with pytest.raises(SessionSpecError, match="needs an interface"):
            SessionSpec("fe80::2")


# --------------------------------------------------------------------------- the wire


@dataclass
class Wire:
    """Carries datagrams between fake transports by destination address."""

    loop: asyncio.AbstractEventLoop
    delay: float = 0.0005
    ttl: int = 255
    up: bool = True
    hosts: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, FakeTransport] = field(
        default_factory=dict
    )

    def carry(self, src: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int,
              key: SessionKey, data: bytes) -> None:  # fmt: skip
        target = self.hosts.get(key.peer)
        if not self.up or target is None or (key.family, key.multihop) not in target.listening:
            return
        raw = ((str(src), port), [(0, 2, bytes([self.ttl]))])  # as a socket would give it
        datagram = BfdDatagram(
            data, key.family, src, port, key.peer, 0, self.ttl, key.multihop, raw
        )
        self.loop.call_later(self.delay, target.deliver, datagram)


class FakeSender:
    def __init__(self, wire: Wire, src: ipaddress.IPv4Address, key: SessionKey, port: int):
        self.wire, self.src, self.key, self._port = wire, src, key, port
        self.sent = 0

    @property
    def port(self) -> int:
        return self._port

    def send(self, data: bytes) -> bool:
        self.sent += 1
        self.wire.carry(self.key.local or self.src, self._port, self.key, data)
        return True

    def close(self) -> None:
        pass


class FakeTransport:
    def __init__(self, wire: Wire, address: ipaddress.IPv4Address, on_datagram: Callable):
        self.wire, self.address, self.on_datagram = wire, address, on_datagram
        self.listening: set[tuple[int, bool]] = set()
        self.ports = iter(range(49152, 65536))
        wire.hosts[address] = self

    def deliver(self, datagram: BfdDatagram) -> None:
        """As UdpTransport does: the engine's short path for repeats first, if it has one."""
        engine = getattr(self.on_datagram, "__self__", None)
        on_raw = getattr(engine, "_on_raw", None)
        if on_raw is not None and datagram.raw is not None:
            address, ancdata = datagram.raw
            if on_raw(datagram.data, ancdata, address, datagram.multihop, None):
                return
        self.on_datagram(datagram)

    def listen(self, family: int, multihop: bool) -> None:
        self.listening.add((family, multihop))

    def unlisten(self, family: int, multihop: bool) -> None:
        pass

    def sender(self, key: SessionKey) -> FakeSender:
        return FakeSender(self.wire, self.address, key, next(self.ports))

    def close(self) -> None:
        self.listening.clear()


@dataclass
class Node:
    engine: BfdEngine
    events: list[BfdEvent] = field(default_factory=list)

    def snap(self) -> SessionSnapshot:
        (one,) = self.engine.snapshot()
        return one


async def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Poll on the loop until ``predicate`` holds; return how long that took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(int(timeout / 0.002) + 2):
        if predicate():
            return loop.time() - start
        if loop.time() - start > timeout:
            break
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def make_pair(
    wire: Wire, spec_a: dict[str, object] | None = None, spec_b: dict[str, object] | None = None
) -> tuple[Node, Node]:
    nodes = []
    for mine, peer, extra, seed in ((A4, B4, spec_a, 1), (B4, A4, spec_b, 2)):
        holder: list[Node] = []
        engine = BfdEngine(
            on_state_change=lambda e, h=holder: h[0].events.append(e),
            rng=random.Random(seed),
            transport=lambda cb, m=mine: FakeTransport(wire, m, cb),
        )
        node = Node(engine)
        holder.append(node)
        engine.add_session(SessionSpec(peer, mine, **{**FAST, **(extra or {})}))  # type: ignore[arg-type]
        nodes.append(node)
    for node in nodes:
        node.engine.start()
    return nodes[0], nodes[1]


async def packets_flow(a: Node, b: Node, count: int) -> None:
    """Wait until each side has accepted ``count`` more packets from the other."""
    start = [n.snap().counters["packets_in"] for n in (a, b)]
    await wait_until(
        lambda: all(
            n.snap().counters["packets_in"] >= s + count for n, s in zip((a, b), start, strict=True)
        ),
        2.0,
        f"{count} more packets each way",
    )


def both(a: Node, b: Node, state: State) -> Callable[[], bool]:
    return lambda: a.snap().state is state and b.snap().state is state


async def up_pair(**kw: object) -> tuple[Wire, Node, Node]:
    wire = Wire(asyncio.get_running_loop())
    a, b = await make_pair(wire, **kw)  # type: ignore[arg-type]
    await wait_until(both(a, b, State.UP), 5.0, "both sessions Up")

    def settled() -> bool:
        snaps = (a.snap(), b.snap())
        return all(s.remote_state is State.UP and s.counters["polls_completed"] >= 1 for s in snaps)

    await wait_until(settled, 2.0, "both to see the other Up, their Polls done")
    return wire, a, b


# --------------------------------------------------------------------------- engine


async def test_two_engines_come_up_and_report_it() -> None:
    _wire, a, b = await up_pair()
    snap = a.snap()
    assert snap.remote_state is State.UP and snap.local_diag is Diag.NONE
    assert snap.remote_discr == b.snap().local_discr
    assert snap.detection_time == pytest.approx(0.06)
    assert 49152 <= snap.source_port <= 65535
    assert snap.uptime is not None and snap.uptime >= 0
    assert [e.state for e in a.events][-1] is State.UP
    assert str(a.events[-1]).startswith("(bfd 10.0.0.2 from 10.0.0.1) ")
    data = snap.to_dict()
    assert data["state"] == "Up" and data["config"]["peer"] == "10.0.0.2"
    assert data["last_transition"]["log"] == str(a.events[-1])
    await wait_until(lambda: a.snap().rtt is not None, 2.0, "an RTT sample")
    for node in (a, b):
        node.engine.close()


async def test_path_cut_goes_down_within_detection_time() -> None:
    wire, a, b = await up_pair()
    loop = asyncio.get_running_loop()
    wire.up = False
    cut = loop.time()
    await wait_until(both(a, b, State.DOWN), 2.0, "both Down")
    for node in (a, b):
        (event,) = [e for e in node.events if e.transition.time >= cut]
        assert event.transition.diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
        # 3 x 20 ms after the last packet, plus timer slack on a loaded machine.
        assert event.transition.time - cut <= 0.06 + 0.05
    wire.up = True
    await wait_until(both(a, b, State.UP), 5.0, "Up again")
    for node in (a, b):
        node.engine.close()


async def test_wrong_key_keeps_it_down_and_counts() -> None:
    wire = Wire(asyncio.get_running_loop())
    good = AuthConfig.single(AuthType.METICULOUS_KEYED_SHA1, 1, b"right")
    bad = AuthConfig.single(AuthType.METICULOUS_KEYED_SHA1, 1, b"wrong")
    a, b = await make_pair(wire, {"auth": good, "idle_tx": 1.0}, {"auth": bad})
    await wait_until(lambda: a.snap().auth_failures >= 1, 3.0, "an auth failure on a")
    assert a.snap().state is State.DOWN and a.snap().rejects == {"auth_digest": 1}
    await wait_until(lambda: b.snap().auth_failures >= 1, 3.0, "an auth failure on b")
    # Fixing the key brings it up without restarting anything.
    b.engine.update_session(replace(b.snap().spec, auth=good))
    await wait_until(both(a, b, State.UP), 5.0, "Up with the right key")
    for node in (a, b):
        node.engine.close()


@pytest.mark.serial  # 300 ms detection times on a real loop: run alone in make test
async def test_authenticated_pair_and_a_key_rollover_without_a_flap() -> None:
    old = AuthConfig.single(AuthType.METICULOUS_KEYED_MD5, 1, b"old")
    _wire, a, b = await up_pair(spec_a={"auth": old}, spec_b={"auth": old})
    flaps = len(a.events) + len(b.events)
    steps = [(a, 1, (1, 2)), (b, 1, (1, 2)), (a, 2, (1, 2)), (b, 2, (1, 2)), (a, 2, (2,))]
    secrets = {1: b"old", 2: b"new"}
    for node, send, ids in [*steps, (b, 2, (2,))]:
        config = AuthConfig(
            AuthType.METICULOUS_KEYED_MD5, tuple(AuthKey(i, secrets[i]) for i in ids), send
        )
        node.engine.update_session(replace(node.snap().spec, auth=config))
        await packets_flow(a, b, 5)
        assert a.snap().state is State.UP and b.snap().state is State.UP
    assert len(a.events) + len(b.events) == flaps
    assert a.snap().auth_failures == b.snap().auth_failures == 0
    for node in (a, b):
        node.engine.close()


async def test_single_hop_rejects_a_ttl_below_255() -> None:
    wire = Wire(asyncio.get_running_loop(), ttl=254)
    a, b = await make_pair(wire)
    await wait_until(lambda: a.snap().rejects.get("ttl", 0) >= 1, 3.0, "a TTL reject")
    assert a.snap().state is State.DOWN
    for node in (a, b):
        node.engine.close()


async def test_multihop_accepts_its_minimum_ttl() -> None:
    wire = Wire(asyncio.get_running_loop(), ttl=253)
    mh = {"multihop": True, "min_ttl": 253}
    a, b = await make_pair(wire, mh, mh)
    await wait_until(both(a, b, State.UP), 5.0, "multihop Up at TTL 253")
    for node in (a, b):
        node.engine.close()


async def test_timer_change_goes_through_poll_without_a_flap() -> None:
    _wire, a, b = await up_pair()
    events = len(a.events) + len(b.events)
    a.engine.update_session(replace(a.snap().spec, min_tx=0.1, min_rx=0.05))
    await wait_until(
        lambda: b.snap().detection_time == pytest.approx(0.3), 2.0, "the peer's new detection"
    )
    # The peer learns the new values from the first P packet; ours apply at its Final.
    await wait_until(lambda: a.snap().tx_interval == pytest.approx(0.1), 2.0, "Poll to end")
    await packets_flow(a, b, 3)
    assert len(a.events) + len(b.events) == events
    assert a.snap().counters["polls_completed"] >= 2
    for node in (a, b):
        node.engine.close()


async def test_admin_down_and_remove_tell_the_peer_at_once() -> None:
    _wire, a, b = await up_pair()
    a.engine.admin_down(a.engine.keys()[0], "maintenance")
    await wait_until(lambda: b.snap().state is State.DOWN, 0.05, "b Down at once")
    snap = b.snap()
    assert (snap.remote_state, snap.remote_diag) == (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN)
    assert snap.local_diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    a.engine.admin_up(a.engine.keys()[0])
    await wait_until(both(a, b, State.UP), 5.0, "Up again")
    a.engine.remove_session(a.engine.keys()[0])
    await wait_until(lambda: b.snap().state is State.DOWN, 0.05, "b Down after the removal")
    assert b.snap().remote_state is State.ADMIN_DOWN
    b.engine.close()
    a.engine.close()


async def test_unknown_discriminators_and_garbage_count_on_the_engine() -> None:
    _wire, a, b = await up_pair()
    stray = ControlPacket(
        state=State.UP,
        detect_mult=3,
        my_discr=5,
        your_discr=12345,
        desired_min_tx=1,
        required_min_rx=1,
    )
    engine = a.engine
    engine._on_datagram(BfdDatagram(stray.pack(), 4, B4, 50000, A4, 0, 255, False))
    engine._on_datagram(BfdDatagram(b"\x00" * 5, 4, B4, 50000, A4, 0, 255, False))
    engine._on_datagram(BfdDatagram(stray.pack(), 4, C4, 50000, A4, 0, 255, True))
    assert engine.stats()["unmatched"] == {"no_session": 2, "truncated": 1}
    assert a.snap().state is State.UP
    for node in (a, b):
        node.engine.close()


async def test_engine_api_errors() -> None:
    wire = Wire(asyncio.get_running_loop())
    a, b = await make_pair(wire)
    spec = a.snap().spec
    with pytest.raises(ValueError, match="exists already"):
        a.engine.add_session(spec)
    with pytest.raises(KeyError, match=r"no BFD session 10\.9\.9\.9"):
        a.engine.admin_down(SessionKey(ipaddress.ip_address("10.9.9.9")))
    a.engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        a.engine.add_session(spec)
    b.engine.close()


# --------------------------------------------------------------------------- hostile input


class NullTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.when: float | None = None

    def arm(self, when: float, *, precise: bool = True) -> None:
        self.when = when

    def cancel(self) -> None:
        self.when = None

    def close(self) -> None:
        self.when = None


class NullTransport:
    def __init__(self, on_datagram: Callable[[BfdDatagram], None]) -> None:
        self.on_datagram = on_datagram
        self.sent: list[bytes] = []

    def listen(self, family: int, multihop: bool) -> None:
        pass

    def unlisten(self, family: int, multihop: bool) -> None:
        pass

    def sender(self, key: SessionKey) -> Any:
        transport = self

        class _Sender:
            port = 50000

            def send(self, data: bytes) -> bool:
                transport.sent.append(data)
                return True

            def close(self) -> None:
                pass

        return _Sender()

    def close(self) -> None:
        pass


def fuzz_engine() -> tuple[BfdEngine, list[int]]:
    clock = itertools.count()
    engine = BfdEngine(
        clock=lambda: next(clock) * 0.01,
        rng=random.Random(5),
        transport=NullTransport,
        timer_factory=NullTimer,
    )
    engine.add_session(SessionSpec(B4, A4, **FAST))
    md5 = AuthConfig.single(AuthType.KEYED_MD5, 1, b"k")
    engine.add_session(SessionSpec(C4, A4, auth=md5, **FAST))
    engine.add_session(SessionSpec(B4, A4, multihop=True, **FAST))
    engine.start()
    return engine, [s.local_discr for s in engine.snapshot()]


PEERS = st.sampled_from([A4, B4, C4, ipaddress.ip_address("fd00::2")])


@st.composite
def datagrams(draw: st.DrawFn, discrs: list[int]) -> BfdDatagram:
    if draw(st.booleans()):
        data = draw(st.binary(max_size=64))
    else:
        state = draw(st.sampled_from(list(State)))
        your = draw(st.sampled_from([0, *discrs]) | st.integers(0, 2**32 - 1))
        auth = None
        if draw(st.booleans()):
            auth = AuthSection(
                type=AuthType.KEYED_MD5,
                key_id=draw(st.integers(0, 2)),
                sequence=draw(st.integers(0, 2**32 - 1)),
                data=draw(st.binary(min_size=16, max_size=16)),
            )
        data = ControlPacket(
            state=state,
            diag=draw(st.integers(0, 31)),
            detect_mult=draw(st.integers(0, 4)),
            my_discr=draw(st.integers(0, 3)),
            your_discr=your,
            desired_min_tx=draw(st.integers(0, 2**32 - 1)),
            required_min_rx=draw(st.integers(0, 2**32 - 1)),
            poll=draw(st.booleans()),
            final=draw(st.booleans()),
            demand=draw(st.booleans()),
            auth=auth,
        ).pack()
    src = draw(PEERS)
    return BfdDatagram(
        data,
        src.version,
        src,
        draw(st.integers(0, 65535)),
        draw(st.sampled_from([A4, None])),
        0,  # no interface: the sessions here are not bound to one
        draw(st.sampled_from([255, 255, 255, -1, 0, 64, 254])),
        draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_receive_path_never_raises_and_accounts_for_every_datagram(data: st.DataObject) -> None:
    engine, discrs = fuzz_engine()
    fed = data.draw(st.lists(datagrams(discrs), max_size=40))
    for datagram in fed:
        engine._on_datagram(datagram)
    snaps = engine.snapshot()
    accounted = sum(engine.unmatched.values())
    accounted += sum(sum(s.rejects.values()) + s.counters["packets_in"] for s in snaps)
    assert accounted == len(fed)
    for snap in snaps:
        assert snap.auth_failures == sum(
            n for reason, n in snap.rejects.items() if RejectReason(reason).is_auth
        )


# --------------------------------------------------------------------------- cost paths


class PollingTransport(FakeTransport):
    """A FakeTransport that, like UdpTransport, can stop delivering on arrival: datagrams
    then wait (with their arrival time) until the engine drains them."""

    def __init__(self, wire: Wire, address: ipaddress.IPv4Address, on_datagram: Callable):
        super().__init__(wire, address, on_datagram)
        self.polling = False
        self.waiting: list[BfdDatagram] = []
        self.drains = 0

    def deliver(self, datagram: BfdDatagram) -> None:
        if self.polling:
            self.waiting.append(datagram._replace(arrived=self.wire.loop.time()))
            return
        super().deliver(datagram)

    def set_polling(self, polling: bool) -> None:
        self.polling = polling
        if not polling:
            self.drain()

    def drain(self) -> None:
        self.drains += 1
        waiting, self.waiting = self.waiting, []
        for datagram in waiting:
            super().deliver(datagram)


async def many_sessions(count: int, transport: type[FakeTransport] = PollingTransport):
    """Two engines with ``count`` sessions between them at 20 ms x 3."""
    wire = Wire(asyncio.get_running_loop())
    engines = []
    for mine, peer_net, seed in (("10.0.1.", "10.0.2.", 1), ("10.0.2.", "10.0.1.", 2)):
        transports: list[FakeTransport] = []

        def factory(cb: Callable, m: str = mine, ts: list[FakeTransport] = transports):
            ts.append(transport(wire, ipaddress.ip_address(m + "1"), cb))
            for i in range(2, count + 1):  # every local address leads to this transport
                wire.hosts[ipaddress.ip_address(f"{m}{i}")] = ts[0]
            return ts[0]

        engine = BfdEngine(rng=random.Random(seed), transport=factory)
        for i in range(1, count + 1):
            engine.add_session(SessionSpec(f"{peer_net}{i}", f"{mine}{i}", **FAST))  # type: ignore[arg-type]
        engines.append((engine, transports))
    for engine, _ in engines:
        engine.start()

    def all_up() -> bool:
        return all(
            s.state is State.UP and s.remote_state is State.UP and s.tx_interval == 0.02
            for engine, _ in engines
            for s in engine.snapshot()
        )

    await wait_until(all_up, 10.0, f"{count} sessions Up on both engines at 20 ms")
    return wire, engines


async def test_under_load_datagrams_are_read_on_the_timer_and_nothing_is_missed() -> None:
    """8 sessions at 20 ms expect 400 packets a second: the engine stops waking per
    datagram, reads them on its timer (first, before any deadline), and stays Up; the
    arrival time keeps the detection time exact, so a cut still takes it Down on time."""
    wire, engines = await many_sessions(8)
    (a, ta), (_b, _tb) = engines
    assert a._polling and ta[0].polling
    start = a.stats()
    await wait_until(
        lambda: a.stats()["repeats"] >= start["repeats"] + 400, 5.0, "400 more repeats"
    )
    assert all(s.state is State.UP for s in a.snapshot())
    assert all(s.counters["down_transitions"] == 0 for s in a.snapshot())
    assert ta[0].drains >= a.stats()["wakeups"] - start["wakeups"] - 1
    # fewer wake-ups than packets sent: one wake-up sends for several sessions
    sent = sum(s.counters["packets_out"] for s in a.snapshot())
    assert a.stats()["wakeups"] < sent / 2
    loop = asyncio.get_running_loop()
    wire.up = False
    cut = loop.time()
    await wait_until(lambda: all(s.state is State.DOWN for s in a.snapshot()), 2.0, "all Down")
    for s in a.snapshot():
        assert s.last_transition is not None
        assert s.last_transition.diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
        assert s.last_transition.time - cut <= 0.06 + 0.05
    await wait_until(lambda: not a._polling, 2.0, "back to waking per datagram")
    assert not ta[0].polling
    for engine, _ in engines:
        engine.close()


class StalledTransport(PollingTransport):
    """Waking per datagram, but with the loop stalled (a busy machine, a flood of junk):
    the peer's datagrams wait in the socket, with their arrival time, until someone reads
    them, and the engine's timer may come first."""

    held = False

    def deliver(self, datagram: BfdDatagram) -> None:
        if self.held:
            self.waiting.append(datagram._replace(arrived=self.wire.loop.time()))
            return
        super().deliver(datagram)


async def test_a_due_detection_time_reads_the_waiting_datagrams_first() -> None:
    """A stall must not cost a false Down: before a detection time expires the engine
    reads what waits in the socket (packets that arrived in time count), even when it is
    not polling; a real cut still takes the sessions Down on time."""
    wire, engines = await many_sessions(2, transport=StalledTransport)
    (a, ta), _ = engines
    assert not a._polling  # 2 sessions at 20 ms: waking per datagram
    ta[0].held = True
    await wait_until(lambda: ta[0].drains >= 10, 3.0, "ten detection times come due, held")
    assert all(s.state is State.UP for s in a.snapshot())
    assert all(s.counters["down_transitions"] == 0 for s in a.snapshot())
    loop = asyncio.get_running_loop()
    wire.up = False
    cut = loop.time()
    await wait_until(lambda: all(s.state is State.DOWN for s in a.snapshot()), 2.0, "all Down")
    for s in a.snapshot():
        assert s.last_transition is not None
        assert s.last_transition.diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
        # the detection time from the last arrival, plus room for a busy machine
        assert s.last_transition.time - cut <= 0.06 + 0.2
    for engine, _ in engines:
        engine.close()


async def test_few_sessions_wake_per_datagram() -> None:
    _wire, engines = await many_sessions(2)
    (a, ta), _ = engines
    await wait_until(lambda: a.stats()["repeats"] > 20, 2.0, "repeats")
    assert not a._polling and not ta[0].polling
    for engine, _ in engines:
        engine.close()


async def test_meticulous_authentication_never_takes_the_short_path() -> None:
    """A repeat under a meticulous type is a replay: always the full path, and refused."""
    auth = AuthConfig.single(AuthType.METICULOUS_KEYED_SHA1, 1, b"k")
    wire, a, b = await up_pair(spec_a={"auth": auth}, spec_b={"auth": auth})
    to_a: list[BfdDatagram] = []
    deliver = wire.hosts[A4].deliver
    wire.hosts[A4].deliver = lambda d: (to_a.append(d), deliver(d))  # type: ignore[method-assign]
    await packets_flow(a, b, 10)
    assert a.engine.stats()["repeats"] == 0 and b.engine.stats()["repeats"] == 0
    assert a.engine._sessions()[0].repeat is None
    # a replay of a packet b sent, on both paths: refused by the sequence check
    replay = to_a[-1]
    assert replay.raw is not None
    address, ancdata = replay.raw
    assert not a.engine._on_raw(replay.data, ancdata, address, False, None)
    a.engine._on_datagram(replay)
    assert a.snap().rejects == {"auth_sequence": 1}
    for node in (a, b):
        node.engine.close()


async def test_keyed_authentication_takes_the_short_path() -> None:
    auth = AuthConfig.single(AuthType.KEYED_SHA1, 1, b"k")
    _wire, a, b = await up_pair(spec_a={"auth": auth}, spec_b={"auth": auth})
    await packets_flow(a, b, 10)
    assert a.engine.stats()["repeats"] > 0
    assert a.snap().auth_failures == 0
    for node in (a, b):
        node.engine.close()


async def test_a_flood_from_spoofed_sources_keeps_the_reject_log_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keyed by source, 2,000 packets from 2,000 addresses made 2,000 log lines and kept
    2,000 entries for good (the BFD fuzz's RSS growth). Now: one line per reason."""
    _wire, a, b = await up_pair()
    engine = a.engine
    stray = ControlPacket(
        state=State.UP, detect_mult=3, my_discr=5, your_discr=12345,
        desired_min_tx=1, required_min_rx=1,
    ).pack()  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="vigil.bfd"):
        for i in range(2000):
            src = ipaddress.ip_address(f"10.200.{i // 250}.{i % 250 + 1}")
            engine._on_datagram(BfdDatagram(stray, 4, src, 50000, A4, 0, 255, False))
    assert engine.stats()["unmatched"] == {"no_session": 2000}
    assert len(engine._reject_log.last) == 1
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "from 10.200.0.1" in dropped[0].getMessage()
    assert a.snap().state is State.UP
    for node in (a, b):
        node.engine.close()
