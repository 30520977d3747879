"""From a checker as written in vigil.yml to the engine's settings object.

A checker inherits its schedule (``delay_loop``, ``retry``, ``delay_before_retry``,
``warmup``, ``alpha``), ``connect_timeout`` and ``virtualhost`` from its real server, which
inherits them from its virtual server (keepalived's rule: the virtual server's setting is
the default for its real servers, the real server's for its checkers). FILE checks take
none of them: they poll their file every second unless their own ``delay_loop`` says
otherwise; BFD checks take none either (their session's state is read on every change
of it, and every second besides). The settings classes
(:mod:`vigil.ipvs.checkers.settings`) validate themselves; their complaints become config
issues at the checker's path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from vigil.config import files
from vigil.ipvs.checkers.settings import (
    BfdCheck,
    CheckSettings,
    DnsCheck,
    FileCheck,
    HttpCheck,
    HttpUrl,
    MiscCheck,
    PingCheck,
    SettingsError,
    SmtpCheck,
    TcpCheck,
    UdpCheck,
    parse_hex,
    parse_reply_pattern,
    parse_status_codes,
)

__all__ = ["CheckDefaults", "build_check", "defaults_for"]

TIMING = ("delay_loop", "retry", "delay_before_retry", "warmup", "alpha")
INHERITED = (*TIMING, "connect_timeout", "virtualhost")
URL_KEYS = ("path", "status_codes", "digest", "regex", "regex_no_match", "virtualhost")
DEFAULT_DELAY_LOOP = 60.0


@dataclass(frozen=True)
class CheckDefaults:
    """What a real server's checkers inherit (None: the checker kind's own default)."""

    delay_loop: float = DEFAULT_DELAY_LOOP
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    alpha: bool = False
    connect_timeout: float | None = None
    virtualhost: str | None = None
    user: str = "nobody"
    secure: bool = True


def defaults_for(
    vs: Mapping[str, Any], rs: Mapping[str, Any], glob: Mapping[str, Any]
) -> CheckDefaults:
    """The real server's value, else the virtual server's, else the built-in default."""

    def pick(key: str, default: Any) -> Any:
        for source in (rs, vs):
            if source.get(key) is not None:
                return source[key]
        return default

    return CheckDefaults(
        delay_loop=float(pick("delay_loop", DEFAULT_DELAY_LOOP)),
        retry=pick("retry", None),
        delay_before_retry=pick("delay_before_retry", None),
        warmup=pick("warmup", None),
        alpha=bool(pick("alpha", False)),
        connect_timeout=pick("connect_timeout", None),
        virtualhost=pick("virtualhost", None),
        user=str(glob.get("script_user", "nobody")),
        secure=bool(glob.get("script_security", True)),
    )


def _timing(data: Mapping[str, Any], d: CheckDefaults) -> dict[str, Any]:
    out: dict[str, Any] = {
        "delay_loop": float(data.get("delay_loop", d.delay_loop)),
        "retry": data.get("retry", d.retry),
        "delay_before_retry": data.get("delay_before_retry", d.delay_before_retry),
        "warmup": data.get("warmup", d.warmup),
        "alpha": bool(data.get("alpha", d.alpha)),
    }
    if data.get("name") is not None:
        out["name"] = data["name"]
    return out


def _connect(data: Mapping[str, Any], d: CheckDefaults, *, ports: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("connect_ip", "bindto"):
        if data.get(key) is not None:
            out[key] = str(data[key])
    keys = ("connect_port", "bind_port", "bind_if", "fwmark") if ports else ("bind_if", "fwmark")
    for key in keys:
        if data.get(key) is not None:
            out[key] = data[key]
    timeout = data.get("connect_timeout", d.connect_timeout)
    if timeout is not None:
        out["connect_timeout"] = float(timeout)
    return out


def _url(data: Mapping[str, Any]) -> HttpUrl:
    kwargs: dict[str, Any] = {}
    if data.get("path") is not None:
        kwargs["path"] = data["path"]
    if data.get("status_codes") is not None:
        kwargs["status_codes"] = parse_status_codes(" ".join(data["status_codes"]))
    for key in ("digest", "regex", "virtualhost"):
        if data.get(key) is not None:
            kwargs[key] = data[key]
    if data.get("regex_no_match"):
        kwargs["regex_no_match"] = True
    return HttpUrl(**kwargs)


def _http(data: Mapping[str, Any], d: CheckDefaults, tls: bool) -> HttpCheck:
    single = {key: data[key] for key in URL_KEYS if key in data and key != "virtualhost"}
    if data.get("urls") and single:
        raise SettingsError(
            f"{', '.join(sorted(single))}: give the URL either on the check or in urls, not both"
        )
    urls = tuple(_url(u) for u in data["urls"]) if data.get("urls") else (_url(single),)
    kwargs: dict[str, Any] = {
        **_timing(data, d),
        **_connect(data, d),
        "urls": urls,
        "tls": tls,
    }
    vhost = data.get("virtualhost", d.virtualhost)
    if vhost is not None:
        kwargs["virtualhost"] = vhost
    for key in (
        "enable_sni",
        "sni_name",
        "tls_verify",
        "ca_file",
        "http_protocol",
        "read_timeout",
        "max_body",
        "user_agent",
    ):
        if data.get(key) is not None:
            kwargs[key] = data[key]
    return HttpCheck(**kwargs)


def _udp(data: Mapping[str, Any], d: CheckDefaults) -> UdpCheck:
    kwargs: dict[str, Any] = {**_timing(data, d), **_connect(data, d)}
    if data.get("payload") is not None:
        kwargs["payload"] = parse_hex(data["payload"])
    if data.get("reply_pattern") is not None:
        pattern, mask = parse_reply_pattern(data["reply_pattern"])
        kwargs["reply_pattern"] = pattern
        kwargs["reply_mask"] = mask
        kwargs["require_reply"] = True
    if data.get("require_reply") is not None:
        kwargs["require_reply"] = data["require_reply"] or "reply_pattern" in kwargs
    for key in ("min_reply_length", "max_reply_length"):
        if data.get(key) is not None:
            kwargs[key] = data[key]
    return UdpCheck(**kwargs)


def _misc(data: Mapping[str, Any], d: CheckDefaults) -> MiscCheck:
    try:
        argv = tuple(files.split_command(data["command"]))
    except ValueError as exc:
        raise SettingsError(f"command: cannot split it: {exc}; check its quotes") from None
    if not argv:
        raise SettingsError("command: is empty")
    kwargs: dict[str, Any] = {
        **_timing(data, d),
        "argv": argv,
        "user": data.get("user") or d.user,
        "secure": d.secure,
        "misc_dynamic": bool(data.get("dynamic", False)),
    }
    if data.get("timeout") is not None:
        kwargs["misc_timeout"] = float(data["timeout"])
    return MiscCheck(**kwargs)


def _file(data: Mapping[str, Any], track_files: Mapping[str, Any]) -> FileCheck:
    path, weight, reverse = data.get("path"), data.get("weight"), data.get("reverse")
    ref = data.get("track_file")
    if (path is None) == (ref is None):
        raise SettingsError("path/track_file: give exactly one: a file path, or a track_files name")
    if ref is not None:
        entry = track_files.get(ref)
        if entry is None:
            from vigil.config.validators import did_you_mean

            hint = did_you_mean(ref, track_files) or "; define it under track_files"
            raise SettingsError(f"track_file: no track_files entry named {ref!r}{hint}")
        path = entry.get("file")
        if weight is None:
            weight = entry.get("weight")
        if reverse is None:
            reverse = entry.get("weight_reverse")
    kwargs: dict[str, Any] = {"path": path}
    if weight is not None:
        kwargs["weight"] = weight
    if reverse is not None:
        kwargs["reverse"] = reverse
    for key in ("delay_loop", "retry", "delay_before_retry", "warmup", "alpha", "name"):
        if data.get(key) is not None:
            kwargs[key] = data[key]
    return FileCheck(**kwargs)


def _bfd(data: Mapping[str, Any], bfd_sessions: Collection[str] | None) -> BfdCheck:
    session = data["session"]
    if bfd_sessions is not None and session not in bfd_sessions:
        from vigil.config.validators import did_you_mean

        hint = did_you_mean(session, bfd_sessions) or "; define it under bfd.sessions"
        raise SettingsError(f"session: no BFD session named {session!r}{hint}")
    kwargs: dict[str, Any] = {"session": session}
    for key in ("delay_loop", "retry", "delay_before_retry", "warmup", "alpha", "name"):
        if data.get(key) is not None:
            kwargs[key] = data[key]
    return BfdCheck(**kwargs)


def build_check(
    data: Mapping[str, Any],
    d: CheckDefaults,
    track_files: Mapping[str, Any],
    bfd_sessions: Collection[str] | None = None,
) -> CheckSettings:
    """The engine settings of one validated checker; SettingsError says what is wrong.

    ``bfd_sessions``: the names the bfd section defines (None: not known here, so a BFD
    check's session is not looked up)."""
    kind = data["type"]
    if kind == "tcp":
        return TcpCheck(**_timing(data, d), **_connect(data, d))
    if kind in ("http", "https"):
        return _http(data, d, tls=kind == "https")
    if kind == "dns":
        kwargs: dict[str, Any] = {**_timing(data, d), **_connect(data, d)}
        if data.get("query_type") is not None:
            kwargs["type"] = data["query_type"]
        if data.get("query_name") is not None:
            kwargs["query_name"] = data["query_name"]
        if data.get("require_answer") is not None:
            kwargs["require_answer"] = data["require_answer"]
        return DnsCheck(**kwargs)
    if kind == "udp":
        return _udp(data, d)
    if kind == "ping":
        return PingCheck(**_timing(data, d), **_connect(data, d, ports=False))
    if kind == "smtp":
        extra = {"helo_name": data["helo_name"]} if data.get("helo_name") else {}
        return SmtpCheck(**_timing(data, d), **_connect(data, d), **extra)
    if kind == "misc":
        return _misc(data, d)
    if kind == "file":
        return _file(data, track_files)
    if kind == "bfd":
        return _bfd(data, bfd_sessions)
    raise SettingsError(f"type: unknown checker kind {kind!r}")


def settings_message(exc: Exception) -> str:
    """A settings error without its class prefix: ``retry: must be ...``."""
    text = str(exc)
    parts = []
    for part in text.split("; "):
        head, dot, rest = part.partition(".")
        if dot and head and head[0].isupper() and "(" not in head:
            part = rest
        parts.append(part)
    return "; ".join(parts)
