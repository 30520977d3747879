"""Settings of each checker kind: small frozen dataclasses, independent of ``vigil.config``.

The IPVS subsystem builds these from its own config section (resolving keepalived's
virtual server -> real server -> checker inheritance of ``delay_loop``, ``retry``,
``virtualhost``... before it does); the engine only reads them. Each class validates
itself on construction and raises :class:`SettingsError` listing every problem::

    TcpCheck.connect_port: must be 1..65535, got 0; TcpCheck.retry: must be >= 0, got -1

``None`` for a timing field means "this kind's keepalived default" (see
:meth:`CheckBase.timing`): ``delay_loop`` 60 s, ``warmup`` = ``delay_loop``, ``retry`` 1
(DNS 3, MISC and FILE 0), ``delay_before_retry`` 1 s (HTTP 3 s, DNS ``delay_loop``),
``connect_timeout`` 5 s.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field, fields
from typing import ClassVar

from .core import Anchor, CheckTiming

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = [
    "DNS_TYPES",
    "BfdCheck",
    "CheckBase",
    "CheckSettings",
    "DnsCheck",
    "FileCheck",
    "HttpCheck",
    "HttpUrl",
    "MiscCheck",
    "NetCheck",
    "PingCheck",
    "RealServer",
    "SettingsError",
    "SmtpCheck",
    "TcpCheck",
    "UdpCheck",
    "parse_hex",
    "parse_reply_pattern",
    "parse_status_codes",
]

DEFAULT_DELAY_LOOP = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0

#: DNS_CHECK query types keepalived knows, with their RR type numbers.
DNS_TYPES: dict[str, int] = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
    "RRSIG": 46,
    "DNSKEY": 48,
}


class SettingsError(ValueError):
    """Invalid checker settings; the message lists every problem with its field."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _address_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be an IP address string, got {value!r}"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 or IPv6 address (checkers never resolve names)"
    return None


def _port_problem(value: object) -> str | None:
    if not _is_int(value) or not 1 <= value <= 65535:  # type: ignore[operator]
        return f"must be 1..65535, got {value!r}"
    return None


# ---------------------------------------------------------------------------- base


