"""A DNS query and the check of its response: just enough of RFC 1035 for DNS_CHECK.

:class:`DnsQuery` packs one question (recursion desired, like keepalived's).
:func:`check_response` never raises on network input: a datagram is either ours and
judged (:class:`DnsVerdict`), or not ours / not parseable, with a typed
:class:`DnsReject` reason, so the prober keeps waiting for the real answer until its
timeout. keepalived's rule is id + QR + rcode NOERROR; we also require the question to
be echoed back (every server does, and it ties the answer to this query) and, with
``require_answer``, at least one answer record of the queried type (following
compression pointers, bounded).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "CLASS_IN",
    "RCODES",
    "DnsQuery",
    "DnsReject",
    "DnsVerdict",
    "check_response",
    "encode_name",
    "name_problem",
    "parse_response",
]

CLASS_IN = 1
RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}

_HEADER = struct.Struct("!HHHHHH")
_QTAIL = struct.Struct("!HH")
_RR = struct.Struct("!HHIH")

FLAG_QR = 0x8000
FLAG_TC = 0x0200
FLAG_RD = 0x0100
MAX_NAME = 255
MAX_LABEL = 63
_MAX_POINTERS = 32  # compression pointers followed per name


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be put in a query, or None. ``"."`` is the root."""
    if not isinstance(name, str):
        return f"must be a string, got {name!r}"
    try:
        encode_name(name)
    except ValueError as exc:
        return str(exc)
    return None


def encode_name(name: str) -> bytes:
    """``www.example.org`` (trailing dot optional) in wire form; ValueError if invalid."""
    if name in (".", ""):
        if name == "":
            raise ValueError("empty name; use '.' for the root")
        return b"\x00"
    text = name[:-1] if name.endswith(".") else name
    out = bytearray()
    for label in text.split("."):
        try:
            raw = label.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{name!r}: use the A-label (xn--) form for non-ASCII names") from None
        if not raw:
            raise ValueError(f"{name!r}: empty label")
        if len(raw) > MAX_LABEL:
            raise ValueError(f"{name!r}: label {label[:20]!r}... longer than {MAX_LABEL} bytes")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"{name!r}: longer than {MAX_NAME} bytes on the wire")
    return bytes(out)


@dataclass(frozen=True)
class DnsQuery:
    """One question: ``pack()`` gives the datagram."""

    id: int
    name: str
    qtype: int
    recursion_desired: bool = True

    def pack(self) -> bytes:
        flags = FLAG_RD if self.recursion_desired else 0
        return (
            _HEADER.pack(self.id & 0xFFFF, flags, 1, 0, 0, 0)
            + encode_name(self.name)
            + _QTAIL.pack(self.qtype, CLASS_IN)
        )

    def question(self) -> bytes:
        """The question section as sent (name + type + class), compared case-blind."""
        return encode_name(self.name) + _QTAIL.pack(self.qtype, CLASS_IN)


class DnsReject(enum.StrEnum):
    """Why a datagram is not (a usable) answer to our query; the prober keeps waiting."""

    SHORT = "shorter than a DNS header"
    ID = "id does not match the query"
    NOT_RESPONSE = "QR bit clear (a query, not a response)"
    QUESTION = "question section does not match the query"
    MALFORMED = "malformed records"


@dataclass(frozen=True)
class DnsVerdict:
    """The judged response: ``ok`` per the rule, with what the server said."""

    ok: bool
    rcode: int
    answers: int  # ANCOUNT
    matching: int  # answers of the queried type (-1: not counted)
    truncated: bool
    reason: str


@dataclass(frozen=True)
class ParsedResponse:
    id: int
    flags: int
    qdcount: int
    ancount: int
    question: bytes | None  # raw question section, lower-cased names, if qdcount == 1
    answer_types: tuple[int, ...] | None  # None: records could not be walked

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TC)


