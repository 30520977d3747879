"""The socket fuzzer's engine and VRRP family, offline: reproducible, never dangerous,
and stricter-than-nothing: whatever its independent receiver model rejects, the agent's
own codec rejects as well."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from vigil.vrrp import packet as codec

from bench import fuzz_vrrp
from bench.fuzz import engine
from bench.fuzz.vrrp import KINDS, _deliverable, accepted, dangerous


@pytest.fixture(scope="module")
def plan() -> engine.FuzzPlan:
    return fuzz_vrrp.make_plan(fuzz_vrrp.parse_args(["--count", "6000", "--seed", "3"]))


@pytest.fixture(scope="module")
def frames(plan: engine.FuzzPlan) -> list[engine.Mutant]:
    gens = {"vrrp": engine.family("vrrp").generator(plan)}
    return [m for b in range(6) for m in engine.generate_batch(plan, gens, b)]


def test_the_same_seed_gives_the_same_packets(plan: engine.FuzzPlan) -> None:
    def batch(p: engine.FuzzPlan, index: int) -> list[bytes]:
        gens = {"vrrp": engine.family("vrrp").generator(p)}
        return [m.frame for m in engine.generate_batch(p, gens, index)]

    assert batch(plan, 2) == batch(plan, 2)
    other = engine.FuzzPlan.from_dict({**plan.to_dict(), "seed": plan.seed + 1})
    assert batch(plan, 2) != batch(other, 2)
    # The plan survives its trip through JSON to the sender process.
    assert engine.FuzzPlan.from_dict(plan.to_dict()) == plan


def test_every_kind_is_made_and_templates_are_valid(
    plan: engine.FuzzPlan, frames: list[engine.Mutant]
) -> None:
    assert set(Counter(m.kind for m in frames)) == set(KINDS)
    gen = engine.family("vrrp").generator(plan)
    for tpl in gen.templates.values():  # type: ignore[attr-defined]
        acc = accepted(tpl.draft.build(), plan.instances)
        assert acc is not None and acc.vrid == tpl.inst.vrid
        assert 0 < acc.priority < plan.safe_priority_below


def test_nothing_sent_could_legitimately_move_mastership(
    plan: engine.FuzzPlan, frames: list[engine.Mutant]
) -> None:
    for m in frames:
        assert not dangerous(accepted(m.frame, plan.instances), plan), m


def _agent_accepts(frame: bytes, plan: engine.FuzzPlan) -> bool:
    """What the agent's codec says, given what the kernel would deliver."""
    got = _deliverable(frame)
    assert got is not None
    fam, off, length, src, dst, ttl = got
    if fam == 4:
        result = codec.decode_ipv4(frame[14 : off + length])
    else:
        result = codec.decode_payload(
            frame[off : off + length],
            family=6,
            src=ipaddress.IPv6Address(src),
            dst=ipaddress.IPv6Address(dst),
            hop_limit=ttl,
        )
    if isinstance(result, codec.Rejection):
        return False
    inst = next(
        (i for i in plan.instances if i.vrid == result.packet.vrid and i.family == fam), None
    )
    if inst is None:
        return False
    if (
        inst.version == 3
        and fam == 4
        and codec.check_checksum_mode(result, pseudo_header=True) is not None
    ):
        return False
    expect = codec.InstanceExpectation(
        version=inst.version,
        vrid=inst.vrid,
        adver_int=inst.adver_int,
        auth_type=1 if inst.auth_password else 0,
        auth_data=(inst.auth_password or "").encode(),
        addresses=tuple(ipaddress.ip_address(v) for v in inst.vips),
    )
    rejection = codec.check_for_instance(result, expect)
    return rejection is None or not rejection.drop


def test_the_agent_rejects_whatever_a_correct_receiver_rejects(
    plan: engine.FuzzPlan, frames: list[engine.Mutant]
) -> None:
    checked = 0
    for m in frames:
        if _deliverable(m.frame) is None:
            continue  # the kernel drops it; the agent never sees it
        if accepted(m.frame, plan.instances) is None:
            checked += 1
            assert not _agent_accepts(m.frame, plan), m
    assert checked > 1000


def test_framing_and_checksum_from_the_rfc() -> None:
    # RFC 1071 example words.
    assert engine.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    d = engine.Draft(4, b"\x01" * 6, b"\x02" * 6, bytes(4), bytes(4), 112, b"\x31\x01")
    frame = d.build()
    assert engine.checksum(frame[14:34]) == 0  # a valid IPv4 header checksum
    assert engine.Draft.parse(frame).payload == b"\x31\x01"
    assert fuzz_vrrp.link_local("02:00:0a:63:00:0b") == "fe80::0:aff:fe63:b"