@dataclass(frozen=True, kw_only=True)
class CheckBase:
    """What every checker has: keepalived's generic checker options from ``alpha`` on."""

    KIND: ClassVar[str] = "check"
    DEFAULT_RETRY: ClassVar[int] = 1
    #: ``None``: ``delay_loop`` (DNS_CHECK)
    DEFAULT_DELAY_BEFORE_RETRY: ClassVar[float | None] = 1.0
    ANCHOR: ClassVar[Anchor] = Anchor.END

    name: str | None = None  # a label for logs; default "<kind>"
    delay_loop: float = DEFAULT_DELAY_LOOP
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    alpha: bool = False

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            who = type(self).__name__
            raise SettingsError("; ".join(f"{who}.{p}" for p in problems))

    def problems(self) -> list[str]:
        out: list[str] = []
        if not _is_number(self.delay_loop) or self.delay_loop <= 0:
            out.append(f"delay_loop: must be seconds > 0, got {self.delay_loop!r}")
        if self.retry is not None and (not _is_int(self.retry) or self.retry < 0):
            out.append(f"retry: must be an integer >= 0, got {self.retry!r}")
        for name in ("delay_before_retry", "warmup"):
            value = getattr(self, name)
            if value is None:
                continue
            if not _is_number(value) or value < 0 or (name == "delay_before_retry" and not value):
                want = "> 0" if name == "delay_before_retry" else ">= 0"
                out.append(f"{name}: must be seconds {want}, got {value!r}")
        if not isinstance(self.alpha, bool):
            out.append(f"alpha: must be true or false, got {self.alpha!r}")
        return out

    @property
    def label(self) -> str:
        return self.name or self.KIND

    def timing(self) -> CheckTiming:
        """The resolved schedule, with this kind's keepalived defaults filled in."""
        dbr = self.delay_before_retry
        if dbr is None:
            dbr = self.DEFAULT_DELAY_BEFORE_RETRY or self.delay_loop
        return CheckTiming(
            delay_loop=float(self.delay_loop),
            retry=self.DEFAULT_RETRY if self.retry is None else self.retry,
            delay_before_retry=float(dbr),
            warmup=float(self.delay_loop if self.warmup is None else self.warmup),
            alpha=self.alpha,
            anchor=self.ANCHOR,
        )

    def budget(self) -> float:
        """The hard limit on one run; the engine cancels a run that takes longer."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class NetCheck(CheckBase):
    """keepalived's generic connection options (``connect_ip`` ... ``connect_timeout``)."""

    connect_ip: str | None = None
    connect_port: int | None = None
    bindto: str | None = None
    bind_port: int | None = None
    bind_if: str | None = None
    fwmark: int | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    NEEDS_PORT: ClassVar[bool] = True

    def problems(self) -> list[str]:
        out = super().problems()
        for name in ("connect_ip", "bindto"):
            value = getattr(self, name)
            if value is not None and (why := _address_problem(value)):
                out.append(f"{name}: {why}")
        if self.connect_ip is not None and self.bindto is not None and not out:
            a, b = ipaddress.ip_address(self.connect_ip), ipaddress.ip_address(self.bindto)
            if a.version != b.version:
                out.append(f"bindto: IPv{b.version} {b} cannot reach IPv{a.version} {a}")
        for name in ("connect_port", "bind_port"):
            value = getattr(self, name)
            if value is not None and (why := _port_problem(value)):
                out.append(f"{name}: {why}")
        if self.bind_if is not None and (
            not isinstance(self.bind_if, str) or not 0 < len(self.bind_if) <= 15
        ):
            out.append(f"bind_if: must be an interface name, got {self.bind_if!r}")
        if self.fwmark is not None and (not _is_int(self.fwmark) or not 0 <= self.fwmark < 2**32):
            out.append(f"fwmark: must be 0..4294967295, got {self.fwmark!r}")
        if not _is_number(self.connect_timeout) or self.connect_timeout <= 0:
            out.append(f"connect_timeout: must be seconds > 0, got {self.connect_timeout!r}")
        return out

    def budget(self) -> float:
        # the probe's own timeouts end it first; this is the backstop
        return float(self.connect_timeout) + 1.0


# ---------------------------------------------------------------------------- kinds


@dataclass(frozen=True, kw_only=True)
class TcpCheck(NetCheck):
    """TCP_CHECK: a TCP connection that completes within ``connect_timeout``."""

    KIND: ClassVar[str] = "tcp"


_STATUS_RANGE = re.compile(r"^(\d{3})(?:-(\d{3}))?$")


def parse_status_codes(text: str) -> tuple[tuple[int, int], ...]:
    """keepalived's ``status_code 200 300-399 503`` as ((200, 200), (300, 399), (503, 503))."""
    out: list[tuple[int, int]] = []
    for word in text.split():
        m = _STATUS_RANGE.match(word)
        if not m:
            raise SettingsError(f"status_code: {word!r} is not a code or a range like 200-299")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if not 100 <= lo <= hi <= 599:
            raise SettingsError(f"status_code: {word!r} must lie in 100-599, low to high")
        out.append((lo, hi))
    if not out:
        raise SettingsError("status_code: give at least one code or range")
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class HttpUrl:
    """One ``url { }`` block. ``digest`` is the hex MD5 of the body (genhash's output)."""

    path: str = "/"
    status_codes: tuple[tuple[int, int], ...] = ((200, 299),)
    digest: str | None = None
    regex: str | None = None
    regex_no_match: bool = False
    virtualhost: str | None = None

    def __post_init__(self) -> None:
        out: list[str] = []
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            out.append(f"path: must start with '/', got {self.path!r}")
        elif any(c in self.path for c in " \r\n\t"):
            out.append(f"path: must not contain spaces or line breaks, got {self.path!r}")
        if not self.status_codes or not all(
            isinstance(r, tuple) and len(r) == 2 and 100 <= r[0] <= r[1] <= 599
            for r in self.status_codes
        ):
            out.append(
                f"status_codes: must be (low, high) pairs in 100..599, got {self.status_codes!r}"
            )
        if self.digest is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", self.digest):
            out.append(f"digest: must be 32 hex digits (an MD5), got {self.digest!r}")
        if self.regex is not None:
            try:
                re.compile(self.regex.encode())
            except (re.error, UnicodeEncodeError) as exc:
                out.append(f"regex: {exc}")
        if self.virtualhost is not None and (
            not self.virtualhost or any(c in self.virtualhost for c in " \r\n\t/")
        ):
            out.append(f"virtualhost: must be a host name, got {self.virtualhost!r}")
        if out:
            raise SettingsError("; ".join(f"HttpUrl({self.path!r}).{p}" for p in out))

    def status_ok(self, code: int) -> bool:
        return any(lo <= code <= hi for lo, hi in self.status_codes)


