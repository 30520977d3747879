"""vigil.ipvs.checkers: real-server health checks (what keepalived's checker process does).

* :mod:`.core`: the pure part. :class:`CheckMachine` (one checker: warmup, delay_loop,
  retry / delay_before_retry, alpha, UP / FAILING / DOWN) and :class:`ServerHealth` (one
  real server: alive while no checker is DOWN, weight with dynamic contributions).
* :mod:`.settings`: one frozen dataclass per checker kind, and :class:`RealServer`.
* :mod:`.engine`: :class:`CheckEngine` runs them all on one asyncio loop with bounded
  concurrency and reports :class:`ServerChange` (what IPVS should hold) by callback.
* Probes: :mod:`.net` (TCP, UDP, DNS, SMTP), :mod:`.http` (HTTP/HTTPS), :mod:`.icmp`
  (PING), :mod:`.local` (MISC, FILE, BFD); :mod:`.dns` is the DNS_CHECK codec.
"""

from .core import (
    Anchor,
    CheckMachine,
    CheckResult,
    CheckState,
    CheckTiming,
    ServerChange,
    ServerHealth,
    Transition,
)
from .engine import CheckEngine, EngineStats
from .settings import (
    BfdCheck,
    DnsCheck,
    FileCheck,
    HttpCheck,
    HttpUrl,
    MiscCheck,
    PingCheck,
    RealServer,
    SettingsError,
    SmtpCheck,
    TcpCheck,
    UdpCheck,
    parse_hex,
    parse_reply_pattern,
    parse_status_codes,
)

__all__ = [
    "Anchor",
    "BfdCheck",
    "CheckEngine",
    "CheckMachine",
    "CheckResult",
    "CheckState",
    "CheckTiming",
    "DnsCheck",
    "EngineStats",
    "FileCheck",
    "HttpCheck",
    "HttpUrl",
    "MiscCheck",
    "PingCheck",
    "RealServer",
    "ServerChange",
    "ServerHealth",
    "SettingsError",
    "SmtpCheck",
    "TcpCheck",
    "Transition",
    "UdpCheck",
    "parse_hex",
    "parse_reply_pattern",
    "parse_status_codes",
]
