"""The VRRP packet family: scapy-built templates, every kind of malformation, an oracle.

Templates are valid adverts built with scapy (``Ether/IP/VRRP``, ``Ether/IP/VRRPv3``,
``Ether/IPv6/VRRPv3``) for every instance the agents run, with a *safe* priority (below
every agent's, never 0). Each packet starts from one (sent to the VRRP group or to one
agent's unicast address) and gets one malformation:

    version, version_mismatch, type, vrid_zero, vrid_unknown, count, truncated, trailing,
    checksum, checksum_mode, ttl, interval, auth, addresses, src_address, ip_header,
    garbage, bitflip, fieldflip, oversize, spoofed

``spoofed`` adverts are valid in every respect but come from made-up sources (on-link,
off-link, the agents' own addresses) with a safe priority: what an on-link attacker can
send that a correct receiver must not act on. Unauthenticated VRRP has no defence against a
*valid* advert with priority 0 or a higher priority (RFC 5798 accepts it), so the fuzzer
never sends one: :func:`accepted` is an independent model of a correct receiver (kernel
delivery, TTL 255, version, type, VRID, length, checksum, v2 authentication and interval),
and any mutant it would accept with a priority that could move mastership has its priority
replaced by a safe one before it is sent (counted as ``neutralized``). Mutants a correct
receiver rejects are sent as they are, so an agent that wrongly accepts one and moves
mastership is caught.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.fuzz.engine import (
    ETH_IPV4,
    ETH_IPV6,
    Draft,
    FuzzPlan,
    InstanceInfo,
    Mutant,
    TargetInfo,
    checksum,
    ipv4_multicast_mac,
    ipv6_multicast_mac,
    mac_bytes,
)

__all__ = ["FAMILY", "KINDS", "Accepted", "VrrpFamily", "VrrpGenerator", "accepted", "neutralize"]

GROUP4, GROUP6 = "224.0.0.18", "ff02::12"
PROTO = 112
_HDR = struct.Struct("!BBBBBBH")

#: malformation kinds and their weights (how often each is picked)
KINDS: dict[str, float] = {
    "version": 5,
    "version_mismatch": 3,
    "type": 5,
    "vrid_zero": 3,
    "vrid_unknown": 4,
    "count": 5,
    "truncated": 6,
    "trailing": 4,
    "checksum": 6,
    "checksum_mode": 3,
    "ttl": 6,
    "interval": 4,
    "auth": 4,
    "addresses": 4,
    "src_address": 5,
    "ip_header": 8,
    "garbage": 8,
    "bitflip": 8,
    "fieldflip": 6,
    "oversize": 2,
    "spoofed": 5,
}


def _addr_len(family: int) -> int:
    return 4 if family == 4 else 16


def vrrp_message(
    *,
    version: int,
    vrid: int,
    priority: int,
    addresses: Sequence[bytes],
    adver_int: int,
    family: int,
    auth_type: int = 0,
    auth_data: bytes = b"",
    msg_type: int = 1,
    count: int | None = None,
) -> bytes:
    """An advert with a zero checksum (see :func:`with_checksum`)."""
    n = len(addresses) if count is None else count
    if version == 2:
        b4, b5 = auth_type & 0xFF, adver_int & 0xFF
    else:
        b4, b5 = (adver_int >> 8) & 0x0F, adver_int & 0xFF
    body = _HDR.pack((version << 4) | (msg_type & 0x0F), vrid, priority, n & 0xFF, b4, b5, 0)
    body += b"".join(addresses)
    if version == 2:
        body += auth_data.ljust(8, b"\0")[:8]
    return body


def with_checksum(draft: Draft, *, pseudo: bool) -> Draft:
    """The draft with its VRRP checksum filled (over the message, or with the pseudo-header)."""
    msg = bytearray(draft.payload)
    if len(msg) < 8:
        return draft
    msg[6:8] = b"\0\0"
    data = (draft.pseudo_header(len(msg)) if pseudo else b"") + bytes(msg)
    msg[6:8] = struct.pack("!H", checksum(data))
    return draft.copy(payload=bytes(msg))


def _pseudo_default(version: int, family: int) -> bool:
    """v3 covers the pseudo-header (RFC 5798; the agents' default); v2 never does."""
    return version == 3


# ------------------------------------------------------------------------------ oracle


@dataclass(frozen=True)
class Accepted:
    """A frame a correct receiver would take as an advert: where it is and what it says."""

    offset: int  # of the VRRP message in the frame
    length: int
    vrid: int
    priority: int
    pseudo: bool  # the checksum that made it valid
    src: bytes
    dst: bytes
    family: int


def _deliverable(frame: bytes) -> tuple[int, int, int, bytes, bytes, int] | None:
    """What the kernel would hand a raw protocol-112 socket: (family, offset, length,
    src, dst, ttl), or None when it would drop the frame first."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = 14
    if ethertype == ETH_IPV4:
        if len(frame) < ip + 20 or frame[ip] >> 4 != 4:
            return None
        ihl = (frame[ip] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, ip + 2)[0]
        if ihl < 20 or total < ihl or ip + total > len(frame) or ip + ihl > len(frame):
            return None
        if checksum(frame[ip : ip + ihl]) != 0:
            return None
        if struct.unpack_from("!H", frame, ip + 6)[0] & 0x3FFF:
            return None  # a fragment: held for reassembly, never delivered alone
        if frame[ip + 9] != PROTO:
            return None
        return (
            4,
            ip + ihl,
            total - ihl,
            frame[ip + 12 : ip + 16],
            frame[ip + 16 : ip + 20],
            frame[ip + 8],
        )
    if ethertype == ETH_IPV6:
        if len(frame) < ip + 40 or frame[ip] >> 4 != 6:
            return None
        plen = struct.unpack_from("!H", frame, ip + 4)[0]
        end = ip + 40 + plen
        if end > len(frame):
            return None
        nh, pos = frame[ip + 6], ip + 40
        for _ in range(8):
            if nh in (0, 60, 43):  # hop-by-hop, destination options, routing
                if pos + 2 > end:
                    return None
                nh, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
            elif nh == 44:  # fragment header: only an atomic fragment is delivered
                if pos + 8 > end or struct.unpack_from("!H", frame, pos + 2)[0] & 0xFFF9:
                    return None
                nh, pos = frame[pos], pos + 8
            else:
                break
        if nh != PROTO or pos > end:
            return None
        return 6, pos, end - pos, frame[ip + 8 : ip + 24], frame[ip + 24 : ip + 40], frame[ip + 7]
    return None


def accepted(frame: bytes, instances: Sequence[InstanceInfo]) -> Accepted | None:
    """Would a correct receiver running ``instances`` accept this frame as an advert?

    Deliberately generous where the RFCs leave room (trailing bytes, a different address
    list, any v3 interval, a v2 advert to a v3 instance, either v3/IPv4 checksum mode) and
    strict where they say MUST (TTL 255, type 1, VRID, v2 authentication and interval).
    """
    got = _deliverable(frame)
    if got is None:
        return None
    fam, off, length, src, dst, ttl = got
    if ttl != 255 or length < 8:
        return None
    msg = frame[off : off + length]
    version, mtype = msg[0] >> 4, msg[0] & 0x0F
    if version not in (2, 3) or mtype != 1:
        return None
    vrid, priority, count = msg[1], msg[2], msg[3]
    inst = next((i for i in instances if i.vrid == vrid and i.family == fam), None)
    if inst is None:
        return None
    need = 8 + count * _addr_len(fam) + (8 if version == 2 else 0)
    if length < need:
        return None
    modes = [False, True] if fam == 4 else [True]
    pseudo_ok = None
    for pseudo in modes:
        pseudo_bytes = b""
        if pseudo:
            if fam == 4:
                pseudo_bytes = struct.pack("!4s4sBBH", src, dst, 0, PROTO, length)
            else:
                pseudo_bytes = struct.pack("!16s16sI3xB", src, dst, length, PROTO)
        if checksum(pseudo_bytes + msg) == 0:
            pseudo_ok = pseudo
            break
    if pseudo_ok is None:
        return None
    if version == 2:
        if fam != 4 or inst.version != 2:
            return None
        auth_type = msg[4]
        want_type = 1 if inst.auth_password else 0
        if auth_type != want_type or msg[5] != inst.adver_int:
            return None
        if want_type == 1:
            auth = msg[8 + count * 4 : 16 + count * 4]
            if auth != (inst.auth_password or "").encode().ljust(8, b"\0"):
                return None
    return Accepted(off, length, vrid, priority, pseudo_ok, src, dst, fam)


def dangerous(acc: Accepted | None, plan: FuzzPlan) -> bool:
    """An accepted advert whose priority could move mastership (0, or not below every agent)."""
    return acc is not None and (acc.priority == 0 or acc.priority >= plan.safe_priority_below)


def neutralize(frame: bytes, acc: Accepted, priority: int) -> bytes:
    """The frame with the advert's priority replaced and its checksum made valid again."""
    out = bytearray(frame)
    off = acc.offset
    out[off + 2] = priority
    out[off + 6 : off + 8] = b"\0\0"
    pseudo = b""
    if acc.pseudo:
        if acc.family == 4:
            pseudo = struct.pack("!4s4sBBH", acc.src, acc.dst, 0, PROTO, acc.length)
        else:
            pseudo = struct.pack("!16s16sI3xB", acc.src, acc.dst, acc.length, PROTO)
    out[off + 6 : off + 8] = struct.pack(
        "!H", checksum(pseudo + bytes(out[off : off + acc.length]))
    )
    return bytes(out)


# ------------------------------------------------------------------------------ templates


def scapy_advert(
    inst: InstanceInfo,
    *,
    src_mac: str,
    dst_mac: bytes,
    src: str,
    dst: str,
    priority: int,
) -> bytes:
    """A valid advert for ``inst`` built by scapy (the template a mutation starts from)."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vrrp import VRRP, VRRPv3

    eth = Ether(dst=":".join(f"{b:02x}" for b in dst_mac), src=src_mac)
    if inst.version == 2:
        password = (inst.auth_password or "").encode().ljust(8, b"\0")
        auth1, auth2 = struct.unpack("!II", password)
        vrrp = VRRP(
            vrid=inst.vrid,
            priority=priority,
            ipcount=len(inst.vips),
            authtype=1 if inst.auth_password else 0,
            adv=inst.adver_int,
            addrlist=list(inst.vips),
            auth1=auth1,
            auth2=auth2,
        )
        pkt = eth / IP(src=src, dst=dst, ttl=255, tos=0xC0, id=0) / vrrp
    elif inst.family == 4:
        vrrp = VRRPv3(
            vrid=inst.vrid, priority=priority, ipcount=len(inst.vips), adv=inst.adver_int,
            addrlist=list(inst.vips),
        )  # fmt: skip
        pkt = eth / IP(src=src, dst=dst, ttl=255, tos=0xC0, id=0) / vrrp
    else:
        vrrp = VRRPv3(
            vrid=inst.vrid, priority=priority, ipcount=len(inst.vips), adv=inst.adver_int,
            addrlist=list(inst.vips),
        )  # fmt: skip
        pkt = eth / IPv6(src=src, dst=dst, hlim=255, tc=0xC0) / vrrp
    return bytes(pkt)


@dataclass(frozen=True)
class _Template:
    inst: InstanceInfo
    draft: Draft  # valid, safe priority
    where: str  # "group" or the target's name


class VrrpGenerator:
    """Frames for one plan: templates for every instance and destination, then mutations."""

    def __init__(self, plan: FuzzPlan) -> None:
        self.plan = plan
        self.src_mac = mac_bytes(plan.src_mac)
        self.safe = max(1, plan.safe_priority_below - 1)
        self.templates: dict[tuple[str, str], _Template] = {}
        self.neutralized = 0
        for inst in plan.instances:
            self._add(inst, "group", None)
            for target in plan.targets:
                self._add(inst, target.name, target)
        self.instances = list(plan.instances)
        self._vips = {
            i.name: [ipaddress.ip_address(v).packed for v in i.vips] for i in self.instances
        }
        self.kinds = list(KINDS)
        self.weights = [KINDS[k] for k in self.kinds]
        self._mutators: dict[str, Callable[[random.Random, _Template], tuple[Draft | bytes, str]]]
        self._mutators = {k: getattr(self, f"_m_{k}") for k in self.kinds}

    def _add(self, inst: InstanceInfo, where: str, target: TargetInfo | None) -> None:
        if inst.family == 4:
            src = self.plan.src_ipv4
            dst = GROUP4 if target is None else target.ipv4
            dst_mac = ipv4_multicast_mac(GROUP4) if target is None else mac_bytes(target.mac)
        else:
            src = self.plan.src_ipv6_ll
            dst = GROUP6 if target is None else target.ipv6_ll
            dst_mac = ipv6_multicast_mac(GROUP6) if target is None else mac_bytes(target.mac)
        raw = scapy_advert(
            inst,
            src_mac=self.plan.src_mac,
            dst_mac=dst_mac,
            src=src,
            dst=dst,
            priority=max(1, self.plan.safe_priority_below // 2),
        )
        draft = Draft.parse(raw)
        mine = with_checksum(draft, pseudo=_pseudo_default(inst.version, inst.family)).build()
        if mine != raw:
            raise AssertionError(
                f"the fuzzer's framing differs from scapy's for {inst.name}: "
                f"{mine.hex()} != {raw.hex()}"
            )
        self.templates[(inst.name, where)] = _Template(inst, draft, where)

    # ------------------------------------------------------------------ picking

    def _template(self, rng: random.Random, inst: InstanceInfo | None = None) -> _Template:
        inst = inst or rng.choice(self.instances)
        if rng.random() < self.plan.multicast_share or not self.plan.targets:
            return self.templates[(inst.name, "group")]
        return self.templates[(inst.name, rng.choice(self.plan.targets).name)]

    def frame(self, rng: random.Random) -> Mutant:
        kind = rng.choices(self.kinds, self.weights)[0]
        tpl = self._template(rng)
        made, note = self._mutators[kind](rng, tpl)
        frame = made if isinstance(made, bytes) else made.build()
        acc = accepted(frame, self.instances)
        if dangerous(acc, self.plan):
            assert acc is not None
            frame = neutralize(frame, acc, rng.randint(1, self.safe))
            self.neutralized += 1
            note += " (priority neutralized)"
        return Mutant(frame, kind, "vrrp", f"{tpl.inst.name}->{tpl.where}: {note}")

    # ------------------------------------------------------------------ helpers

    def _message(self, tpl: _Template, **changes: object) -> bytes:
        inst = tpl.inst
        fam = inst.family
        kw: dict[str, object] = {
            "version": inst.version,
            "vrid": inst.vrid,
            "priority": self.safe,
            "addresses": self._vips[inst.name],
            "adver_int": inst.adver_int,
            "family": fam,
            "auth_type": 1 if inst.auth_password else 0,
            "auth_data": (inst.auth_password or "").encode(),
        }
        kw.update(changes)
        return vrrp_message(**kw)  # type: ignore[arg-type]

    def _valid(self, tpl: _Template, *, pseudo: bool | None = None, **changes: object) -> Draft:
        draft = tpl.draft.copy(payload=self._message(tpl, **changes))
        version = int(changes.get("version", tpl.inst.version))  # type: ignore[call-overload]
        use = _pseudo_default(version, tpl.inst.family) if pseudo is None else pseudo
        return with_checksum(draft, pseudo=use)

    def _random_addr(self, rng: random.Random, family: int) -> bytes:
        if family == 4:
            return b"\x0a" + rng.randbytes(3)
        return b"\xfd\x00" + rng.randbytes(14)

    # ------------------------------------------------------------------ mutations

    def _m_version(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        v = rng.choice([0, 1, *range(4, 16)])
        return self._valid(tpl, version=v), f"version {v}"

    def _m_version_mismatch(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        other = 3 if tpl.inst.version == 2 else 2
        return self._valid(tpl, version=other), f"VRRPv{other} to a v{tpl.inst.version} instance"

    def _m_type(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        t = rng.choice([0, *range(2, 16)])
        return self._valid(tpl, msg_type=t), f"type {t}"

    def _m_vrid_zero(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        return self._valid(tpl, vrid=0), "VRID 0"

    def _m_vrid_unknown(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        used = {i.vrid for i in self.instances}
        vrid = rng.choice([v for v in range(1, 256) if v not in used])
        prio = rng.randint(0, 255)  # nobody runs this VRID: any priority is harmless
        return self._valid(tpl, vrid=vrid, priority=prio), f"unknown VRID {vrid} priority {prio}"

    def _m_count(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        real = len(tpl.inst.vips)
        n = rng.choice([c for c in (0, real + 1, real + 2, 255, rng.randint(0, 255)) if c != real])
        return self._valid(tpl, count=n), f"count {n} with {real} address(es)"

    def _m_truncated(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        valid = self._valid(tpl)
        cut = rng.randint(0, len(valid.payload) - 1)
        return valid.copy(payload=valid.payload[:cut]), f"truncated to {cut} bytes"

    def _m_trailing(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        extra = rng.randbytes(rng.randint(1, 64))
        draft = tpl.draft.copy(payload=self._message(tpl) + extra)
        pseudo = _pseudo_default(tpl.inst.version, tpl.inst.family)
        return with_checksum(draft, pseudo=pseudo), f"{len(extra)} trailing bytes"

    def _m_checksum(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        valid = self._valid(tpl)
        good = struct.unpack_from("!H", valid.payload, 6)[0]
        bad = rng.choice([v for v in (0, 0xFFFF, good ^ 1, rng.randint(0, 0xFFFF)) if v != good])
        payload = valid.payload[:6] + struct.pack("!H", bad) + valid.payload[8:]
        return valid.copy(payload=payload), f"checksum 0x{bad:04x} (0x{good:04x} is right)"

    def _m_checksum_mode(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        pseudo = not _pseudo_default(tpl.inst.version, tpl.inst.family)
        what = "with" if pseudo else "without"
        return self._valid(tpl, pseudo=pseudo), f"checksum {what} the pseudo-header"

    def _m_ttl(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        ttl = rng.choice([0, 1, 64, 128, 254, rng.randint(0, 254)])
        return self._valid(tpl).copy(ttl=ttl), f"TTL/hop limit {ttl}"

    def _m_interval(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        inst = tpl.inst
        if inst.version == 2:
            v = rng.choice([i for i in (0, 2, 3, 255, rng.randint(0, 255)) if i != inst.adver_int])
        else:
            v = rng.choice([0, 1, 0xFFF, rng.randint(0, 0xFFF)])
        return self._valid(tpl, adver_int=v), f"interval {v}"

    def _m_auth(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        inst = tpl.inst
        if inst.version != 2:
            data = rng.randbytes(8)
            draft = tpl.draft.copy(payload=self._message(tpl) + data)
            return with_checksum(draft, pseudo=True), "v3 advert carrying 8 bytes of auth data"
        want = 1 if inst.auth_password else 0
        if rng.random() < 0.5:
            t = rng.choice([t for t in (0, 1, 2, 3, 255) if t != want])
            return self._valid(tpl, auth_type=t), f"auth type {t}"
        pw = rng.randbytes(8)
        return self._valid(tpl, auth_type=1, auth_data=pw), f"PASS password {pw.hex()}"

    def _m_addresses(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        fam = tpl.inst.family
        n = len(tpl.inst.vips)
        addrs = [self._random_addr(rng, fam) for _ in range(n)]
        if rng.random() < 0.3 and n:
            addrs = [ipaddress.ip_address(tpl.inst.vips[0]).packed] * (n + 1)
        return self._valid(tpl, addresses=addrs), f"{len(addrs)} other address(es)"

    def _src_choices(self, rng: random.Random, fam: int) -> list[tuple[bytes, str]]:
        if fam == 4:
            out = [
                (bytes(4), "0.0.0.0"),
                (b"\xff" * 4, "255.255.255.255"),
                (bytes([224, 0, 0, 5]), "224.0.0.5"),
                (bytes([127, 0, 0, 1]), "127.0.0.1"),
                (self._random_addr(rng, 4), "off-link"),
            ]
            out += [
                (ipaddress.IPv4Address(t.ipv4).packed, f"{t.name}'s") for t in self.plan.targets
            ]
            return out
        out = [
            (bytes(16), "::"),
            (ipaddress.IPv6Address("::1").packed, "::1"),
            (ipaddress.IPv6Address("ff02::1").packed, "ff02::1"),
            (self._random_addr(rng, 6), "global"),
        ]
        out += [(ipaddress.IPv6Address(t.ipv6_ll).packed, f"{t.name}'s") for t in self.plan.targets]
        return out

    def _m_src_address(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        src, what = rng.choice(self._src_choices(rng, tpl.inst.family))
        draft = tpl.draft.copy(src=src)
        pseudo = _pseudo_default(tpl.inst.version, tpl.inst.family)
        draft = with_checksum(draft.copy(payload=self._message(tpl)), pseudo=pseudo)
        return draft, f"source {what} {ipaddress.ip_address(src)}"

    def _m_ip_header(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        valid = self._valid(tpl)
        if tpl.inst.family == 4:
            choice = rng.randrange(8)
            if choice == 0:
                return valid.copy(ip_checksum=rng.randint(0, 0xFFFF)), "bad IPv4 header checksum"
            if choice == 1:
                v = rng.choice([0, 5, 6, 15])
                return valid.copy(ip_version=v), f"IP version {v} in an IPv4 frame"
            if choice == 2:
                ihl = rng.randint(0, 4)
                return valid.copy(ihl=ihl), f"IHL {ihl}"
            if choice == 3:
                delta = rng.choice([-8, -4, -1, 1, 4, 100])
                total = 20 + len(valid.payload) + delta
                return valid.copy(ip_len=total), f"total length {delta:+d}"
            if choice == 4:
                frag = rng.choice([0x2000, 0x0001, 0x2010, 0x1FFF])
                return valid.copy(frag=frag), f"fragment 0x{frag:04x}"
            if choice == 5:
                opts = rng.choice(
                    [b"\x94\x04\x00\x00", b"\x01\x01\x01\x00", b"\x07\x07\x04" + bytes(5)]
                )
                return valid.copy(options=opts), f"IPv4 options {opts.hex()}"
            if choice == 6:
                proto = rng.choice([0, 6, 17, 111, 113, 255])
                return valid.copy(proto=proto), f"protocol {proto} (a VRRP body)"
            return valid.copy(trailer=rng.randbytes(rng.randint(1, 40))), "Ethernet trailer"
        choice = rng.randrange(6)
        if choice == 0:
            delta = rng.choice([-8, -1, 1, 4, 100])
            return valid.copy(ip_len=len(valid.payload) + delta), f"payload length {delta:+d}"
        if choice == 1:
            v = rng.choice([0, 4, 7, 15])
            return valid.copy(ip_version=v), f"IP version {v} in an IPv6 frame"
        if choice == 2:
            ext = ((0, b"\x00\x01\x04\x00\x00\x00\x00"),)  # hop-by-hop, PadN
            return valid.copy(ext=ext), "hop-by-hop options header"
        if choice == 3:
            ext = ((60, b"\x00\x01\x04\x00\x00\x00\x00"),)  # destination options, PadN
            return valid.copy(ext=ext), "destination options header"
        if choice == 4:
            ext = ((44, b"\x00\x00\x01" + rng.randbytes(4)),)  # fragment header, offset 0 M=1
            return valid.copy(ext=ext), "fragment header (M=1)"
        return valid.copy(trailer=rng.randbytes(rng.randint(1, 40))), "Ethernet trailer"

    def _m_garbage(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        n = rng.randint(0, 96)
        body = bytearray(rng.randbytes(n))
        if n >= 2 and rng.random() < 0.5:
            body[1] = tpl.inst.vrid  # reach the instance, not only the unknown-VRID counter
        return tpl.draft.copy(payload=bytes(body)), f"{n} random bytes"

    def _m_bitflip(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        valid = self._valid(tpl)
        body = bytearray(valid.payload)
        flips = rng.randint(1, 8)
        for _ in range(flips):
            bit = rng.randrange(len(body) * 8)
            body[bit // 8] ^= 0x80 >> (bit % 8)
        return valid.copy(payload=bytes(body)), f"{flips} bit(s) flipped"

    def _m_fieldflip(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        body = bytearray(self._message(tpl))
        changed = []
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(body))
            if pos in (6, 7):
                continue
            body[pos] = rng.randint(0, 255)
            changed.append(pos)
        draft = tpl.draft.copy(payload=bytes(body))
        pseudo = _pseudo_default(tpl.inst.version, tpl.inst.family)
        return with_checksum(draft, pseudo=pseudo), f"bytes {changed} set, checksum fixed"

    def _m_oversize(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        fam = tpl.inst.family
        limit = (1400 - 8) // _addr_len(fam)
        n = rng.randint(min(200, limit), limit)
        addrs = [self._random_addr(rng, fam) for _ in range(n)]
        return self._valid(tpl, addresses=addrs, count=n & 0xFF), f"{n} addresses"

    def _m_spoofed(self, rng: random.Random, tpl: _Template) -> tuple[Draft, str]:
        fam = tpl.inst.family
        if fam == 4:
            choices = [bytes([10, 99, 0, rng.randint(30, 250)]), self._random_addr(rng, 4)]
            choices += [ipaddress.IPv4Address(t.ipv4).packed for t in self.plan.targets]
        else:
            choices = [b"\xfe\x80" + bytes(6) + rng.randbytes(8)]
            choices += [ipaddress.IPv6Address(t.ipv6_ll).packed for t in self.plan.targets]
        src = rng.choice(choices)
        prio = rng.randint(1, self.safe)
        draft = tpl.draft.copy(src=src, payload=self._message(tpl, priority=prio))
        pseudo = _pseudo_default(tpl.inst.version, fam)
        return with_checksum(draft, pseudo=pseudo), (
            f"valid advert from {ipaddress.ip_address(src)} priority {prio}"
        )


class VrrpFamily:
    """The plug-in object registered as ``"vrrp"`` in :data:`bench.fuzz.engine.FAMILIES`."""

    name = "vrrp"
    kinds: Sequence[str] = tuple(KINDS)

    def generator(self, plan: FuzzPlan) -> VrrpGenerator:
        return VrrpGenerator(plan)


FAMILY = VrrpFamily()
ETHERTYPES = (ETH_IPV4, ETH_IPV6)