@dataclass(frozen=True, kw_only=True)
class HttpCheck(NetCheck):
    """HTTP_GET, or SSL_GET with ``tls``: every URL must answer as configured.

    ``virtualhost`` (the Host header and, with ``enable_sni``, the TLS server name) may be
    overridden per URL; without one the Host header is the address (and port). With
    ``tls_verify`` the certificate chain is checked against ``ca_file`` (or the system's
    CAs) and its names against ``sni_name`` / ``virtualhost``, else the connect address.
    keepalived never verifies certificates, so ``tls_verify`` defaults to off.
    ``read_timeout`` (default ``connect_timeout``) bounds the wait for the response
    after the request was sent; ``max_body`` caps how much of the body is read for the
    digest and regex.
    """

    KIND: ClassVar[str] = "http"
    DEFAULT_DELAY_BEFORE_RETRY: ClassVar[float | None] = 3.0

    urls: tuple[HttpUrl, ...] = (HttpUrl(),)
    virtualhost: str | None = None
    tls: bool = False
    enable_sni: bool = False
    sni_name: str | None = None
    tls_verify: bool = False
    ca_file: str | None = None
    http_protocol: str = "1.0"  # "1.0", "1.0C" (1.0 + Connection: close) or "1.1"
    read_timeout: float | None = None
    max_body: int = 1 << 20
    user_agent: str = "vigil-checker"

    def problems(self) -> list[str]:
        out = super().problems()
        if not self.urls or not all(isinstance(u, HttpUrl) for u in self.urls):
            out.append("urls: must be a non-empty tuple of HttpUrl")
        if self.http_protocol not in ("1.0", "1.0C", "1.1"):
            out.append(f"http_protocol: must be 1.0, 1.0C or 1.1, got {self.http_protocol!r}")
        rt = self.read_timeout
        if rt is not None and (not _is_number(rt) or rt <= 0):
            out.append(f"read_timeout: must be seconds > 0, got {rt!r}")
        if not _is_int(self.max_body) or self.max_body < 0:
            out.append(f"max_body: must be bytes >= 0, got {self.max_body!r}")
        for name in ("virtualhost", "sni_name"):
            value = getattr(self, name)
            if value is not None and (not value or any(c in value for c in " \r\n\t/")):
                out.append(f"{name}: must be a host name, got {value!r}")
        if (self.enable_sni or self.tls_verify or self.ca_file or self.sni_name) and not self.tls:
            out.append("tls: enable_sni, sni_name, tls_verify and ca_file need tls (SSL_GET)")
        if any(c in self.user_agent for c in "\r\n"):
            out.append("user_agent: must be one line")
        return out

    @property
    def label(self) -> str:
        return self.name or ("https" if self.tls else "http")

    def effective_read_timeout(self) -> float:
        return float(self.connect_timeout if self.read_timeout is None else self.read_timeout)

    def budget(self) -> float:
        # connect (+ TLS handshake) and read for each URL, plus a little slack
        return (self.connect_timeout * 2 + self.effective_read_timeout()) * len(self.urls) + 1.0


