"""VRRP's ``vigilctl`` group: ``vigilctl vrrp status|maintenance|priority|handover|...``.

Every control command is verified by the agent: it returns when its effect is observed
(or fails with what was seen). ``maintenance``, ``priority``, ``handover``, ``takeover``
and ``garp`` are also top-level commands, as they were before subsystems had groups.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from vigil.clikit import EXIT_OK, Ctl, table

__all__ = ["GROUP", "VrrpCli", "result_line", "snapshot_text"]


def instance_path(name: str, action: str) -> str:
    return f"/v1/vrrp/instances/{quote(name, safe='')}/{action}"


def snapshot_text(snap: dict[str, Any]) -> str:
    """`MASTER prio 150 VIPs 10.0.0.1/24` from a control before/after/observed snapshot."""
    vips = ",".join(str(v) for v in snap.get("vips_present") or []) or "none"
    text = f"{snap.get('state')} prio {snap.get('effective_priority')} VIPs {vips}"
    if snap.get("master_address") and snap.get("state") != "MASTER":
        text += f" master {snap.get('master_address')}"
    if snap.get("maintenance"):
        text += " (maintenance)"
    return text


def result_line(result: dict[str, Any]) -> str:
    """One line per control result: instance, message, before -> after, time taken."""
    before = result.get("before")
    after = result.get("after")
    change = ""
    if isinstance(before, dict) and isinstance(after, dict):
        change = f" [{snapshot_text(before)} -> {snapshot_text(after)}]"
    elapsed = result.get("elapsed_s")
    took = f" in {elapsed:.2f}s" if isinstance(elapsed, int | float) else ""
    return f"{result.get('instance')}: {result.get('message')}{took}{change}\n"


def vip_text(vip: Any) -> str:
    """A VIP of /v1/status: `{address, dev, present}` (or a plain string) as text."""
    if isinstance(vip, dict):
        return f"{vip.get('address')}{'*' if vip.get('present') else ''}"
    return str(vip)


def status_table(section: dict[str, Any]) -> str:
    rows = [
        (
            i.get("name"),
            f"{i.get('state')} (maintenance)" if i.get("maintenance") else i.get("state"),
            i.get("interface"),
            i.get("vrid"),
            i.get("effective_priority", i.get("priority")),
            i.get("master_address") or "-",
            ",".join(vip_text(v) for v in i.get("vips") or []),
        )
        for i in section.get("instances") or []
    ]
    if not rows:
        return "no VRRP instances\n"
    headers = ("NAME", "STATE", "INTERFACE", "VRID", "PRIO", "MASTER", "VIPS")
    text = table(headers, rows)
    if any("*" in str(row[-1]) for row in rows):
        text += "(* = VIP present on this node)\n"
    return text


# --------------------------------------------------------------------------- commands


def _control(ctl: Ctl, path: str, body: dict[str, Any], wait: float | None) -> int:
    return ctl.control(path, body, wait, result_line, snapshot_text)


def cmd_status(ctl: Ctl, args: argparse.Namespace) -> int:
    status, body = ctl.client.get("/v1/status")
    if status != 200 or not isinstance(body, dict):
        return ctl._fail(status, body)
    section = body.get("vrrp") or {}
    if ctl.output == "json":
        ctl._json(section)
    else:
        ctl.out.write(status_table(section))
    return EXIT_OK


def cmd_maintenance(ctl: Ctl, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"enabled": args.mode == "on"}
    if args.instance:
        body["instance"] = args.instance
    if args.action_timeout is not None:
        body["timeout"] = args.action_timeout
    return _control(ctl, "/v1/vrrp/maintenance", body, args.action_timeout)


def cmd_priority(ctl: Ctl, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"value": None if args.clear else args.value}
    if args.duration is not None:
        body["duration"] = args.duration
    return _control(ctl, instance_path(args.instance, "priority"), body, None)


def check_priority(args: argparse.Namespace) -> str | None:
    if (args.value is None) == (not args.clear):
        return "give either VALUE (1..254, optionally --for DURATION) or --clear"
    if args.clear and args.duration is not None:
        return "--for goes with a VALUE, not with --clear"
    return None


def cmd_handover(ctl: Ctl, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.action_timeout is not None:
        body["timeout"] = args.action_timeout
    if args.hold is not None:
        body["hold"] = args.hold
    return _control(ctl, instance_path(args.instance, "handover"), body, args.action_timeout)


def cmd_takeover(ctl: Ctl, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.action_timeout is not None:
        body["timeout"] = args.action_timeout
    return _control(ctl, instance_path(args.instance, "takeover"), body, args.action_timeout)


def cmd_garp(ctl: Ctl, args: argparse.Namespace) -> int:
    return _control(ctl, instance_path(args.instance, "garp"), {}, None)


# --------------------------------------------------------------------------- arguments


def _duration(text: str) -> float:
    from vigil.vrrp.policy import parse_duration

    try:
        return parse_duration(text, "duration")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("duration: ")) from None


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer 1..254, got {text!r}") from None
    if not 1 <= value <= 254:
        raise argparse.ArgumentTypeError(
            f"must be 1..254 (255 is the address owner's, set in the config), got {value}"
        )
    return value


class VrrpCli:
    """VRRP's command group (implements :class:`vigil.clikit.CliGroup`)."""

    name = "vrrp"
    help = "VRRP instances: status, maintenance, priority, handover, takeover, garp"
    aliases = ("maintenance", "priority", "handover", "takeover", "garp")

    def add_commands(self, sub: Any, common: argparse.ArgumentParser) -> None:
        wait_help = "seconds to wait for the effect (default: from the advert interval)"
        st = sub.add_parser("status", parents=[common], help="VRRP instances only")
        st.set_defaults(func=cmd_status)
        mt = sub.add_parser(
            "maintenance",
            parents=[common],
            help="maintenance on|off [INSTANCE]: give up mastership and stay backup (persisted)",
        )
        mt.add_argument("mode", choices=("on", "off"))
        mt.add_argument("instance", nargs="?", help="one instance (default: all)")
        mt.add_argument(
            "--timeout", dest="action_timeout", type=_duration, metavar="SECONDS", help=wait_help
        )
        mt.set_defaults(func=cmd_maintenance)
        pr = sub.add_parser(
            "priority",
            parents=[common],
            help="priority INSTANCE VALUE [--for DURATION] | INSTANCE --clear: runtime override",
        )
        pr.add_argument("instance")
        pr.add_argument("value", nargs="?", type=_priority, help="1..254")
        pr.add_argument("--for", dest="duration", type=_duration, help="expire after (30s, 5m, 1h)")
        pr.add_argument("--clear", action="store_true", help="drop the override")
        pr.set_defaults(func=cmd_priority, check=check_priority)
        ho = sub.add_parser(
            "handover",
            parents=[common],
            help="handover INSTANCE: planned make-before-break failover to the best peer",
        )
        ho.add_argument("instance")
        ho.add_argument(
            "--timeout", dest="action_timeout", type=_duration, metavar="SECONDS", help=wait_help
        )
        ho.add_argument(
            "--hold",
            type=_duration,
            help="stop holding off preemption after this long (default: until takeover or "
            "maintenance off)",
        )
        ho.set_defaults(func=cmd_handover)
        to = sub.add_parser(
            "takeover", parents=[common], help="takeover INSTANCE: this backup becomes master"
        )
        to.add_argument("instance")
        to.add_argument(
            "--timeout", dest="action_timeout", type=_duration, metavar="SECONDS", help=wait_help
        )
        to.set_defaults(func=cmd_takeover)
        ga = sub.add_parser(
            "garp", parents=[common], help="garp INSTANCE: resend gratuitous ARP / NA (master only)"
        )
        ga.add_argument("instance")
        ga.set_defaults(func=cmd_garp)

    def status_text(self, section: dict[str, Any]) -> str:
        return status_table(section)

    def diff_text(self, diff: dict[str, Any]) -> str:
        rows = [
            (key, ", ".join(map(str, diff.get(key) or [])) or "-")
            for key in ("added", "removed", "changed", "unchanged")
            if key in diff
        ]
        return table(("INSTANCES", "NAMES"), rows) if rows else ""


GROUP = VrrpCli()
