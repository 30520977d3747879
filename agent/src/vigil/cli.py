"""vigilctl: talk to a running vigild over its Unix socket.

The core commands live here (status, health, config, reload, events, import-keepalived);
each subsystem adds a command group (``vigilctl vrrp handover VI_1``) through its
``SubsystemSpec.cli``, and may keep some commands at the top level as they were before
groups existed (``vigilctl handover VI_1``). Exit codes and output formats: see
:mod:`vigil.clikit`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from vigil import __version__
from vigil.client import DEFAULT_SOCKET, ApiClient, ApiError, ApiUnreachable
from vigil.clikit import (
    EXIT_API_ERROR,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliGroup,
    Ctl,
    kv,
    table,
    when,
)

__all__ = ["EXIT_API_ERROR", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "main", "table"]


def load_groups() -> dict[str, CliGroup]:
    """Every subsystem's command group, by subsystem name (see vigil.subsystems)."""
    from vigil import subsystems

    groups: dict[str, CliGroup] = {}
    for spec in subsystems.specs():
        group = spec.load_cli()
        if group is not None:
            groups[spec.name] = group
    return groups


class _Only:
    """A subparsers action that lets one named command through (for top-level aliases)."""

    def __init__(self, sub: Any, name: str) -> None:
        self.sub = sub
        self.name = name

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name == self.name:
            parser: argparse.ArgumentParser = self.sub.add_parser(name, **kwargs)
            return parser
        return argparse.ArgumentParser(add_help=False)  # built and dropped


class CoreCtl(Ctl):
    """The core commands; subsystem commands are functions their groups register."""

    def __init__(
        self,
        client: ApiClient,
        output: str,
        out: TextIO,
        err: TextIO,
        groups: dict[str, CliGroup] | None = None,
    ) -> None:
        super().__init__(client, output, out, err)
        self.groups = groups or {}

    def health(self, args: argparse.Namespace) -> int:
        status, body = self.client.get("/v1/health")
        if status not in (200, 503) or not isinstance(body, dict):
            return self._fail(status, body)
        if self.output == "json":
            self._json(body)
        else:
            self.out.write(
                kv(
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
            kv(
                [
                    ("router_id", agent.get("router_id")),
                    ("phase", agent.get("phase")),
                    ("version", agent.get("version")),
                    ("pid", agent.get("pid")),
                    ("uptime", f"{agent.get('uptime_s')}s"),
                    ("config", agent.get("config_source")),
                    ("loaded", when(agent.get("config_loaded_at"))),
                    ("sched", _scheduling_text(agent.get("scheduling"))),
                ]
            )
        )
        for name, section in body.items():
            if name == "agent" or not isinstance(section, dict):
                continue
            group = self.groups.get(name)
            self.out.write("\n")
            if group is not None:
                self.out.write(group.status_text(section))
            else:
                self.out.write(f"{name}:\n")
                self.out.write(json.dumps(section, indent=2) + "\n")
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
        self.out.write(f"# loaded: {when(body.get('loaded_at'))}\n")
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
        for name, section in diff.items():
            group = self.groups.get(name)
            if group is not None and isinstance(section, dict):
                self.out.write(group.diff_text(section))
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
                when(e.get("time")),
                e.get("kind"),
                e.get("instance") or "-",
                e.get("message"),
            )
            for e in body
        ]
        self.out.write(table(("SEQ", "TIME", "KIND", "INSTANCE", "MESSAGE"), rows))
        return EXIT_OK


def _scheduling_text(view: Any) -> str:
    """``rr 10``, ``other``, or ``other (why global.realtime_priority is not in force)``."""
    if not isinstance(view, dict):
        return "unknown"
    text = str(view.get("policy", "unknown"))
    if view.get("priority"):
        text += f" {view['priority']}"
    if view.get("problem"):
        text += f" ({view['problem']})"
    return text


def _event_line(e: dict[str, Any]) -> str:
    inst = e.get("instance") or "-"
    return f"{e.get('seq')}  {when(e.get('time'))}  {e.get('kind')}  {inst}  {e.get('message')}\n"


def import_keepalived(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Convert a keepalived.conf; runs locally, needs no agent."""
    try:
        from vigil.keepalived import import_main
    except ImportError:
        err.write(
            "vigilctl: import-keepalived is not available in this build "
            "(vigil.keepalived.import_main is missing)\n"
        )
        return EXIT_API_ERROR
    fmt = args.format or ("json" if args.output == "json" else "yaml")
    return int(import_main(args.file, out, err, fmt))


def build_parser(groups: dict[str, CliGroup]) -> argparse.ArgumentParser:
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
    sub.add_parser("status", parents=[common], help="the agent and every subsystem's state")
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
    for group in groups.values():
        gp = sub.add_parser(group.name, parents=[common], help=group.help)
        group_sub = gp.add_subparsers(dest="group_command", metavar="COMMAND", required=True)
        group.add_commands(group_sub, common)
        for alias in group.aliases:
            # today's top-level commands keep working (vigilctl handover VI_1)
            group.add_commands(_Only(sub, alias), common)
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
    from vigil.subsystems import PLUGINS_ENV, RegistryError

    try:
        groups = load_groups()
    except RegistryError as exc:
        err.write(f"vigilctl: {exc}; check {PLUGINS_ENV}\n")
        return EXIT_USAGE
    parser = build_parser(groups)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are 2, --help/--version are 0
        return int(exc.code or 0)
    args.output = getattr(args, "output", "table")
    if args.command == "import-keepalived":
        return import_keepalived(args, out, err)
    check = getattr(args, "check", None)
    if check is not None:
        problem = check(args)
        if problem:
            err.write(f"vigilctl {args.command}: {problem}\n")
            return EXIT_USAGE
    socket_path = getattr(args, "socket", None) or os.environ.get("VIGIL_SOCKET") or DEFAULT_SOCKET
    ctl = CoreCtl(ApiClient(socket_path, timeout=args.timeout), args.output, out, err, groups)
    try:
        func = getattr(args, "func", None)
        rc: int = func(ctl, args) if func is not None else getattr(ctl, args.command)(args)
        return rc
    except ApiUnreachable as exc:
        err.write(f"vigilctl: {exc.message}\n")
        return EXIT_UNREACHABLE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
