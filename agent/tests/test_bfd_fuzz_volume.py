"""100,000 hostile datagrams through the engine's receive path, and not one may count.

The issue's bar: at least 100,000 fuzzed and malformed BFD packets per run, from scapy and
from generated mutations, never crash anything and never change a session's state unless
the packet is valid for it. Here an engine on a fake clock (its timers never fire, so only
packets can change a state) runs two sessions that are Up:

* ``plain``: no authentication. A mutation of its peer's packet may well be a valid
  packet (a flipped state bit is a peer saying Down); every datagram is checked against
  an oracle (decodes, finds this session, TTL 255) and only one that passes may change
  anything.
* ``signed``: meticulous keyed SHA1. Nothing fuzzed can be authentic: the session must
  not move at all, and every datagram must be accounted for as a reject.

Datagrams: bit and byte flips, truncations and extensions of each peer's genuine packet,
random bytes, and scapy's ``fuzz(BFD())``; each goes through the short path for repeats
first (as UdpTransport does) and the full path when that declines, with the genuine
packet's addresses or others. The count and seed are fixed, so a failure reproduces.
"""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest
from scapy.contrib.bfd import BFD
from scapy.packet import fuzz
from test_bfd_runtime import NullTimer, NullTransport

from vigil.bfd.auth import AuthConfig, AuthState
from vigil.bfd.packet import AuthType, ControlPacket, Rejection, State
from vigil.bfd.runtime import BfdEngine
from vigil.bfd.spec import SessionSpec
from vigil.bfd.transport import BfdDatagram, check_ttl

pytestmark = pytest.mark.unit

TOTAL = 100_000
SCAPY = 5_000
LOCAL = ipaddress.ip_address("10.0.0.1")
PLAIN = ipaddress.ip_address("10.0.0.2")
SIGNED = ipaddress.ip_address("10.0.0.3")
FAST = {"min_tx": 0.02, "min_rx": 0.02, "multiplier": 3}
AUTH = AuthConfig.single(AuthType.METICULOUS_KEYED_SHA1, 1, b"fuzz-key")
ANC = [(0, 8, b"\x00" * 12), (0, 2, b"\xff\x00\x00\x00")]


def genuine(engine: BfdEngine, peer_auth: AuthState | None, peer: ipaddress.IPv4Address,
            state: State) -> bytes:  # fmt: skip
    """A packet the peer of session ``peer`` would send now (signed for the signed one)."""
    snap = next(s for s in engine.snapshot() if s.key.peer == peer)
    packet = ControlPacket(
        state=state,
        detect_mult=3,
        my_discr=0x5000 + int(peer) % 256,
        your_discr=snap.local_discr if state is not State.DOWN else 0,
        desired_min_tx=20_000,
        required_min_rx=20_000,
    )
    return packet.pack() if peer_auth is None else peer_auth.sign(packet, 0.0)


def datagram(data: bytes, src: ipaddress.IPv4Address, ttl: int = 255) -> BfdDatagram:
    raw = ((str(src), 49200 + int(src) % 256), ANC)
    return BfdDatagram(data, 4, src, raw[0][1], LOCAL, 0, ttl, False, raw)


