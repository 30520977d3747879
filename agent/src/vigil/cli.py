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
                i.get("state"),
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
        status, body = self.client.post("/v1/reload")
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


def _vip_text(vip: Any) -> str:
    """A VIP of /v1/status: `{address, dev, present}` (or a plain string) as text."""
    if isinstance(vip, dict):
        return str(vip.get("address"))
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
    sub.add_parser("reload", parents=[common], help="reread the config file (like SIGHUP)")
    ev = sub.add_parser("events", parents=[common], help="recent events; --follow to stream")
    ev.add_argument("--since", type=_nonneg, help="only events after this seq")
    ev.add_argument("--follow", "-f", action="store_true", help="keep streaming live events")
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