@dataclass(frozen=True, kw_only=True)
class DnsCheck(NetCheck):
    """DNS_CHECK: a query over UDP that must come back with rcode NOERROR.

    That is keepalived's whole rule (``check_dns.c``: matching id, QR set, rcode 0).
    ``require_answer`` adds: at least one answer record of the queried type. The port
    defaults to 53 when neither the real server nor ``connect_port`` gives one.
    """

    KIND: ClassVar[str] = "dns"
    DEFAULT_RETRY: ClassVar[int] = 3
    DEFAULT_DELAY_BEFORE_RETRY: ClassVar[float | None] = None
    NEEDS_PORT: ClassVar[bool] = False

    type: str = "SOA"
    query_name: str = "."
    require_answer: bool = False

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.type, str) or self.type.upper() not in DNS_TYPES:
            out.append(f"type: must be one of {', '.join(DNS_TYPES)}, got {self.type!r}")
        from .dns import name_problem  # the codec owns the wire rules for names

        if (why := name_problem(self.query_name)) is not None:
            out.append(f"query_name: {why}")
        return out

    @property
    def qtype(self) -> int:
        return DNS_TYPES[self.type.upper()]


def parse_hex(text: str) -> bytes:
    """keepalived's free-form hex: ``"Ab12f 3 456"`` -> AB 12 0F 03 45 06.

    Each space-separated word is read two digits at a time; an odd last digit is a byte
    of its own.
    """
    data, _ = parse_reply_pattern(text, wildcards=False)
    return data


def parse_reply_pattern(text: str, *, wildcards: bool = True) -> tuple[bytes, bytes]:
    """Like :func:`parse_hex`, where an ``x`` digit matches anything: (data, care mask)."""
    data = bytearray()
    mask = bytearray()
    for word in text.split():
        for i in range(0, len(word), 2):
            pair = word[i : i + 2]
            value = care = 0
            for digit in pair:
                value <<= 4
                care <<= 4
                if digit in "xX" and wildcards:
                    continue
                if digit not in "0123456789abcdefABCDEF":
                    raise SettingsError(f"hex string: {digit!r} in {word!r} is not a hex digit")
                value |= int(digit, 16)
                care |= 0xF
            data.append(value)
            mask.append(care)
    return bytes(data), bytes(mask)


@dataclass(frozen=True, kw_only=True)
class UdpCheck(NetCheck):
    """UDP_CHECK: send ``payload``; without ``require_reply`` the check fails only on an
    ICMP error (port unreachable) before ``connect_timeout``, as keepalived's does.

    With ``require_reply`` a reply must arrive, ``min_reply_length..max_reply_length``
    bytes long, and match ``reply_pattern`` over the shorter of the two lengths, where
    ``reply_mask`` bits that are 0 are not compared (``x`` digits in keepalived's hex).
    Without ``payload`` a random 16 bytes are sent (keepalived sends random data too).
    """

    KIND: ClassVar[str] = "udp"

    payload: bytes | None = None
    require_reply: bool = False
    reply_pattern: bytes | None = None
    reply_mask: bytes | None = None
    min_reply_length: int = 0
    max_reply_length: int = 255

    def problems(self) -> list[str]:
        out = super().problems()
        if self.payload is not None and not isinstance(self.payload, bytes):
            out.append("payload: must be bytes (see parse_hex)")
        if self.reply_pattern is not None and not self.require_reply:
            out.append("reply_pattern: needs require_reply")
        if self.reply_mask is not None and (
            self.reply_pattern is None or len(self.reply_mask) != len(self.reply_pattern)
        ):
            out.append("reply_mask: must be as long as reply_pattern")
        lo, hi = self.min_reply_length, self.max_reply_length
        if not _is_int(lo) or not _is_int(hi) or not 0 <= lo <= hi <= 65535:
            out.append(f"min/max_reply_length: need 0 <= min <= max <= 65535, got {lo}, {hi}")
        return out


@dataclass(frozen=True, kw_only=True)
class PingCheck(NetCheck):
    """PING_CHECK: an ICMP (v4) or ICMPv6 echo answered within ``connect_timeout``."""

    KIND: ClassVar[str] = "ping"
    NEEDS_PORT: ClassVar[bool] = False

    def problems(self) -> list[str]:
        out = super().problems()
        if self.connect_port is not None or self.bind_port is not None:
            out.append("connect_port/bind_port: ICMP has no ports")
        return out


