"""The BFD packet family: templates from the agents' live sessions, malformations, an oracle.

Templates are the control packets the *peer* of each live session would send to the agent
(RFC 5880 section 4.1 over RFC 5881 single hop: UDP 3784, a source port in 49152-65535,
TTL / hop limit 255), with the session's real discriminators, read from the API before the
flood, and its authentication (meticulous keyed SHA1 with the real key for the session
that has it). Every packet starts from one template and gets one malformation:

    version, length_short, length_long, truncated, trailing, mult_zero, multipoint,
    my_discr_zero, your_discr_wrong, your_discr_zero, auth_flag, auth_type, auth_key_id,
    auth_digest, ttl, src_address, src_port, dst_address, multihop_port, udp_checksum,
    udp_length, ip_header, state_flags, garbage, bitflip, fieldflip, oversize

BFD without authentication trusts a packet that looks right (RFC 5881 leans on TTL 255 for
that): a valid packet from the peer's address with the right discriminators saying Down
takes the session down, and nothing on the wire can tell it from the peer. So the fuzzer
never sends one: :func:`accepted` is an independent model of a correct single-hop receiver
(kernel delivery of the IP/UDP datagram, TTL 255, the RFC 5880 6.8.6 checks, session
selection by Your Discriminator or by addresses, the session's source address, and its
authentication, with the digest checked with the real key), and a mutant it would accept is
sent with TTL 254 instead (counted as ``neutralized``; it is still a packet the agent must
reject, for its TTL). Mutants a correct receiver rejects go as they are: an agent that
wrongly accepts one and changes a session's state is caught.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.fuzz.engine import ETH_IPV4, ETH_IPV6, Draft, FuzzPlan, Mutant, checksum, mac_bytes

__all__ = ["FAMILY", "KINDS", "BfdFamily", "BfdGenerator", "SessionInfo", "accepted"]

PORT_SINGLE, PORT_MULTI = 3784, 4784
UDP = 17
_BFD = struct.Struct("!BBBBIIIII")
_UDP = struct.Struct("!HHHH")
AUTH_SHA1_METICULOUS = 5
AUTH_LEN = {1: None, 2: 24, 3: 24, 4: 28, 5: 28}  # simple password: 4..19
STATE_ADMIN_DOWN, STATE_DOWN, STATE_INIT, STATE_UP = 0, 1, 2, 3

#: malformation kinds and their weights
KINDS: dict[str, float] = {
    "version": 4,
    "length_short": 4,
    "length_long": 4,
    "truncated": 5,
    "trailing": 2,
    "mult_zero": 4,
    "multipoint": 4,
    "my_discr_zero": 4,
    "your_discr_wrong": 5,
    "your_discr_zero": 5,
    "auth_flag": 4,
    "auth_type": 3,
    "auth_key_id": 3,
    "auth_digest": 4,
    "ttl": 6,
    "src_address": 6,
    "src_port": 2,
    "dst_address": 3,
    "multihop_port": 4,
    "udp_checksum": 4,
    "udp_length": 4,
    "ip_header": 7,
    "state_flags": 6,
    "garbage": 7,
    "bitflip": 8,
    "fieldflip": 6,
    "oversize": 2,
}


@dataclass(frozen=True)
class SessionInfo:
    """One live session as the fuzzer sees it (from the agent's API)."""

    target: str  # the agent node
    name: str
    family: int
    local: str  # the agent's address (packets go to it)
    peer: str  # the peer's address (templates come from it)
    local_discr: int
    remote_discr: int
    auth_type: int | None = None
    auth_key_id: int = 0
    auth_secret: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionInfo:
        return cls(**data)


def bfd_control(
    *,
    state: int = STATE_UP,
    diag: int = 0,
    flags: int = 0,
    mult: int = 3,
    my: int,
    your: int,
    tx_us: int = 100_000,
    rx_us: int = 100_000,
    echo_us: int = 0,
    version: int = 1,
    length: int | None = None,
    auth: bytes = b"",
) -> bytes:
    """An RFC 5880 control packet (flags: P 0x20, F 0x10, C 0x08, A 0x04, D 0x02, M 0x01)."""
    if auth:
        flags |= 0x04
    size = 24 + len(auth) if length is None else length
    return (
        _BFD.pack(
            (version << 5) | (diag & 0x1F),
            ((state & 3) << 6) | (flags & 0x3F),
            mult & 0xFF,
            size & 0xFF,
            my,
            your,
            tx_us,
            rx_us,
            echo_us,
        )
        + auth
    )


def sha1_auth(packet_without_digest: bytes, key_id: int, seq: int, secret: bytes) -> bytes:
    """RFC 5880 6.7.4: the digest over the packet with the key in the digest's place."""
    head = struct.pack("!BBBBI", AUTH_SHA1_METICULOUS, 28, key_id, 0, seq)
    key = secret.ljust(20, b"\0")[:20]
    digest = hashlib.sha1(packet_without_digest + head + key).digest()
    return head + digest


def _signed(fields: dict[str, Any], s: SessionInfo, seq: int) -> bytes:
    """A control packet for ``s`` signed with its key (meticulous keyed SHA1)."""
    flags = int(fields.pop("flags", 0)) | 0x04
    base = bfd_control(**fields, flags=flags, length=24 + 28)
    return base + sha1_auth(base, s.auth_key_id, seq, s.auth_secret.encode())


def udp_datagram(draft_src: bytes, draft_dst: bytes, family: int, sport: int, dport: int,
                 payload: bytes) -> bytes:  # fmt: skip
    """A UDP header and payload with a correct checksum for these addresses."""
    length = 8 + len(payload)
    head = _UDP.pack(sport, dport, length, 0)
    if family == 4:
        pseudo = struct.pack("!4s4sBBH", draft_src, draft_dst, 0, UDP, length)
    else:
        pseudo = struct.pack("!16s16sI3xB", draft_src, draft_dst, length, UDP)
    csum = checksum(pseudo + head + payload) or 0xFFFF
    return _UDP.pack(sport, dport, length, csum) + payload


# ------------------------------------------------------------------ the receiver model


@dataclass(frozen=True)
class Accepted:
    session: SessionInfo
    where: str  # why it would be taken: "discriminator" or "addresses"


def _deliver(frame: bytes) -> tuple[int, bytes, bytes, int, bytes, bytes] | None:
    """What the kernel would hand a UDP socket: (family, src, dst, ttl, udp header, payload)
    after IP and UDP validation; None when it would drop the frame."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    ip = frame[14:]
    if ethertype == ETH_IPV4:
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return None
        ihl = (ip[0] & 0x0F) * 4
        total = int.from_bytes(ip[2:4], "big")
        if ihl < 20 or total < ihl or total > len(ip) or len(ip) < ihl:
            return None
        if checksum(bytes(ip[:ihl])) != 0:
            return None
        if int.from_bytes(ip[6:8], "big") & 0x3FFF:  # MF or an offset: not alone
            return None
        if ip[9] != UDP:
            return None
        fam, ttl, src, dst, l4 = 4, ip[8], bytes(ip[12:16]), bytes(ip[16:20]), ip[ihl:total]
    elif ethertype == ETH_IPV6:
        if len(ip) < 40 or ip[0] >> 4 != 6:
            return None
        plen = int.from_bytes(ip[4:6], "big")
        if 40 + plen > len(ip):
            return None
        nh, ttl, src, dst = ip[6], ip[7], bytes(ip[8:24]), bytes(ip[24:40])
        body = ip[40 : 40 + plen]
        while nh in (0, 60):  # hop-by-hop, destination options: skipped
            if len(body) < 8:
                return None
            size = (body[1] + 1) * 8
            nh, body = body[0], body[size:]
        if nh != UDP:
            return None
        fam, l4 = 6, body
    else:
        return None
    if len(l4) < 8:
        return None
    _sport, _dport, ulen, ucsum = _UDP.unpack_from(l4)
    if ulen < 8 or ulen > len(l4):
        return None
    l4 = l4[:ulen]
    if fam == 4:
        pseudo = struct.pack("!4s4sBBH", src, dst, 0, UDP, ulen)
    else:
        pseudo = struct.pack("!16s16sI3xB", src, dst, ulen, UDP)
    if (fam == 6 or ucsum != 0) and checksum(pseudo + bytes(l4)) != 0:
        return None
    if fam == 6 and ucsum == 0:
        return None
    return fam, src, dst, ttl, bytes(l4[:8]), bytes(l4[8:])


def accepted(frame: bytes, sessions: Sequence[SessionInfo], target: str) -> Accepted | None:
    """Whether a correct single-hop BFD receiver on ``target`` would take this frame as a
    control packet of one of its sessions (and for which)."""
    got = _deliver(frame)
    if got is None:
        return None
    fam, src, _dst, ttl, udp, pkt = got
    if int.from_bytes(udp[2:4], "big") != PORT_SINGLE:
        return None  # the multihop port: no multihop session anywhere
    if ttl != 255 or len(pkt) < 24:
        return None
    vers_diag, sta_flags, mult, length, my, your = struct.unpack_from("!BBBBII", pkt)
    a_bit = bool(sta_flags & 0x04)
    if vers_diag >> 5 != 1 or length < (26 if a_bit else 24) or length > len(pkt):
        return None
    if mult == 0 or sta_flags & 0x01 or my == 0:
        return None
    state = sta_flags >> 6
    mine = [s for s in sessions if s.target == target and s.family == fam]
    src_ip = ipaddress.ip_address(src)
    if your:
        chosen = [s for s in mine if s.local_discr == your]
        where = "discriminator"
    else:
        if state not in (STATE_DOWN, STATE_ADMIN_DOWN):
            return None
        chosen = [s for s in mine if ipaddress.ip_address(s.peer) == src_ip]
        where = "addresses"
    if not chosen:
        return None
    s = chosen[0]
    if ipaddress.ip_address(s.peer) != src_ip:
        return None  # single hop: the session's peer address only
    if s.auth_type is None:
        return None if a_bit else Accepted(s, where)
    if not a_bit or length < 24 + 28:
        return None
    atype, alen, key_id = pkt[24], pkt[25], pkt[26]
    if atype != s.auth_type or alen != 28 or key_id != s.auth_key_id or length != 24 + 28:
        return None
    seq = int.from_bytes(pkt[28:32], "big")
    want = sha1_auth(pkt[:24], key_id, seq, s.auth_secret.encode())
    # Sequence numbers: a correct receiver takes a new one; the model cannot know the
    # last one it saw, so a good digest counts as accepted.
    return Accepted(s, where) if pkt[24:52] == want else None


def neutralize(frame: bytes) -> bytes:
    """The same frame with TTL / hop limit 254 (and the IPv4 header checksum fixed)."""
    out = bytearray(frame)
    if int.from_bytes(out[12:14], "big") == ETH_IPV4:
        ihl = (out[14] & 0x0F) * 4
        out[14 + 8] = 254
        out[14 + 10 : 14 + 12] = b"\0\0"
        out[14 + 10 : 14 + 12] = struct.pack("!H", checksum(bytes(out[14 : 14 + ihl])))
    else:
        out[14 + 7] = 254
    return bytes(out)


# ------------------------------------------------------------------ the generator


@dataclass
class _Template:
    session: SessionInfo
    draft: Draft  # IP + UDP, the payload is the UDP datagram
    sport: int
    dst_mac: bytes


class BfdGenerator:
    """Frames for one plan: a template per live session, then mutations."""

    def __init__(self, plan: FuzzPlan) -> None:
        self.plan = plan
        self.sessions = [SessionInfo.from_dict(d) for d in plan.bfd_sessions]
        if not self.sessions:
            raise ValueError("the bfd family needs plan.bfd_sessions (live sessions)")
        self.targets = {t.name: t for t in plan.targets}
        self.src_mac = mac_bytes(plan.src_mac)
        self.templates = [self._template(s) for s in self.sessions]
        self.neutralized = 0
        self.kinds = list(KINDS)
        self.weights = [KINDS[k] for k in self.kinds]
        self._mutators: dict[str, Callable[[random.Random, _Template], tuple[Draft, str]]]
        self._mutators = {k: getattr(self, f"_m_{k}") for k in self.kinds}

    def _template(self, s: SessionInfo) -> _Template:
        target = self.targets[s.target]
        src = ipaddress.ip_address(s.peer).packed
        dst = ipaddress.ip_address(s.local).packed
        draft = Draft(
            family=s.family,
            dst_mac=mac_bytes(target.mac),
            src_mac=self.src_mac,
            src=src,
            dst=dst,
            proto=UDP,
            payload=b"",
            ttl=255,
            tos=0xC0,
        )
        return _Template(s, draft, 49152 + (s.local_discr % 16384), mac_bytes(target.mac))

    # ------------------------------------------------------------------ helpers

    def body(self, tpl: _Template, rng: random.Random, **fields: Any) -> bytes:
        """The session's control packet from its peer (signed when it has a key)."""
        s = tpl.session
        kw: dict[str, Any] = {"my": s.remote_discr, "your": s.local_discr}
        kw.update(fields)
        if s.auth_type is not None and "auth" not in kw and "length" not in kw:
            return _signed(kw, s, rng.getrandbits(32))
        return bfd_control(**kw)

    def udp(self, tpl: _Template, payload: bytes, *, sport: int | None = None,
            dport: int = PORT_SINGLE, draft: Draft | None = None) -> Draft:  # fmt: skip
        d = draft or tpl.draft
        return d.copy(
            payload=udp_datagram(
                d.src, d.dst, d.family, tpl.sport if sport is None else sport, dport, payload
            )
        )

    def frame(self, rng: random.Random) -> Mutant:
        kind = rng.choices(self.kinds, self.weights)[0]
        tpl = rng.choice(self.templates)
        draft, note = self._mutators[kind](rng, tpl)
        frame = draft.build()
        if accepted(frame, self.sessions, tpl.session.target) is not None:
            frame = neutralize(frame)
            self.neutralized += 1
            note += " (TTL 254: a correct receiver would take it)"
        return Mutant(frame, kind, "bfd", f"{tpl.session.target}/{tpl.session.name}: {note}")

    # ------------------------------------------------------------------ mutations

    def _m_version(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        v = rng.choice([0, 2, 3, 4, 7])
        return self.udp(tpl, self.body(tpl, rng, version=v)), f"version {v}"

    def _m_length_short(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        n = rng.randint(0, 25 if tpl.session.auth_type else 23)
        body = bytearray(self.body(tpl, rng))
        body[3] = n
        return self.udp(tpl, bytes(body)), f"length field {n}"

    def _m_length_long(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        body = bytearray(self.body(tpl, rng))
        n = rng.randint(len(body) + 1, 255)
        body[3] = n
        return self.udp(tpl, bytes(body)), f"length field {n} > {len(body)} bytes"

    def _m_truncated(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        body = self.body(tpl, rng)
        n = rng.randint(0, len(body) - 1)
        return self.udp(tpl, body[:n]), f"cut to {n} bytes"

    def _m_trailing(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        extra = rng.randbytes(rng.randint(1, 64))
        return self.udp(tpl, self.body(tpl, rng) + extra), f"{len(extra)} bytes after it"

    def _m_mult_zero(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        return self.udp(tpl, self.body(tpl, rng, mult=0)), "detect multiplier 0"

    def _m_multipoint(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        return self.udp(tpl, self.body(tpl, rng, flags=0x01)), "M bit"

    def _m_my_discr_zero(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        return self.udp(tpl, self.body(tpl, rng, my=0)), "My Discriminator 0"

    def _m_your_discr_wrong(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        known = {s.local_discr for s in self.sessions}
        your = rng.randint(1, 0xFFFFFFFF)
        while your in known:
            your = rng.randint(1, 0xFFFFFFFF)
        state = rng.choice([STATE_DOWN, STATE_ADMIN_DOWN, STATE_UP])
        return self.udp(tpl, self.body(tpl, rng, your=your, state=state)), (
            f"Your Discriminator {your} (nobody's), state {state}"
        )

    def _m_your_discr_zero(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        state = rng.choice([STATE_INIT, STATE_UP, STATE_DOWN])
        return self.udp(tpl, self.body(tpl, rng, your=0, state=state)), (
            f"Your Discriminator 0, state {state}"
        )

    def _m_auth_flag(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        s = tpl.session
        if s.auth_type is None:
            auth = bytes([rng.choice([1, 2, 5]), rng.randint(0, 40)]) + rng.randbytes(26)
            body = bfd_control(my=s.remote_discr, your=s.local_discr, auth=auth)
            return self.udp(tpl, body), "A bit on a session without auth"
        body = bfd_control(my=s.remote_discr, your=s.local_discr)
        return self.udp(tpl, body), "no A bit on an authenticated session"

    def _auth_variant(self, rng: random.Random, tpl: _Template, what: str) -> bytes:
        s = tpl.session
        base = bfd_control(my=s.remote_discr, your=s.local_discr, flags=0x04, length=52)
        key_id = s.auth_key_id
        seq = rng.getrandbits(32)
        atype, alen = AUTH_SHA1_METICULOUS, 28
        secret = s.auth_secret.encode() or b"guess"
        if what == "type":
            atype = rng.choice([0, 1, 2, 3, 4, 6, 255])
        elif what == "len":
            alen = rng.choice([0, 1, 3, 24, 27, 29, 255])
        elif what == "key":
            key_id = (key_id + rng.randint(1, 255)) % 256
        signed = sha1_auth(base, key_id, seq, secret)
        head = bytes([atype, alen]) + signed[2:]
        if what == "digest":
            head = signed[:8] + rng.choice([bytes(20), rng.randbytes(20), signed[8:27] + b"\0"])
        return base + head

    def _m_auth_type(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        what = rng.choice(["type", "len"])
        return self.udp(tpl, self._auth_variant(rng, tpl, what)), f"auth {what} wrong"

    def _m_auth_key_id(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        return self.udp(tpl, self._auth_variant(rng, tpl, "key")), "auth key id unknown"

    def _m_auth_digest(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        return self.udp(tpl, self._auth_variant(rng, tpl, "digest")), "auth digest wrong"

    def _m_ttl(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        ttl = rng.choice([0, 1, 2, 64, 128, 254])
        d = self.udp(tpl, self.body(tpl, rng))
        return d.copy(ttl=ttl), f"TTL {ttl}"

    def _other_sources(self, rng: random.Random, tpl: _Template) -> list[bytes]:
        s = tpl.session
        if s.family == 4:
            out = [ipaddress.IPv4Address(self.plan.src_ipv4).packed, b"\x0a" + rng.randbytes(3)]
            out += [ipaddress.IPv4Address(t.ipv4).packed for t in self.plan.targets]
            out += [ipaddress.IPv4Address(x.local).packed for x in self.sessions if x.family == 4]
        else:
            out = [b"\xfe\x80" + bytes(6) + rng.randbytes(8), b"\xfd\x00" + rng.randbytes(14)]
            out += [ipaddress.IPv6Address(t.ipv6).packed for t in self.plan.targets]
        peer = ipaddress.ip_address(s.peer).packed
        return [a for a in out if a != peer]

    def _m_src_address(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        src = rng.choice(self._other_sources(rng, tpl))
        state = rng.choice([STATE_UP, STATE_DOWN, STATE_ADMIN_DOWN])
        your = rng.choice([tpl.session.local_discr, 0])
        d = self.udp(
            tpl, self.body(tpl, rng, state=state, your=your), draft=tpl.draft.copy(src=src)
        )
        return d, f"from {ipaddress.ip_address(src)}, state {state}, your {your}"

    def _m_src_port(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        port = rng.choice([0, 53, 3784, 4784, 49151])
        return self.udp(tpl, self.body(tpl, rng), sport=port), f"source port {port}"

    def _m_dst_address(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        s = tpl.session
        if s.family == 4:
            dst = rng.choice([b"\xff\xff\xff\xff", ipaddress.IPv4Address(s.local).packed[:3]
                              + b"\xff", b"\x0a" + rng.randbytes(3)])  # fmt: skip
        else:
            dst = rng.choice([ipaddress.IPv6Address("ff02::1").packed,
                              b"\xfd\x00" + rng.randbytes(14)])  # fmt: skip
        state = rng.choice([STATE_DOWN, STATE_UP])
        d = self.udp(tpl, self.body(tpl, rng, state=state, your=0 if state == 1 else s.local_discr),
                     draft=tpl.draft.copy(dst=dst))  # fmt: skip
        return d, f"to {ipaddress.ip_address(dst)}"

    def _m_multihop_port(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        state = rng.choice([STATE_DOWN, STATE_UP])
        d = self.udp(tpl, self.body(tpl, rng, state=state), dport=PORT_MULTI)
        return d, f"to UDP 4784 (no multihop session), state {state}"

    def _m_udp_checksum(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        d = self.udp(tpl, self.body(tpl, rng))
        raw = bytearray(d.payload)
        old = int.from_bytes(raw[6:8], "big")
        new = (old + rng.randint(1, 0xFFFE)) % 0x10000 or 1
        if tpl.session.family == 6 and rng.random() < 0.3:
            new = 0
        raw[6:8] = new.to_bytes(2, "big")
        return d.copy(payload=bytes(raw)), f"UDP checksum 0x{new:04x}"

    def _m_udp_length(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        d = self.udp(tpl, self.body(tpl, rng))
        raw = bytearray(d.payload)
        n = rng.choice([0, 7, 8, 20, 31, len(raw) + 1, 0xFFFF])
        raw[4:6] = n.to_bytes(2, "big")
        return d.copy(payload=bytes(raw)), f"UDP length {n}"

    def _m_ip_header(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        valid = self.udp(tpl, self.body(tpl, rng))
        if tpl.session.family == 4:
            choice = rng.randrange(7)
            if choice == 0:
                return valid.copy(ip_checksum=rng.randint(0, 0xFFFF)), "bad IPv4 header checksum"
            if choice == 1:
                v = rng.choice([0, 5, 6, 15])
                return valid.copy(ip_version=v), f"IP version {v}"
            if choice == 2:
                ihl = rng.randint(0, 4)
                return valid.copy(ihl=ihl), f"IHL {ihl}"
            if choice == 3:
                delta = rng.choice([-8, -4, -1, 1, 4, 100])
                return valid.copy(ip_len=20 + len(valid.payload) + delta), f"total {delta:+d}"
            if choice == 4:
                frag = rng.choice([0x2000, 0x0001, 0x2010, 0x1FFF])
                return valid.copy(frag=frag), f"fragment 0x{frag:04x}"
            if choice == 5:
                proto = rng.choice([0, 6, 112, 255])
                return valid.copy(proto=proto), f"protocol {proto} (a UDP body)"
            return valid.copy(options=b"\x01\x01\x01\x00"), "IPv4 options (NOPs)"
        choice = rng.randrange(4)
        if choice == 0:
            delta = rng.choice([-8, -1, 1, 100])
            return valid.copy(ip_len=len(valid.payload) + delta), f"payload length {delta:+d}"
        if choice == 1:
            v = rng.choice([0, 4, 7, 15])
            return valid.copy(ip_version=v), f"IP version {v}"
        if choice == 2:
            ext = ((44, b"\x00\x00\x01" + rng.randbytes(4)),)
            return valid.copy(ext=ext), "fragment header (M=1)"
        ext = ((60, b"\x00\x01\x04\x00\x00\x00\x00"),)
        return valid.copy(ext=ext), "destination options header"

    def _m_state_flags(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        """Odd but well-formed contents (any state, diag, P/F/C/D, timers) that must not
        reach the session: a wrong Your Discriminator or a wrong source."""
        fields = {
            "state": rng.randrange(4),
            "diag": rng.randrange(32),
            "flags": rng.randrange(64) & ~0x05,
            "mult": rng.randint(1, 255),
            "tx_us": rng.choice([0, 1, 1000, 0xFFFFFFFF, rng.getrandbits(32)]),
            "rx_us": rng.choice([0, 1, 1000, 0xFFFFFFFF, rng.getrandbits(32)]),
            "echo_us": rng.getrandbits(32),
        }
        if rng.random() < 0.5:
            known = {x.local_discr for x in self.sessions}
            fields["your"] = next(
                v for v in (rng.randint(1, 0xFFFFFFFF) for _ in range(10)) if v not in known
            )
            d = self.udp(tpl, self.body(tpl, rng, **fields))
            return d, f"odd fields {fields}, unknown Your Discriminator"
        src = rng.choice(self._other_sources(rng, tpl))
        d = self.udp(tpl, self.body(tpl, rng, **fields), draft=tpl.draft.copy(src=src))
        return d, f"odd fields {fields} from {ipaddress.ip_address(src)}"

    def _m_garbage(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        n = rng.randint(0, 96)
        body = bytearray(rng.randbytes(n))
        if n >= 1 and rng.random() < 0.5:
            body[0] = (1 << 5) | (body[0] & 0x1F)  # version 1: past the first check
        return self.udp(tpl, bytes(body)), f"{n} random bytes"

    def _m_bitflip(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        body = bytearray(self.body(tpl, rng))
        flips = rng.randint(1, 8)
        for _ in range(flips):
            bit = rng.randrange(len(body) * 8)
            body[bit // 8] ^= 0x80 >> (bit % 8)
        return self.udp(tpl, bytes(body)), f"{flips} bit(s) flipped"

    def _m_fieldflip(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        body = bytearray(self.body(tpl, rng))
        changed = []
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(body))
            body[pos] = rng.randint(0, 255)
            changed.append(pos)
        return self.udp(tpl, bytes(body)), f"bytes {changed} set"

    def _m_oversize(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        n = rng.randint(200, 1400)
        body = self.body(tpl, rng) + rng.randbytes(n)
        raw = bytearray(body)
        raw[3] = rng.choice([24, 255, raw[3]])
        return self.udp(tpl, bytes(raw)), f"{len(raw)} bytes"


class BfdFamily:
    """The plug-in object registered as ``"bfd"`` in :data:`bench.fuzz.engine.FAMILIES`."""

    name = "bfd"
    kinds: Sequence[str] = tuple(KINDS)

    def generator(self, plan: FuzzPlan) -> BfdGenerator:
        return BfdGenerator(plan)


FAMILY = BfdFamily()
