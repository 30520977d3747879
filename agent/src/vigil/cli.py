"""vigilctl: talk to a running vigild over its Unix socket.

Exit codes are part of the interface (scripts and the Ansible role rely on them):
0 ok, 1 the API answered with an error (message printed), 2 usage, 3 vigild unreachable.
Output is a plain aligned table for people or JSON (`-o json`) for programs; the JSON is
exactly the API's body.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from vigil import __version__
from vigil.client import DEFAULT_SOCKET, ApiClient, ApiError, ApiUnreachable, error_message

__all__ = ["EXIT_API_ERROR", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "main", "table"]

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain left-aligned columns separated by two spaces; no trailing blanks."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines) + "\n"


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return str(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    items = list(pairs)
    width = max((len(k) for k, _ in items), default=0)
    return "".join(f"{k + ':':<{width + 1}} {v}\n" for k, v in items)


class Ctl:
    """One vigilctl invocation: the client, output format and streams."""

    def __init__(self, client: ApiClient, output: str, out: TextIO, err: TextIO) -> None:
        self.client = client
        self.output = output
        self.out = out
        self.err = err

    def _json(self, data: Any) -> None:
        json.dump(data, self.out, indent=2, sort_keys=False)
        self.out.write("\n")

    def _fail(self, status: int, body: Any) -> int:
        if self.output == "json" and isinstance(body, dict):
            self._json(body)
        self.err.write(f"vigilctl: {error_message(status, body)}\n")
        return EXIT_API_ERROR

    def health(self, args: argparse.Namespace) -> int:
        status, body = self.client.get("/v1/health")
        if status not in (200, 503) or not isinstance(body, dict):
            return self._fail(status, body)
        if self.output == "json":
            self._json(body)
        else:
            self.out.write(
                _kv(
                    [
                        ("status", body.get("status")),
                        ("ready", body.get("ready")),
                        ("router_id", body.get("router_id")),
                        ("version", body.get("version")),
                        ("pid", body.get("pid")),
                        ("uptime", f"{body.get('uptime_s')}s"),
                    ]
                )
            )
        return EXIT_OK if status == 200 else EXIT_API_ERROR

    def status(self, args: argparse.Namespace) -> int:
        status, body = self.client.get("/v1/status")
        if status != 200 or not isinstance(body, dict):
            return self._fail(status, body)
        if self.output == "json":
            self._json(body)
            return EXIT_OK
        agent = body.get("agent", {})
        self.out.write(
            _kv(
                [
                    ("router_id", agent.get("router_id")),
                    ("phase", agent.get("phase")),
                    ("version", agent.get("version")),
                    ("pid", agent.get("pid")),
                    ("uptime", f"{agent.get('uptime_s')}s"),
                    ("config", agent.get("config_source")),
                    ("loaded", _when(agent.get("config_loaded_at"))),
                ]
            )
        )
        rows = [
            (
                i.get("name"),
                f"{i.get('state')} (maintenance)" if i.get("maintenance") else i.get("state"),
                i.get("interface"),
                i.get("vrid"),
                i.get("effective_priority", i.get("priority")),
                i.get("master_address") or "-",
                ",".join(_vip_text(v) for v in i.get("vips") or []),
            )
            for i in body.get("instances", [])
        ]
        self.out.write("\n")
        if rows:
            headers = ("NAME", "STATE", "INTERFACE", "VRID", "PRIO", "MASTER", "VIPS")
            self.out.write(table(headers, rows))
            if any("*" in str(row[-1]) for row in rows):
                self.out.write("(* = VIP present on this node)\n")
        else:
            self.out.write("no VRRP instances\n")
        return EXIT_OK

    def config(self, args: argparse.Namespace) -> int:
        status, body = self.client.get("/v1/config")
        if status != 200 or not isinstance(body, dict):
            return self._fail(status, body)
        if self.output == "json":
            self._json(body)
            return EXIT_OK
        import yaml

        self.out.write(f"# source: {body.get('source')}\n")
        self.out.write(f"# loaded: {_when(body.get('loaded_at'))}\n")
        self.out.write(
            yaml.safe_dump(body.get("config"), sort_keys=False, default_flow_style=False)
        )
        return EXIT_OK

    def reload(self, args: argparse.Namespace) -> int:
        confirm = bool(getattr(args, "confirm_stop_all", False))
        status, body = self.client.post(
            "/v1/reload", {"confirm_stop_all": True} if confirm else None
        )
        if status != 200 or not isinstance(body, dict):
            return self._fail(status, body)
        if self.output == "json":
            self._json(body)
            return EXIT_OK
        if not body.get("changed"):
            self.out.write("config reloaded: no changes\n")
            return EXIT_OK
        diff = body.get("diff") or {}
        self.out.write("config reloaded: changed\n")
        rows = [
            (key, ", ".join(map(str, diff.get(key) or [])) or "-")
            for key in ("added", "removed", "changed", "unchanged")
            if key in diff
        ]
        if rows:
            self.out.write(table(("INSTANCES", "NAMES"), rows))
        if diff.get("globals_changed"):
            self.out.write("global settings changed\n")
        return EXIT_OK

    def events(self, args: argparse.Namespace) -> int:
        if args.follow:
            path = "/v1/events?follow=1" + (
                f"&since={args.since}" if args.since is not None else ""
            )
            # vigild sends a heartbeat every 15 s: a minute of silence means it is gone.
            last_kind = None
            try:
                for msg in self.client.stream(path, timeout=max(self.client.timeout, 60.0)):
                    data = msg.get("data")
                    if not isinstance(data, dict):
                        continue
                    last_kind = msg.get("event")
                    if self.output == "json":
                        self.out.write(json.dumps(data) + "\n")
                    else:
                        self.out.write(_event_line(data))
                    self.out.flush()
                    if last_kind == "overflow":
                        self.err.write(f"vigilctl: {data.get('message')}\n")
                        return EXIT_API_ERROR
            except ApiError as exc:
                return self._fail(exc.status, exc.body)
            except KeyboardInterrupt:
                return EXIT_OK
            if last_kind == "agent_stopping":
                return EXIT_OK  # a clean stop ends the stream
            self.err.write(
                f"vigilctl: the event stream from {self.client.socket_path} ended "
                "unexpectedly (vigild stopped?)\n"
            )
            return EXIT_UNREACHABLE
        path = "/v1/events" + (f"?since={args.since}" if args.since is not None else "")
        status, body = self.client.get(path)
        if status != 200 or not isinstance(body, list):
            return self._fail(status, body)
        if self.output == "json":
            self._json(body)
            return EXIT_OK
        rows = [
            (
                e.get("seq"),
                _when(e.get("time")),
                e.get("kind"),
                e.get("instance") or "-",
                e.get("message"),
            )
            for e in body
        ]
        self.out.write(table(("SEQ", "TIME", "KIND", "INSTANCE", "MESSAGE"), rows))
        return EXIT_OK

    # ---------------------------------------------------------------- runtime control

    def _control(self, path: str, body: dict[str, Any], wait: float | None) -> int:
        """POST a verified control action; the request waits as long as the action may."""
        self.client.timeout = max(self.client.timeout, (wait or 60.0) + 10.0)
        status, resp = self.client.post(path, body)
        if status != 200 or not isinstance(resp, dict):
            if isinstance(resp, dict) and self.output != "json":
                observed = (resp.get("error") or {}).get("observed")
                self.err.write(f"vigilctl: {error_message(status, resp)}\n")
                if isinstance(observed, dict):
                    self.err.write(_kv([("observed", _snapshot_text(observed))]))
                return EXIT_API_ERROR
            return self._fail(status, resp)
        if self.output == "json":
            self._json(resp)
            return EXIT_OK
        for result in resp.get("results") or [resp]:
            self.out.write(_result_line(result))
        return EXIT_OK

    def maintenance(self, args: argparse.Namespace) -> int:
        body: dict[str, Any] = {"enabled": args.mode == "on"}
        if args.instance:
            body["instance"] = args.instance
        if args.action_timeout is not None:
            body["timeout"] = args.action_timeout
        return self._control("/v1/vrrp/maintenance", body, args.action_timeout)

    def priority(self, args: argparse.Namespace) -> int:
        body: dict[str, Any] = {"value": None if args.clear else args.value}
        if args.duration is not None:
            body["duration"] = args.duration
        return self._control(_instance_path(args.instance, "priority"), body, None)

    def handover(self, args: argparse.Namespace) -> int:
        body: dict[str, Any] = {}
        if args.action_timeout is not None:
            body["timeout"] = args.action_timeout
        if args.hold is not None:
            body["hold"] = args.hold
        return self._control(_instance_path(args.instance, "handover"), body, args.action_timeout)

    def takeover(self, args: argparse.Namespace) -> int:
        body: dict[str, Any] = {}
        if args.action_timeout is not None:
            body["timeout"] = args.action_timeout
        return self._control(_instance_path(args.instance, "takeover"), body, args.action_timeout)

    def garp(self, args: argparse.Namespace) -> int:
        return self._control(_instance_path(args.instance, "garp"), {}, None)


def _instance_path(name: str, action: str) -> str:
    from urllib.parse import quote

    return f"/v1/vrrp/instances/{quote(name, safe='')}/{action}"


def _snapshot_text(snap: dict[str, Any]) -> str:
    """`MASTER prio 150 VIPs 10.0.0.1/24` from a control before/after/observed snapshot."""
    vips = ",".join(str(v) for v in snap.get("vips_present") or []) or "none"
    text = f"{snap.get('state')} prio {snap.get('effective_priority')} VIPs {vips}"
    if snap.get("master_address") and snap.get("state") != "MASTER":
        text += f" master {snap.get('master_address')}"
    if snap.get("maintenance"):
        text += " (maintenance)"
    return text


def _result_line(result: dict[str, Any]) -> str:
    """One line per control result: instance, message, before -> after, time taken."""
    before = result.get("before")
    after = result.get("after")
    change = ""
    if isinstance(before, dict) and isinstance(after, dict):
        change = f" [{_snapshot_text(before)} -> {_snapshot_text(after)}]"
    elapsed = result.get("elapsed_s")
    took = f" in {elapsed:.2f}s" if isinstance(elapsed, int | float) else ""
    return f"{result.get('instance')}: {result.get('message')}{took}{change}\n"


def _vip_text(vip: Any) -> str:
    """A VIP of /v1/status: `{address, dev, present}` (or a plain string) as text."""
    if isinstance(vip, dict):
        return f"{vip.get('address')}{'*' if vip.get('present') else ''}"
    return str(vip)


def _event_line(e: dict[str, Any]) -> str:
    inst = e.get("instance") or "-"
    return f"{e.get('seq')}  {_when(e.get('time'))}  {e.get('kind')}  {inst}  {e.get('message')}\n"


def import_keepalived(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Convert a keepalived.conf; runs locally, needs no agent."""
    try:
        from vigil.config.keepalived import import_main
    except ImportError:
        err.write(
            "vigilctl: import-keepalived is not available in this build "
            "(vigil.config.keepalived.import_main is missing)\n"
        )
        return EXIT_API_ERROR
    fmt = args.format or ("json" if args.output == "json" else "yaml")
    return int(import_main(args.file, out, err, fmt))


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--socket",
        "-s",
        default=argparse.SUPPRESS,
        help="vigild API socket (default $VIGIL_SOCKET or /run/vigil/vigil.sock)",
    )
    common.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default=argparse.SUPPRESS,
        help="output format (default table)",
    )
    p = argparse.ArgumentParser(
        prog="vigilctl",
        description="Query and control a running vigild over its Unix socket.",
        epilog="exit codes: 0 ok, 1 API error, 2 usage, 3 vigild unreachable",
        parents=[common],
    )
    p.add_argument("--version", action="version", version=f"vigilctl {__version__}")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("status", parents=[common], help="agent and instance state")
    sub.add_parser("health", parents=[common], help="liveness/readiness (exit 1 if not ready)")
    sub.add_parser("config", parents=[common], help="the running config (secrets redacted)")
    rl = sub.add_parser("reload", parents=[common], help="reread the config file (like SIGHUP)")
    rl.add_argument(
        "--confirm-stop-all",
        action="store_true",
        help="allow a reload that stops every running instance (a file that keeps none "
        "of them); without it such a reload is refused",
    )
    ev = sub.add_parser("events", parents=[common], help="recent events; --follow to stream")
    ev.add_argument("--since", type=_nonneg, help="only events after this seq")
    ev.add_argument("--follow", "-f", action="store_true", help="keep streaming live events")
    _control_parsers(sub, common)
    imp = sub.add_parser(
        "import-keepalived",
        help="convert a keepalived.conf to a vigil config (local, no agent needed)",
    )
    imp.add_argument("file", help="keepalived.conf to convert")
    imp.add_argument(
        "--output",
        "-o",
        dest="format",
        choices=("yaml", "json"),
        default=None,
        help="output format (default yaml)",
    )
    return p