@dataclass(frozen=True, kw_only=True)
class SmtpCheck(NetCheck):
    """SMTP_CHECK: banner 220, ``HELO helo_name`` answered 250, then QUIT.

    ``helo_name`` defaults to this host's name. The port defaults to 25. Each reply may
    be multi-line (``220-...``); ``connect_timeout`` bounds each step.
    """

    KIND: ClassVar[str] = "smtp"
    NEEDS_PORT: ClassVar[bool] = False

    helo_name: str | None = None

    def problems(self) -> list[str]:
        out = super().problems()
        h = self.helo_name
        if h is not None and (not h or any(c in h for c in " \r\n\t")):
            out.append(f"helo_name: must be one word, got {h!r}")
        return out

    def budget(self) -> float:
        return self.connect_timeout * 4 + 1.0  # connect, banner, HELO, QUIT


@dataclass(frozen=True, kw_only=True)
class MiscCheck(CheckBase):
    """MISC_CHECK: a program; exit 0 is up, anything else down.

    With ``misc_dynamic`` exit 1 is down and 2..255 is up with real server weight
    ``status - 2``. It runs without a shell as ``user`` (``user[:group]``, default
    nobody), in its own process group, which is killed at ``misc_timeout`` (default
    ``delay_loop``, as keepalived's). ``retry`` defaults to 0. The environment gets
    ``VIGIL_RS_ADDRESS`` / ``VIGIL_RS_PORT`` of the real server.
    """

    KIND: ClassVar[str] = "misc"
    DEFAULT_RETRY: ClassVar[int] = 0
    ANCHOR: ClassVar[Anchor] = Anchor.START

    argv: tuple[str, ...]
    misc_timeout: float | None = None
    misc_dynamic: bool = False
    user: str = "nobody"
    secure: bool = True  # script security: refuse programs others could replace

    def problems(self) -> list[str]:
        out = super().problems()
        if (
            not isinstance(self.argv, tuple)
            or not self.argv
            or not all(isinstance(a, str) and a for a in self.argv)
        ):
            out.append(f"argv: must be a non-empty tuple of strings, got {self.argv!r}")
        t = self.misc_timeout
        if t is not None and (not _is_number(t) or t <= 0):
            out.append(f"misc_timeout: must be seconds > 0, got {t!r}")
        if not isinstance(self.user, str) or not self.user:
            out.append(f"user: must be user[:group], got {self.user!r}")
        return out

    def effective_timeout(self) -> float:
        return float(self.delay_loop if self.misc_timeout is None else self.misc_timeout)

    def budget(self) -> float:
        # the runner kills the group at the timeout and waits up to 2 s for it to go
        return self.effective_timeout() + 3.0


@dataclass(frozen=True, kw_only=True)
class FileCheck(CheckBase):
    """FILE_CHECK: the number in a file moves the weight (keepalived ``track_file``).

    The file is read as C's ``strtol(text, NULL, 0)`` does (decimal, ``0x`` hex, leading
    ``0`` octal); a missing, empty or non-numeric file reads as 0, and a number outside
    the 32-bit range is ignored (the previous value stays). With ``weight`` 0 the value
    is a status: 0 up, anything else down (``reverse`` swaps them). Otherwise the check is
    always up and adds ``value x weight`` (negated with ``reverse``) to the real server's
    weight; a product at or below -2**31 is a fault. The file is polled every
    ``delay_loop`` (default 1 s here; keepalived uses inotify) and read once before the
    first report, so the server never starts in the wrong state.
    """

    KIND: ClassVar[str] = "file"
    DEFAULT_RETRY: ClassVar[int] = 0

    path: str
    weight: int = 1
    reverse: bool = False
    delay_loop: float = 1.0
    warmup: float | None = 0.0

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            out.append(f"path: must be an absolute path, got {self.path!r}")
        if not _is_int(self.weight) or not -(2**31 - 1) <= self.weight <= 2**31 - 1:
            out.append(f"weight: must be an integer within +-2147483647, got {self.weight!r}")
        return out

    def budget(self) -> float:
        return 5.0