def _skip_name(data: bytes, offset: int) -> tuple[bytes, int] | None:
    """The name at ``offset`` lower-cased in wire form (pointers expanded), and the offset
    just after it in the message; None if it runs off the end, loops or is too long."""
    out = bytearray()
    end: int | None = None
    pos = offset
    for _ in range(_MAX_POINTERS + MAX_NAME):
        if pos >= len(data):
            return None
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                return None
            if end is None:
                end = pos + 2
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= pos:  # only backward pointers: no loops
                return None
            pos = target
            continue
        if length & 0xC0:
            return None  # 0x40 / 0x80: extended label types, not used
        if length == 0:
            out.append(0)
            if len(out) > MAX_NAME:
                return None
            return bytes(out), (end if end is not None else pos + 1)
        if pos + 1 + length > len(data):
            return None
        out.append(length)
        out += data[pos + 1 : pos + 1 + length].lower()
        if len(out) > MAX_NAME:
            return None
        pos += 1 + length
    return None


def parse_response(data: bytes) -> ParsedResponse | DnsReject:
    """Header, question (when there is exactly one) and answer types; never raises."""
    if len(data) < _HEADER.size:
        return DnsReject.SHORT
    ident, flags, qd, an, _ns, _ar = _HEADER.unpack_from(data)
    pos = _HEADER.size
    question: bytes | None = None
    for i in range(qd):
        skipped = _skip_name(data, pos)
        if skipped is None or skipped[1] + _QTAIL.size > len(data):
            return ParsedResponse(ident, flags, qd, an, None, None)
        name, pos = skipped
        if i == 0:
            question = name + data[pos : pos + _QTAIL.size]
        pos += _QTAIL.size
    types: list[int] = []
    for _ in range(an):
        skipped = _skip_name(data, pos)
        if skipped is None or skipped[1] + _RR.size > len(data):
            return ParsedResponse(ident, flags, qd, an, question if qd == 1 else None, None)
        _, pos = skipped
        rtype, _rclass, _ttl, rdlen = _RR.unpack_from(data, pos)
        pos += _RR.size + rdlen
        if pos > len(data):
            return ParsedResponse(ident, flags, qd, an, question if qd == 1 else None, None)
        types.append(rtype)
    return ParsedResponse(ident, flags, qd, an, question if qd == 1 else None, tuple(types))


def check_response(
    query: DnsQuery, data: bytes, *, require_answer: bool = False
) -> DnsVerdict | DnsReject:
    """Judge ``data`` as the answer to ``query``; a :class:`DnsReject` means "not it"."""
    parsed = parse_response(data)
    if isinstance(parsed, DnsReject):
        return parsed
    if parsed.id != query.id & 0xFFFF:
        return DnsReject.ID
    if not parsed.is_response:
        return DnsReject.NOT_RESPONSE
    rcode = parsed.rcode
    rname = RCODES.get(rcode, f"rcode {rcode}")
    if parsed.question is not None:
        if parsed.question != query.question().lower():
            return DnsReject.QUESTION
    elif parsed.qdcount != 0 or rcode == 0:
        # A NOERROR answer must echo the question; error answers may omit it.
        return DnsReject.QUESTION if parsed.qdcount != 0 else DnsReject.MALFORMED
    if rcode != 0:
        return DnsVerdict(False, rcode, parsed.ancount, -1, parsed.truncated, f"answered {rname}")
    if not require_answer:
        return DnsVerdict(True, 0, parsed.ancount, -1, parsed.truncated, "answered NOERROR")
    if parsed.answer_types is None:
        if parsed.truncated:
            return DnsVerdict(
                False, 0, parsed.ancount, -1, True, "answer truncated (TC) before its records"
            )
        return DnsReject.MALFORMED
    matching = sum(1 for t in parsed.answer_types if t == query.qtype)
    if matching:
        return DnsVerdict(True, 0, parsed.ancount, matching, parsed.truncated, "answered")
    return DnsVerdict(
        False,
        0,
        parsed.ancount,
        0,
        parsed.truncated,
        f"NOERROR without a type {query.qtype} answer ({parsed.ancount} other record(s))",
    )
