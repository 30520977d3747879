"""The socket fuzzer's BFD family, offline: reproducible, never sends what a correct
receiver would act on, frames that scapy reads the same way, and a receiver model that
agrees with the agent's own codec on what is malformed."""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from scapy.contrib.bfd import BFD
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from vigil.bfd.packet import ControlPacket, Rejection

from bench import fuzz_bfd
from bench.fuzz import engine
from bench.fuzz.bfd import KINDS, _deliver, accepted, sha1_auth


@pytest.fixture(scope="module")
def plan() -> engine.FuzzPlan:
    return fuzz_bfd._dump_plan(fuzz_bfd.parse_args(["--count", "6000", "--seed", "3"]))


@pytest.fixture(scope="module")
def frames(plan: engine.FuzzPlan) -> list[engine.Mutant]:
    gens = {"bfd": engine.family("bfd").generator(plan)}
    return [m for b in range(6) for m in engine.generate_batch(plan, gens, b)]


def test_the_same_seed_gives_the_same_packets(plan: engine.FuzzPlan) -> None:
    def batch(p: engine.FuzzPlan) -> list[bytes]:
        gens = {"bfd": engine.family("bfd").generator(p)}
        return [m.frame for m in engine.generate_batch(p, gens, 1)]

    assert batch(plan) == batch(plan)
    assert batch(plan) != batch(engine.FuzzPlan.from_dict({**plan.to_dict(), "seed": 4}))
    assert engine.FuzzPlan.from_dict(plan.to_dict()) == plan


def test_templates_are_what_the_peer_sends_and_scapy_agrees(plan: engine.FuzzPlan) -> None:
    gen = engine.family("bfd").generator(plan)
    for tpl in gen.templates:  # type: ignore[attr-defined]
        s = tpl.session
        frame = gen.udp(tpl, gen.body(tpl, random.Random(1))).build()  # type: ignore[attr-defined]
        acc = accepted(frame, gen.sessions, s.target)  # type: ignore[attr-defined]
        assert acc is not None and acc.session == s
        pkt = Ether(frame)
        ip = pkt[IP] if s.family == 4 else pkt[IPv6]
        assert (ip.ttl if s.family == 4 else ip.hlim) == 255
        udp = pkt[UDP]
        assert udp.dport == 3784 and 49152 <= udp.sport <= 65535
        raw = bytes(udp)
        again = Ether(frame)
        del again[UDP].chksum  # scapy recomputes it: ours must be the same
        assert bytes(Ether(bytes(again))[UDP]) == raw
        bfd = BFD(bytes(udp.payload))
        assert bfd.version == 1 and bfd.sta == 3 and bfd.detect_mult == 3
        assert bfd.my_discriminator == s.remote_discr
        assert bfd.your_discriminator == s.local_discr
        assert bool(bfd.flags & 0x04) == (s.auth_type is not None)
        # the agent's codec reads the same packet
        decoded = ControlPacket.unpack(bytes(udp.payload))
        assert not isinstance(decoded, Rejection), decoded


def test_every_kind_is_made_and_nothing_sent_would_be_accepted(
    plan: engine.FuzzPlan, frames: list[engine.Mutant]
) -> None:
    assert set(Counter(m.kind for m in frames)) == set(KINDS)
    gen = engine.family("bfd").generator(plan)
    for m in frames:
        target = m.note.split("/", 1)[0]
        assert accepted(m.frame, gen.sessions, target) is None, m  # type: ignore[attr-defined]


def test_the_agent_rejects_whatever_the_model_finds_malformed(
    frames: list[engine.Mutant],
) -> None:
    """Where the model stops at the BFD header checks (version, lengths, multiplier, M bit,
    My Discriminator 0), the agent's codec refuses the packet too."""
    checked = 0
    for m in frames:
        got = _deliver(m.frame)
        if got is None or int.from_bytes(got[4][2:4], "big") != 3784:
            continue
        pkt = got[5]
        if len(pkt) >= 24:
            vd, sf, mult, length, my = struct.unpack_from("!BBBBI", pkt)
            a_bit = bool(sf & 0x04)
            bad = (
                vd >> 5 != 1
                or length < (26 if a_bit else 24)
                or length > len(pkt)
                or mult == 0
                or sf & 0x01
                or my == 0
            )
        else:
            bad = True
        if bad:
            checked += 1
            assert isinstance(ControlPacket.unpack(pkt), Rejection), m
    assert checked > 1000


def test_sha1_digest_is_rfc_5880() -> None:
    body = bytes(range(24))
    auth = sha1_auth(body, 7, 0x01020304, b"key")
    assert auth[:8] == bytes([5, 28, 7, 0, 1, 2, 3, 4])
    import hashlib

    want = hashlib.sha1(body + auth[:8] + b"key".ljust(20, b"\0")).digest()
    assert auth[8:] == want
