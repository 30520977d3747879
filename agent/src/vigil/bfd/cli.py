"""BFD's ``vigilctl`` group: ``vigilctl bfd show [NAME]``, ``shutdown NAME``, ``enable NAME``.

``shutdown`` and ``enable`` are verified by the agent (they return when the effect is
observed, or fail with what was seen); the shutdown is kept across agent restarts.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from vigil.clikit import EXIT_OK, Ctl, kv, names_diff_table, table

__all__ = ["GROUP", "BfdCli", "session_detail", "status_table"]


def _ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value * 1000:g}ms"


def _age(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    seconds = int(value)
    if seconds < 120:
        return f"{value:.1f}s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h{minutes}m"
    return f"{hours}h{minutes}m" if hours else f"{minutes}m{seconds}s"


def _peer(s: dict[str, Any]) -> str:
    text = str(s.get("peer"))
    if s.get("interface"):
        text += f"%{s['interface']}"
    if s.get("multihop"):
        text += " (mh)"
    return text


def _state(s: dict[str, Any]) -> str:
    state = str(s.get("state"))
    if s.get("shutdown_by_operator"):
        state += " (shutdown)"
    if s.get("error"):
        state += f" ({s['error']})"
    return state


def status_table(section: dict[str, Any]) -> str:
    sessions = section.get("sessions") or []
    if not sessions:
        return "no BFD sessions\n"
    rows = [
        (
            s.get("name"),
            _state(s),
            s.get("remote_state"),
            _peer(s),
            f"{_ms(s.get('tx_interval'))}/{_ms(s.get('rx_interval'))}",
            _ms(s.get("detection_time")),
            _age(s.get("uptime")),
            s.get("local_diag_text") if s.get("state") != "Up" else "",
        )
        for s in sessions
    ]
    headers = ("SESSION", "STATE", "REMOTE", "PEER", "TX/RX", "DETECT", "UPTIME", "DIAG")
    return table(headers, rows)


def session_detail(s: dict[str, Any]) -> str:
    counters = s.get("counters") or {}
    rejects = s.get("rejects") or {}
    last = s.get("last_transition") or {}
    pairs = [
        ("session", s.get("name")),
        ("state", _state(s)),
        ("remote state", s.get("remote_state")),
        ("peer", _peer(s)),
        ("local", s.get("local") or "any"),
        ("diagnostic", f"{s.get('local_diag')} {s.get('local_diag_text')}"),
        ("remote diagnostic", f"{s.get('remote_diag')} {s.get('remote_diag_text')}"),
        ("discriminators", f"{s.get('local_discr', '-')} / remote {s.get('remote_discr', '-')}"),
        ("tx interval", _ms(s.get("tx_interval"))),
        ("rx interval", _ms(s.get("rx_interval"))),
        (
            "detection time",
            f"{_ms(s.get('detection_time'))} (remote multiplier "
            f"{s.get('remote_detect_mult', '-')})",
        ),
        ("uptime", _age(s.get("uptime"))),
        ("rtt", _ms(s.get("rtt"))),
        ("packets in/out", f"{counters.get('packets_in', 0)}/{counters.get('packets_out', 0)}"),
        (
            "up/down transitions",
            f"{counters.get('up_transitions', 0)}/{counters.get('down_transitions', 0)}",
        ),
        ("auth failures", s.get("auth_failures", 0)),
        ("rejects", ", ".join(f"{k} {v}" for k, v in rejects.items()) or "none"),
    ]
    if last:
        pairs.append(("last transition", f"{last.get('log') or last.get('reason')}"))
    if s.get("profile"):
        pairs.append(("profile", s["profile"]))
    return kv(pairs)


def session_path(name: str, action: str = "") -> str:
    path = f"/v1/bfd/sessions/{quote(name, safe='')}"
    return f"{path}/{action}" if action else path


def result_line(result: dict[str, Any]) -> str:
    before, after = result.get("before") or {}, result.get("after") or {}
    elapsed = result.get("elapsed_s")
    took = f" in {elapsed:.2f}s" if isinstance(elapsed, int | float) else ""
    change = f" [{before.get('state')} -> {after.get('state')}, remote {after.get('remote_state')}]"
    return f"{result.get('session')}: {result.get('message')}{took}{change}\n"


def observed_text(snap: dict[str, Any]) -> str:
    return f"{snap.get('state')}, remote {snap.get('remote_state')}"


# --------------------------------------------------------------------------- commands


def cmd_show(ctl: Ctl, args: argparse.Namespace) -> int:
    if args.session:
        status, body = ctl.client.get(session_path(args.session))
        if status != 200 or not isinstance(body, dict):
            return ctl._fail(status, body)
        if ctl.output == "json":
            ctl._json(body)
        else:
            ctl.out.write(session_detail(body))
        return EXIT_OK
    status, body = ctl.client.get("/v1/bfd/sessions")
    if status != 200 or not isinstance(body, dict):
        return ctl._fail(status, body)
    if ctl.output == "json":
        ctl._json(body)
    else:
        ctl.out.write(status_table(body))
    return EXIT_OK


def cmd_shutdown(ctl: Ctl, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.action_timeout is not None:
        body["timeout"] = args.action_timeout
    return ctl.control(
        session_path(args.session, "shutdown"),
        body,
        args.action_timeout,
        result_line,
        observed_text,
    )


def cmd_enable(ctl: Ctl, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"wait_up": not args.no_wait}
    if args.action_timeout is not None:
        body["timeout"] = args.action_timeout
    return ctl.control(
        session_path(args.session, "enable"),
        body,
        args.action_timeout,
        result_line,
        observed_text,
    )


def _seconds(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 600, got {text!r}")
    return value


class BfdCli:
    """BFD's command group (implements :class:`vigil.clikit.CliGroup`)."""

    name = "bfd"
    help = "BFD sessions: show, shutdown, enable"
    aliases: tuple[str, ...] = ()

    def add_commands(self, sub: Any, common: argparse.ArgumentParser) -> None:
        show = sub.add_parser(
            "show", parents=[common], help="show [SESSION]: every session, or one in detail"
        )
        show.add_argument("session", nargs="?")
        show.set_defaults(func=cmd_show)
        down = sub.add_parser(
            "shutdown",
            parents=[common],
            help="shutdown SESSION: AdminDown, the peer told (kept across restarts)",
        )
        down.add_argument("session")
        down.add_argument(
            "--timeout",
            dest="action_timeout",
            type=_seconds,
            metavar="SECONDS",
            help="how long to wait for the peer to answer (default 3)",
        )
        down.set_defaults(func=cmd_shutdown)
        up = sub.add_parser(
            "enable", parents=[common], help="enable SESSION: bring a shut-down session back"
        )
        up.add_argument("session")
        up.add_argument(
            "--timeout",
            dest="action_timeout",
            type=_seconds,
            metavar="SECONDS",
            help="how long to wait for Up (default 10)",
        )
        up.add_argument("--no-wait", action="store_true", help="return once enabled, not Up")
        up.set_defaults(func=cmd_enable)

    def status_text(self, section: dict[str, Any]) -> str:
        return status_table(section)

    def diff_text(self, diff: dict[str, Any]) -> str:
        if not any(diff.get(key) for key in ("added", "removed", "changed")):
            return ""
        return names_diff_table("BFD SESSIONS", diff)


GROUP = BfdCli()
