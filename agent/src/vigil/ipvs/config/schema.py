"""The voluptuous schema of IPVS's part of vigil.yml (docs/configuration.md, "virtual_servers").

This layer checks the types, ranges and keys of each part alone and normalizes shapes
(a sorry server written as an address, ``persistence: 300``, a checker's single URL given
on the checker itself). Keys that are inherited (a real server's ``delay_loop``, a
checker's ``retry``...) have no default here, so the build step can tell "not written"
from a value. Checks across parts live in ``semantic.py``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import voluptuous as vol

from vigil.config.validators import (
    Struct,
    boolean,
    choice,
    did_you_mean,
    ifname,
    integer,
    ip_address,
    list_of,
    name,
    required,
    seconds,
    show,
    string,
)

from .model import (
    ALL_FLAGS,
    CHECK_KINDS,
    FORWARDING,
    PROTOCOLS,
    SCHEDULERS,
    TUNNEL_CHECKSUMS,
    TUNNEL_TYPES,
)

U32 = 2**32 - 1
WEIGHT_MAX = 2**31 - 1

port = integer(0, 65535)
command = string(what="a command")

TUNNEL = Struct(
    {
        vol.Optional("type", default="ipip"): choice(*TUNNEL_TYPES),
        vol.Optional("port"): integer(1, 65535),
        vol.Optional("checksum"): choice(*TUNNEL_CHECKSUMS),
    },
    what="a tunnel mapping {type: ipip|gue|gre, port: N, checksum: nocsum|csum|remcsum}",
)


def _granularity(value: Any) -> int | str:
    """A prefix length (24, "/24") or an IPv4 netmask ("255.255.255.0")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(0, 128)(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("/") and text[1:].isdigit():
            return integer(0, 128)(int(text[1:]))
        try:
            mask = ipaddress.IPv4Address(text)
        except ValueError:
            pass
        else:
            bits = f"{int(mask):032b}"
            if "01" in bits:
                raise vol.Invalid(f"{text!r} is not a netmask (its ones must come first)")
            return bits.count("1")
    raise vol.Invalid(
        f"expected a prefix length (24) or an IPv4 netmask ('255.255.255.0'), got {show(value)}"
    )


_PERSISTENCE = Struct(
    {
        vol.Optional("timeout", default=360): integer(1, U32 // 1000),
        vol.Optional("granularity"): _granularity,
        vol.Optional("engine"): choice("sip"),
    },
    what="a persistence mapping {timeout: SECONDS, granularity: PREFIX, engine: sip}",
)


def persistence(value: Any) -> dict[str, Any]:
    """``persistence: 300`` is ``{timeout: 300}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _PERSISTENCE({"timeout": value})
    return _PERSISTENCE(value)


def _status_codes(value: Any) -> list[str]:
    """``200``, ``"200-299 503"`` or a list of those, as words like ``200`` / ``300-399``."""
    items = value if isinstance(value, list) else [value]
    words: list[str] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            words.append(str(item))
        elif isinstance(item, str) and item.strip():
            words.extend(item.split())
        else:
            raise vol.Invalid(
                f"expected status codes like 200, '200-299' or a list of them, got {show(item)}"
            )
    from vigil.ipvs.checkers.settings import SettingsError, parse_status_codes

    try:
        parse_status_codes(" ".join(words))
    except SettingsError as exc:
        raise vol.Invalid(str(exc).removeprefix("status_code: ")) from None
    return words


def _url_fields() -> dict[Any, Any]:
    return {
        vol.Optional("path"): string(what="a URL path"),
        vol.Optional("status_codes"): _status_codes,
        vol.Optional("digest"): string(what="an MD5 hex digest"),
        vol.Optional("regex"): string(what="a regular expression"),
        vol.Optional("regex_no_match"): boolean,
        vol.Optional("virtualhost"): string(what="a host name"),
    }


_URL = Struct(_url_fields(), what="a URL mapping {path: /health, status_codes: [200]}")


def url(value: Any) -> dict[str, Any]:
    """A URL to check: a path string or a mapping."""
    if isinstance(value, str):
        return _URL({"path": value})
    return _URL(value)


#: what every checker may set: its schedule (inherited from the real server otherwise)
TIMING_FIELDS: dict[Any, Any] = {
    vol.Optional("name"): name,
    vol.Optional("delay_loop"): seconds(0.01, 86400),
    vol.Optional("retry"): integer(0, 1000),
    vol.Optional("delay_before_retry"): seconds(0.01, 86400),
    vol.Optional("warmup"): seconds(0, 86400),
    vol.Optional("alpha"): boolean,
}
#: a network checker's connection options
CONNECT_FIELDS: dict[Any, Any] = {
    vol.Optional("connect_ip"): ip_address,
    vol.Optional("connect_port"): integer(1, 65535),
    vol.Optional("bindto"): ip_address,
    vol.Optional("bind_port"): integer(1, 65535),
    vol.Optional("bind_if"): ifname,
    vol.Optional("fwmark"): integer(0, U32),
    vol.Optional("connect_timeout"): seconds(0.01, 3600),
}

_HTTP = {
    **TIMING_FIELDS,
    **CONNECT_FIELDS,
    **_url_fields(),
    vol.Optional("urls"): list_of(url, min_length=1, what="a list of URLs"),
    vol.Optional("http_protocol"): choice("1.0", "1.0C", "1.1"),
    vol.Optional("read_timeout"): seconds(0.01, 3600),
    vol.Optional("max_body"): integer(0, 64 * 1024 * 1024),
    vol.Optional("user_agent"): string(200, what="a User-Agent string"),
}
_TLS = {
    vol.Optional("enable_sni"): boolean,
    vol.Optional("sni_name"): string(255, what="a host name"),
    vol.Optional("tls_verify"): boolean,
    vol.Optional("ca_file"): string(what="a file path"),
}

CHECKS: dict[str, Struct] = {
    "tcp": Struct({**TIMING_FIELDS, **CONNECT_FIELDS}, what="a tcp check"),
    "http": Struct(_HTTP, what="an http check"),
    "https": Struct({**_HTTP, **_TLS}, what="an https check"),
    "dns": Struct(
        {
            **TIMING_FIELDS,
            **CONNECT_FIELDS,
            vol.Optional("query_type"): choice(
                "A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "RRSIG", "DNSKEY"
            ),
            vol.Optional("query_name"): string(255, what="a domain name"),
            vol.Optional("require_answer"): boolean,
        },
        what="a dns check",
    ),
    "udp": Struct(
        {
            **TIMING_FIELDS,
            **CONNECT_FIELDS,
            vol.Optional("payload"): string(what="hex digits"),
            vol.Optional("require_reply"): boolean,
            vol.Optional("reply_pattern"): string(what="hex digits (x: any)"),
            vol.Optional("min_reply_length"): integer(0, 65535),
            vol.Optional("max_reply_length"): integer(0, 65535),
        },
        what="a udp check",
    ),
    "ping": Struct(
        {
            **TIMING_FIELDS,
            **{
                k: v
                for k, v in CONNECT_FIELDS.items()
                if str(k) not in ("connect_port", "bind_port")
            },
        },
        what="a ping check",
    ),
    "smtp": Struct(
        {**TIMING_FIELDS, **CONNECT_FIELDS, vol.Optional("helo_name"): string(255)},
        what="an smtp check",
    ),
    "misc": Struct(
        {
            **TIMING_FIELDS,
            required("command"): command,
            vol.Optional("timeout"): seconds(0.01, 3600),
            vol.Optional("dynamic"): boolean,
            vol.Optional("user"): string(what="user[:group]"),
        },
        what="a misc check {command: ...}",
    ),
    "file": Struct(
        {
            **TIMING_FIELDS,
            vol.Optional("path"): string(what="an absolute file path"),
            vol.Optional("track_file"): name,
            vol.Optional("weight"): integer(-WEIGHT_MAX, WEIGHT_MAX),
            vol.Optional("reverse"): boolean,
        },
        what="a file check {path: ... | track_file: NAME}",
    ),
    "bfd": Struct(
        {**TIMING_FIELDS, required("session"): name},
        what="a bfd check {session: NAME}",
    ),
}


def check(value: Any) -> dict[str, Any]:
    """A checker: a mapping whose ``type`` picks the schema of the rest."""
    if isinstance(value, str) and value in ("tcp", "ping"):
        value = {"type": value}
    if not isinstance(value, dict):
        raise vol.Invalid(
            f"expected a check mapping {{type: tcp|http|https|dns|udp|ping|smtp|misc|file|bfd, "
            f"...}}, got {show(value)}"
        )
    kind = value.get("type")
    if kind not in CHECKS:
        hint = did_you_mean(kind, CHECK_KINDS) if isinstance(kind, str) else ""
        # the whole check is the error's place, so a salvaged item drops this check
        raise vol.Invalid(f"type: must be one of {', '.join(CHECK_KINDS)}; got {show(kind)}{hint}")
    rest = {k: v for k, v in value.items() if k != "type"}
    return {"type": kind, **CHECKS[kind](rest)}


#: what virtual servers and real servers both set (real servers inherit the former's)
INHERITED: dict[Any, Any] = {
    vol.Optional("inhibit_on_failure"): boolean,
    vol.Optional("alpha"): boolean,
    vol.Optional("delay_loop"): seconds(0.01, 86400),
    vol.Optional("retry"): integer(0, 1000),
    vol.Optional("delay_before_retry"): seconds(0.01, 86400),
    vol.Optional("warmup"): seconds(0, 86400),
    vol.Optional("connect_timeout"): seconds(0.01, 3600),
    vol.Optional("virtualhost"): string(255, what="a host name"),
}
FORWARDING_FIELDS: dict[Any, Any] = {
    vol.Optional("forwarding"): choice(*FORWARDING),
    vol.Optional("tunnel"): TUNNEL,
}

REAL_SERVER = Struct(
    {
        required("address"): ip_address,
        vol.Optional("port"): port,
        vol.Optional("weight", default=1): integer(0, WEIGHT_MAX),
        **FORWARDING_FIELDS,
        **INHERITED,
        vol.Optional("upper_threshold", default=0): integer(0, U32),
        vol.Optional("lower_threshold", default=0): integer(0, U32),
        vol.Optional("notify_up"): command,
        vol.Optional("notify_down"): command,
        vol.Optional("checks", default=list): list_of(check, what="a list of checks"),
    },
    what="a real server mapping {address: ..., port: ..., checks: [...]}",
)

_SORRY = Struct(
    {
        required("address"): ip_address,
        vol.Optional("port"): port,
        **FORWARDING_FIELDS,
        vol.Optional("inhibit", default=False): boolean,
    },
    what="a sorry server: an address or a mapping {address: ..., port: ...}",
)


def sorry_server(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return _SORRY({"address": value})
    return _SORRY(value)


VIRTUAL_SERVER = Struct(
    {
        vol.Optional("name"): name,
        vol.Optional("address"): ip_address,
        vol.Optional("port"): port,
        vol.Optional("protocol", default="tcp"): choice(*PROTOCOLS),
        vol.Optional("fwmark"): integer(1, U32),
        vol.Optional("family"): choice(4, 6),
        vol.Optional("group"): name,
        vol.Optional("scheduler", default="wlc"): choice(*SCHEDULERS),
        vol.Optional("scheduler_flags", default=list): list_of(
            choice(*ALL_FLAGS), what="a list of scheduler flags"
        ),
        vol.Optional("one_packet", default=False): boolean,
        **FORWARDING_FIELDS,
        vol.Optional("persistence"): persistence,
        vol.Optional("quorum", default=1): integer(0, WEIGHT_MAX),
        vol.Optional("hysteresis", default=0): integer(0, WEIGHT_MAX),
        vol.Optional("quorum_up"): command,
        vol.Optional("quorum_down"): command,
        vol.Optional("sorry_server"): sorry_server,
        **INHERITED,
        vol.Optional("omega", default=False): boolean,
        vol.Optional("ha_suspend"): name,
        vol.Optional("real_servers", default=list): list_of(
            REAL_SERVER, what="a list of real servers"
        ),
    },
    what="a virtual server mapping {address: ..., port: ..., real_servers: [...]}",
)


def _member(value: Any) -> dict[str, Any]:
    return GROUP_MEMBER(value)


GROUP_MEMBER = Struct(
    {
        vol.Optional("address"): string(what="an address, a range (10.0.0.1-10) or a prefix"),
        vol.Optional("port"): port,
        vol.Optional("fwmark"): integer(1, U32),
        vol.Optional("family", default=4): choice(4, 6),
    },
    what="a group member {address: ..., port: ...} or {fwmark: N}",
)

GROUP = Struct(
    {
        required("name"): name,
        required("members"): list_of(_member, min_length=1, what="a list of members"),
    },
    what="a virtual server group {name: ..., members: [...]}",
)

SYNC_DAEMON = Struct(
    {
        required("interface"): ifname,
        vol.Optional("instance"): name,
        vol.Optional("syncid"): integer(0, 255),
        vol.Optional("maxlen"): integer(1, 65507),
        vol.Optional("port"): integer(1, 65535),
        vol.Optional("ttl"): integer(1, 255),
        vol.Optional("group"): ip_address,
    },
    what="a sync daemon mapping {interface: eth0, instance: VI_1}",
)
