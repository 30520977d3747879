"""The DNS_CHECK codec: queries cross-checked against scapy, responses built with scapy,
and a hypothesis fuzz that the response parser never raises."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRSOA

from vigil.ipvs.checkers.dns import (
    DnsQuery,
    DnsReject,
    DnsVerdict,
    check_response,
    encode_name,
    name_problem,
    parse_response,
)


def test_query_matches_scapy() -> None:
    q = DnsQuery(0x1234, "www.Example.org", 28)
    ours = DNS(q.pack())
    assert ours.id == 0x1234 and ours.rd == 1 and ours.qr == 0 and ours.qdcount == 1
    assert ours.qd.qname == b"www.Example.org." and ours.qd.qtype == 28 and ours.qd.qclass == 1
    theirs = bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname="www.Example.org", qtype=28)))
    assert q.pack() == theirs


def test_root_query_is_keepalived_default() -> None:
    q = DnsQuery(1, ".", 6)
    assert q.pack()[12:] == b"\x00" + struct.pack("!HH", 6, 1)
    assert bytes(DNS(id=1, rd=1, qd=DNSQR(qname=".", qtype=6))) == q.pack()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty name"),
        ("a..b", "empty label"),
        ("x" * 64 + ".org", "longer than 63"),
        (".".join(["abcdefghi"] * 30), "longer than 255"),
        ("bücher.de", "A-label"),
    ],
)
def test_bad_names(name: str, problem: str) -> None:
    why = name_problem(name)
    assert why is not None and problem in why
    assert name_problem("example.org.") is None
    assert encode_name("example.org.") == encode_name("example.org")


def response(q: DnsQuery, **kw: object) -> bytes:
    defaults: dict[str, object] = {
        "id": q.id,
        "qr": 1,
        "rd": 1,
        "ra": 1,
        "qd": DNSQR(qname=q.name, qtype=q.qtype),
    }
    defaults.update(kw)
    return bytes(DNS(**defaults))


Q_A = DnsQuery(77, "svc.test", 1)


def test_noerror_passes_keepalived_rule_even_without_answers() -> None:
    verdict = check_response(Q_A, response(Q_A))
    assert isinstance(verdict, DnsVerdict) and verdict.ok and verdict.answers == 0


def test_require_answer_needs_a_record_of_the_type() -> None:
    empty = check_response(Q_A, response(Q_A), require_answer=True)
    assert isinstance(empty, DnsVerdict) and not empty.ok and "without a type 1" in empty.reason
    cname_only = response(Q_A, an=DNSRR(rrname="svc.test", type="CNAME", rdata="x.test"))
    v = check_response(Q_A, cname_only, require_answer=True)
    assert isinstance(v, DnsVerdict) and not v.ok and v.answers == 1
    good = response(
        Q_A,
        an=[
            DNSRR(rrname="svc.test", type="CNAME", rdata="x.test"),
            DNSRR(rrname="x.test", type="A", rdata="10.1.2.3"),
        ],
    )
    v = check_response(Q_A, good, require_answer=True)
    assert isinstance(v, DnsVerdict) and v.ok and v.matching == 1


def test_compressed_answers_are_followed() -> None:
    # scapy compresses names when asked; build one by hand too: answer name -> pointer 12
    q = DnsQuery(5, "a.test", 1)
    msg = bytearray(response(q))
    msg[6:8] = struct.pack("!H", 1)  # ANCOUNT 1
    msg += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, 1])
    v = check_response(q, bytes(msg), require_answer=True)
    assert isinstance(v, DnsVerdict) and v.ok


def test_soa_answer_for_root_query() -> None:
    q = DnsQuery(9, ".", 6)
    data = response(q, an=DNSRRSOA(rrname=".", mname="ns.test", rname="h.test"))
    v = check_response(q, data, require_answer=True)
    assert isinstance(v, DnsVerdict) and v.ok


@pytest.mark.parametrize(("rcode", "name"), [(2, "SERVFAIL"), (3, "NXDOMAIN"), (5, "REFUSED")])
def test_error_rcodes_fail(rcode: int, name: str) -> None:
    v = check_response(Q_A, response(Q_A, rcode=rcode))
    assert isinstance(v, DnsVerdict) and not v.ok and name in v.reason
    # an error answer may omit the question
    v2 = check_response(Q_A, response(Q_A, rcode=rcode, qd=None, qdcount=0))
    assert isinstance(v2, DnsVerdict) and not v2.ok


def test_not_ours_is_rejected_not_judged() -> None:
    assert check_response(Q_A, b"\x00\x01") is DnsReject.SHORT
    assert check_response(Q_A, response(Q_A, id=78)) is DnsReject.ID
    assert check_response(Q_A, response(Q_A, qr=0)) is DnsReject.NOT_RESPONSE
    other = response(Q_A, qd=DNSQR(qname="other.test", qtype=1))
    assert check_response(Q_A, other) is DnsReject.QUESTION
    other_type = response(Q_A, qd=DNSQR(qname="svc.test", qtype=28))
    assert check_response(Q_A, other_type) is DnsReject.QUESTION


def test_question_compared_case_blind() -> None:
    upper = response(Q_A, qd=DNSQR(qname="SVC.Test", qtype=1))
    v = check_response(Q_A, upper)
    assert isinstance(v, DnsVerdict) and v.ok


def test_pointer_loops_and_truncation_are_malformed() -> None:
    q = DnsQuery(5, "a.test", 1)
    msg = bytearray(response(q))
    msg[6:8] = struct.pack("!H", 1)
    msg += b"\xc0\x30"  # forward pointer
    assert check_response(q, bytes(msg), require_answer=True) is DnsReject.MALFORMED
    # a NOERROR answer with no question
    bare = struct.pack("!HHHHHH", 5, 0x8180, 0, 0, 0, 0)
    assert check_response(q, bare) is DnsReject.MALFORMED


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_parser_never_raises(data: bytes) -> None:
    parse_response(data)
    check_response(Q_A, data, require_answer=True)
    check_response(Q_A, data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parser_never_raises_on_mutated_real_responses(tail: bytes) -> None:
    base = response(Q_A, an=DNSRR(rrname="svc.test", type="A", rdata="10.0.0.1"))
    check_response(Q_A, base[: len(base) // 2] + tail, require_answer=True)
    check_response(Q_A, base + tail, require_answer=True)