def _control_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """The verified runtime control commands (each waits for its observed effect)."""
    wait_help = "seconds to wait for the effect (default: from the advert interval)"
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
    pr = sub.add_parser(
        "priority",
        parents=[common],
        help="priority INSTANCE VALUE [--for DURATION] | INSTANCE --clear: runtime override",
    )
    pr.add_argument("instance")
    pr.add_argument("value", nargs="?", type=_priority, help="1..254")
    pr.add_argument("--for", dest="duration", type=_duration, help="expire after (30s, 5m, 1h)")
    pr.add_argument("--clear", action="store_true", help="drop the override")
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
    to = sub.add_parser(
        "takeover", parents=[common], help="takeover INSTANCE: this backup becomes master"
    )
    to.add_argument("instance")
    to.add_argument(
        "--timeout", dest="action_timeout", type=_duration, metavar="SECONDS", help=wait_help
    )
    ga = sub.add_parser(
        "garp", parents=[common], help="garp INSTANCE: resend gratuitous ARP / NA (master only)"
    )
    ga.add_argument("instance")


def _duration(text: str) -> float:
    from vigil.vrrp.control import parse_duration

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


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are 2, --help/--version are 0
        return int(exc.code or 0)
    args.output = getattr(args, "output", "table")
    if args.command == "import-keepalived":
        return import_keepalived(args, out, err)
    if args.command == "priority" and (args.value is None) == (not args.clear):
        err.write(
            "vigilctl priority: give either VALUE (1..254, optionally --for DURATION) or --clear\n"
        )
        return EXIT_USAGE
    if args.command == "priority" and args.clear and args.duration is not None:
        err.write("vigilctl priority: --for goes with a VALUE, not with --clear\n")
        return EXIT_USAGE
    socket_path = getattr(args, "socket", None) or os.environ.get("VIGIL_SOCKET") or DEFAULT_SOCKET
    ctl = Ctl(ApiClient(socket_path, timeout=args.timeout), args.output, out, err)
    try:
        rc: int = getattr(ctl, args.command.replace("-", "_"))(args)
        return rc
    except ApiUnreachable as exc:
        err.write(f"vigilctl: {exc.message}\n")
        return EXIT_UNREACHABLE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