@dataclass(frozen=True, kw_only=True)
class BfdCheck(CheckBase):
    """BFD_CHECK: the real server is up while the agent's BFD session ``session`` is Up.

    Event-driven, as keepalived's: every change of the session's state re-reads it at
    once (the engine's :meth:`~vigil.ipvs.checkers.engine.CheckEngine.bfd_changed`), so a
    Down takes the server out within the session's detection time, not a ``delay_loop``
    later. It is also read every ``delay_loop`` (default 1 s), which only matters if an
    event were missed. No retries by default: the session's detection time already is the
    confirmation (keepalived's checker goes DOWN on the first Down event too).
    """

    KIND: ClassVar[str] = "bfd"
    DEFAULT_RETRY: ClassVar[int] = 0

    session: str
    delay_loop: float = 1.0
    warmup: float | None = 0.0

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.session, str) or not self.session:
            out.append(f"session: must be a BFD session's name, got {self.session!r}")
        return out

    def budget(self) -> float:
        return 1.0


CheckSettings = (
    TcpCheck
    | HttpCheck
    | DnsCheck
    | UdpCheck
    | PingCheck
    | SmtpCheck
    | MiscCheck
    | FileCheck
    | BfdCheck
)

_KINDS = (
    TcpCheck, HttpCheck, DnsCheck, UdpCheck, PingCheck, SmtpCheck, MiscCheck, FileCheck, BfdCheck,
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RealServer:
    """One real server and its checkers; ``name`` must be unique in an engine.

    ``name`` defaults to ``address:port`` (``[v6]:port``); give the virtual server in it
    when one address serves several (``"VS1/10.0.0.2:80"``). ``weight`` is the configured
    IPVS weight; dynamic checkers move it. A server without checkers is always alive.
    """

    address: str
    port: int | None = None
    weight: int = 1
    inhibit_on_failure: bool = False
    checks: tuple[CheckSettings, ...] = ()
    name: str | None = None
    _ip: IPAddress = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        out: list[str] = []
        if why := _address_problem(self.address):
            out.append(f"address: {why}")
        if self.port is not None and (why := _port_problem(self.port)):
            out.append(f"port: {why}")
        if not _is_int(self.weight) or not 0 <= self.weight <= 2**31 - 1:
            out.append(f"weight: must be 0..2147483647, got {self.weight!r}")
        if not isinstance(self.checks, tuple) or not all(
            isinstance(c, _KINDS) for c in self.checks
        ):
            out.append("checks: must be a tuple of checker settings (TcpCheck, HttpCheck, ...)")
        else:
            for i, check in enumerate(self.checks):
                if (
                    isinstance(check, NetCheck)
                    and check.NEEDS_PORT
                    and self.port is None
                    and check.connect_port is None
                ):
                    out.append(
                        f"checks[{i}] ({check.label}): needs a port; the real server has "
                        "none, so set connect_port"
                    )
        if out:
            raise SettingsError("; ".join(f"RealServer({self.label}).{p}" for p in out))
        object.__setattr__(self, "_ip", ipaddress.ip_address(self.address))

    @property
    def ip(self) -> IPAddress:
        return self._ip

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        host = f"[{self.address}]" if ":" in str(self.address) else str(self.address)
        return host if self.port is None else f"{host}:{self.port}"

    def check_names(self) -> list[str]:
        """One unique name per checker: ``<server> <label>``, numbered when repeated."""
        labels = [c.label for c in self.checks]
        names = []
        for i, lab in enumerate(labels):
            if labels.count(lab) > 1:
                lab = f"{lab}#{labels[: i + 1].count(lab)}"
            names.append(f"{self.label} {lab}")
        return names


def settings_fields(cls: type) -> list[str]:
    """Field names of a settings class (for docs and the config layer)."""
    return [f.name for f in fields(cls) if not f.name.startswith("_")]