def mutate(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(6)
    buf = bytearray(data)
    if kind == 0:  # flip one bit
        i = rng.randrange(len(buf) * 8)
        buf[i // 8] ^= 1 << (i % 8)
    elif kind == 1:  # a few random bytes
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 2:  # truncated
        del buf[rng.randrange(len(buf)) :]
    elif kind == 3:  # extended
        buf += rng.randbytes(rng.randint(1, 40))
    elif kind == 4:  # the Length or flags byte rewritten
        buf[rng.choice((1, 3))] = rng.randrange(256)
    else:  # random bytes of a plausible size
        return rng.randbytes(rng.choice((0, 1, 23, 24, 25, 26, 48, 52, 60)))
    return bytes(buf)


def test_one_hundred_thousand_hostile_datagrams() -> None:
    # A slow fake clock: the whole run stays inside twice the detection time, so the
    # signed session never forgets its receive sequence (RFC 5880 6.8.1), after which
    # any sequence, a replay's too, would be accepted.
    clock = itertools.count()
    engine = BfdEngine(
        clock=lambda: next(clock) * 1e-8,
        rng=random.Random(11),
        transport=NullTransport,
        timer_factory=NullTimer,
    )
    engine.add_session(SessionSpec(PLAIN, LOCAL, name="plain", **FAST))  # type: ignore[arg-type]
    engine.add_session(SessionSpec(SIGNED, LOCAL, name="signed", auth=AUTH, **FAST))  # type: ignore[arg-type]
    engine.start()
    peer_auth = AuthState(AUTH, xmit_seq=1000)
    for state in (State.DOWN, State.UP, State.UP):  # the handshake, then a plain Up
        for peer, auth in ((PLAIN, None), (SIGNED, peer_auth)):
            engine._on_datagram(datagram(genuine(engine, auth, peer, state), peer))
    snaps = {s.name: s for s in engine.snapshot()}
    assert snaps["plain"].state is State.UP and snaps["signed"].state is State.UP

    rng = random.Random(20261206)
    seeds = {PLAIN: genuine(engine, None, PLAIN, State.UP)}
    scapy = [bytes(fuzz(BFD())) for _ in range(SCAPY)]
    fed = changed_by_invalid = valid_changes = 0
    genuine_signed = 0
    for n in range(TOTAL):
        if n % 1000 == 0:
            # A fresh genuine packet from the signed peer, delivered first (its sequence
            # number is then used up: a mutation of it, even one with bytes after Length,
            # which the digest does not cover, is a replay).
            seeds[SIGNED] = genuine(engine, peer_auth, SIGNED, State.UP)
            engine._on_datagram(datagram(seeds[SIGNED], SIGNED))
            genuine_signed += 1
        peer = PLAIN if n % 2 else SIGNED
        data = scapy[n] if n < SCAPY else mutate(rng, seeds[peer])
        src = peer if rng.random() < 0.9 else ipaddress.ip_address(f"10.0.0.{rng.randint(4, 9)}")
        ttl = 255 if rng.random() < 0.95 else rng.choice((0, 1, 64, 254))
        dgram = datagram(data, src, ttl)
        before = observe(engine)
        address, ancdata = dgram.raw  # type: ignore[misc]
        if not engine._on_raw(data, ancdata, address, False, None):
            engine._on_datagram(dgram)
        fed += 1
        after = observe(engine)
        assert after["signed"] == before["signed"], (n, data.hex())
        if after["plain"] != before["plain"]:
            if valid_for(engine, "plain", dgram):
                valid_changes += 1
            else:
                changed_by_invalid += 1
        if after["plain"][0] is not State.UP:  # a valid Down or AdminDown: bring it back
            for state in (State.DOWN, State.UP, State.UP):
                engine._on_datagram(datagram(genuine(engine, None, PLAIN, state), PLAIN))
    assert fed == TOTAL and changed_by_invalid == 0
    assert valid_changes > 0  # the oracle is not vacuous: some mutations are valid packets
    signed = next(s for s in engine.snapshot() if s.name == "signed")
    assert signed.state is State.UP and signed.counters["down_transitions"] == 0
    assert signed.counters["packets_in"] == 3 + genuine_signed  # handshake + the genuine ones
    assert sum(signed.rejects.values()) > TOTAL // 10  # the rest never found the session
    assert signed.auth_failures > 0


def observe(engine: BfdEngine) -> dict[str, tuple[State, State, int]]:
    """What a packet may change, per session (cheaper than a snapshot per datagram)."""
    return {
        s.spec.label: (s.machine.state, s.machine.remote_state, s.machine.counters.packets_in)
        for s in engine._sessions()
    }


def valid_for(engine: BfdEngine, name: str, dgram: BfdDatagram) -> bool:
    """The oracle: a packet the receive rules accept for session ``name``."""
    packet = ControlPacket.unpack(dgram.data)
    if isinstance(packet, Rejection) or packet.auth is not None:
        return False
    session = next(s for s in engine._sessions() if s.spec.label == name)
    found = engine._table.lookup(
        your_discr=packet.your_discr, src=dgram.src, dst=dgram.dst, ifname=None, multihop=False
    )
    if isinstance(found, Rejection) or found[1] is not session:
        return False
    return check_ttl(dgram.ttl, session.key, session.spec.min_ttl) is None
