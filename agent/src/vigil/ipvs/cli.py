"""IPVS's ``vigilctl`` group: ``vigilctl ipvs status|drain|enable``.

``status`` prints the table an ``ipvsadm -Ln`` user reads at once (the service line,
then one ``->`` line per real server with its forwarding, weight and connections) plus
what ipvsadm cannot show: each real server's health, its checks' latency, failures in a
row and last error, drains, the quorum and the sorry server. ``drain`` and ``enable``
are verified by the agent; ``drain --wait`` returns when the real server's active
connections reach zero (exit 0) or the timeout passes (exit 1), and says which. Both are
also top-level commands (``vigilctl drain web 10.0.0.11:80``).
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from vigil.clikit import EXIT_API_ERROR, EXIT_OK, Ctl, names_diff_table, table

__all__ = ["GROUP", "IpvsCli", "status_table"]

FORWARD = {"nat": "Masq", "dr": "Route", "tun": "Tunnel"}


def _forward(text: Any) -> str:
    word = str(text or "")
    return FORWARD.get(word.split(" ", 1)[0], word) + (word[3:] if word.startswith("tun ") else "")


def _service_line(vs: dict[str, Any]) -> str:
    services = vs.get("services") or []
    first = str(services[0]) if services else "?"
    proto, _, where = first.partition(" ")
    head = f"FWM  {where}" if proto == "fwmark" else f"{proto.upper():<4} {where}"
    if len(services) > 1:
        head += f" (+{len(services) - 1} more, group {vs.get('group')})"
    head += f" {vs.get('scheduler')}"
    flags = vs.get("scheduler_flags") or []
    if flags:
        head += f" ({','.join(flags)})"
    persistence = vs.get("persistence")
    if persistence:
        head += f" persistent {persistence.get('timeout')}"
        if persistence.get("granularity") is not None:
            head += f" mask /{persistence['granularity']}"
    if vs.get("one_packet"):
        head += " ops"
    return head


def _vs_note(vs: dict[str, Any]) -> str:
    quorum = vs.get("quorum") or {}
    note = f"[{vs.get('name')}] quorum {quorum.get('state')}"
    if quorum.get("live_weight") is not None:
        note += f" (live weight {quorum.get('live_weight')}, quorum {quorum.get('quorum')})"
    sorry = vs.get("sorry_server")
    if sorry:
        note += f"; sorry server {sorry.get('address')}:{sorry.get('port')} " + (
            "SERVING" if sorry.get("active") else "standing by"
        )
    ha = vs.get("ha_suspend")
    if ha and ha.get("suspended"):
        note += f"; checks suspended ({ha.get('instance')} is {ha.get('vrrp_state')})"
    if not vs.get("in_ipvs"):
        note += "; NOT IN IPVS"
    return note


def _latency(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value * 1000:.1f}ms"


def _state(rs: dict[str, Any]) -> str:
    state = str(rs.get("state"))
    if rs.get("drained"):
        state = "DRAINED" if state == "UP" else f"{state},drained"
    if rs.get("suspended"):
        state += "*"
    return state


def _checks(rs: dict[str, Any]) -> str:
    checks = rs.get("checks") or []
    if not checks:
        return "-" if not rs.get("suspended") else "suspended"
    return ",".join(f"{c.get('kind')}:{str(c.get('state', '?')).lower()}" for c in checks)


def status_table(section: dict[str, Any]) -> str:
    out = []
    kernel = section.get("kernel") or {}
    if kernel.get("used") and not kernel.get("available"):
        out.append(f"IPVS NOT AVAILABLE: {kernel.get('error')}\n")
    servers = section.get("virtual_servers") or []
    if not servers:
        out.append("no virtual servers\n")
    headers = (
        "  ->",
        "RemoteAddress:Port",
        "Forward",
        "Weight",
        "ActiveConn",
        "InActConn",
        "State",
        "Checks",
        "Latency",
        "Fails",
        "Last error",
    )
    for vs in servers:
        out.append(f"{_service_line(vs)}  {_vs_note(vs)}\n")
        rows = []
        for rs in vs.get("real_servers") or []:
            conns = rs.get("connections") or {}
            weight = rs.get("ipvs_weight")
            rows.append(
                (
                    "  ->",
                    rs.get("name"),
                    _forward(rs.get("forwarding")),
                    "-" if weight is None else weight,
                    conns.get("active", "-") if conns else "-",
                    conns.get("inactive", "-") if conns else "-",
                    _state(rs),
                    _checks(rs),
                    _latency(rs.get("latency_s")),
                    rs.get("consecutive_failures", 0),
                    rs.get("last_error") or "-",
                )
            )
        if rows:
            out.append(table(headers, rows))
    sync = section.get("sync_daemon")
    if sync:
        running = ", ".join(sync.get("running") or []) or "none"
        follows = (
            f" (follows {sync['instance']}: {sync.get('vrrp_state')})"
            if sync.get("instance")
            else ""
        )
        out.append(
            f"sync daemon on {sync.get('interface')} syncid {sync.get('syncid')}: "
            f"{running} running{follows}\n"
        )
    if any(rs.get("suspended") for vs in servers for rs in vs.get("real_servers") or []):
        out.append("(* = checks suspended: the state is held from before)\n")
    return "".join(out)


# --------------------------------------------------------------------------- commands


def rs_path(vs: str, rs: str, action: str) -> str:
    return (
        f"/v1/ipvs/virtual_servers/{quote(vs, safe='')}/real_servers/{quote(rs, safe='')}/{action}"
    )


def result_line(result: dict[str, Any]) -> str:
    elapsed = result.get("elapsed_s")
    took = f" ({elapsed:.2f}s)" if isinstance(elapsed, int | float) else ""
    who = f"{result.get('virtual_server')}/{result.get('real_server')}"
    return f"{who}: {result.get('message')}{took}\n"


def cmd_status(ctl: Ctl, args: argparse.Namespace) -> int:
    status, body = ctl.client.get("/v1/ipvs/virtual_servers")
    if status != 200 or not isinstance(body, dict):
        return ctl._fail(status, body)
    if ctl.output == "json":
        ctl._json(body)
    else:
        ctl.out.write(status_table(body))
    return EXIT_OK


def _post(ctl: Ctl, path: str, body: dict[str, Any], wait: float | None) -> tuple[int, Any]:
    ctl.client.timeout = max(ctl.client.timeout, (wait or 60.0) + 15.0)
    return ctl.client.post(path, body)


def cmd_drain(ctl: Ctl, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.wait:
        body["wait"] = True
        if args.action_timeout is not None:
            body["timeout"] = args.action_timeout
    status, resp = _post(
        ctl, rs_path(args.virtual_server, args.real_server, "drain"), body, args.action_timeout
    )
    if status != 200 or not isinstance(resp, dict):
        return ctl._fail(status, resp)
    if ctl.output == "json":
        ctl._json(resp)
    else:
        ctl.out.write(result_line(resp))
    wait = resp.get("wait") or {}
    if wait.get("outcome") == "timeout":
        if ctl.output != "json":
            ctl.err.write(
                f"vigilctl: timeout: {wait.get('active_connections')} active connection(s) "
                "still open; the real server stays drained\n"
            )
        return EXIT_API_ERROR
    return EXIT_OK


def cmd_enable(ctl: Ctl, args: argparse.Namespace) -> int:
    status, resp = _post(ctl, rs_path(args.virtual_server, args.real_server, "enable"), {}, None)
    if status != 200 or not isinstance(resp, dict):
        return ctl._fail(status, resp)
    if ctl.output == "json":
        ctl._json(resp)
    else:
        ctl.out.write(result_line(resp))
    return EXIT_OK


def _seconds(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600, got {text!r}")
    return value


def check_drain(args: argparse.Namespace) -> str | None:
    if args.action_timeout is not None and not args.wait:
        return "--timeout goes with --wait"
    return None


class IpvsCli:
    """IPVS's command group (implements :class:`vigil.clikit.CliGroup`)."""

    name = "ipvs"
    help = "IPVS virtual servers: status, drain, enable"
    aliases = ("drain", "enable")

    def add_commands(self, sub: Any, common: argparse.ArgumentParser) -> None:
        st = sub.add_parser(
            "status", parents=[common], help="virtual servers and real servers (like ipvsadm -Ln)"
        )
        st.set_defaults(func=cmd_status)
        dr = sub.add_parser(
            "drain",
            parents=[common],
            help="drain VS RS [--wait [--timeout S]]: weight 0, established connections finish",
        )
        dr.add_argument("virtual_server", help="the virtual server's name")
        dr.add_argument("real_server", help="ADDRESS:PORT (or the address when unique)")
        dr.add_argument(
            "--wait", action="store_true", help="return when its active connections reach zero"
        )
        dr.add_argument(
            "--timeout",
            dest="action_timeout",
            type=_seconds,
            metavar="SECONDS",
            help="with --wait: give up after this long (default 60; exit 1)",
        )
        dr.set_defaults(func=cmd_drain, check=check_drain)
        en = sub.add_parser(
            "enable", parents=[common], help="enable VS RS: lift a drain (its weight comes back)"
        )
        en.add_argument("virtual_server")
        en.add_argument("real_server")
        en.set_defaults(func=cmd_enable)

    def status_text(self, section: dict[str, Any]) -> str:
        return status_table(section)

    def diff_text(self, diff: dict[str, Any]) -> str:
        return names_diff_table("VIRTUAL SERVERS", diff)


GROUP = IpvsCli()
