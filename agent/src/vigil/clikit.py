"""What every ``vigilctl`` command group shares: the client, output, tables, exit codes.

The frame (``vigil.cli``) owns the core commands (status, health, config, reload, events,
import-keepalived); each subsystem adds its own command group through a :class:`CliGroup`
(``SubsystemSpec.cli``), which also renders its section of ``vigilctl status`` and of a
reload's diff.

Exit codes are part of the interface (scripts and the Ansible role rely on them):
0 ok, 1 the API answered with an error (message printed), 2 usage, 3 vigild unreachable.
Output is a plain aligned table for people or JSON (``-o json``) for programs; the JSON is
exactly the API's body.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TextIO

from vigil.client import ApiClient, error_message

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliGroup",
    "Ctl",
    "kv",
    "table",
    "when",
]

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


def names_diff_table(what: str, diff: dict[str, Any]) -> str:
    """A reload diff of named items (``added``/``removed``/``changed``/``unchanged``) as a
    two-column table headed ``what``; empty when the diff has none of those keys."""
    rows = [
        (key, ", ".join(map(str, diff.get(key) or [])) or "-")
        for key in ("added", "removed", "changed", "unchanged")
        if key in diff
    ]
    return table((what, "NAMES"), rows) if rows else ""


def when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return str(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
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

    def control(
        self,
        path: str,
        body: dict[str, Any],
        wait: float | None,
        line: Any,
        observed_text: Any = None,
    ) -> int:
        """POST a verified control action; the request waits as long as the action may.

        ``line(result)`` renders one result for people; ``observed_text(snapshot)`` the
        state the agent observed when an action failed.
        """
        self.client.timeout = max(self.client.timeout, (wait or 60.0) + 10.0)
        status, resp = self.client.post(path, body)
        if status != 200 or not isinstance(resp, dict):
            if isinstance(resp, dict) and self.output != "json":
                observed = (resp.get("error") or {}).get("observed")
                self.err.write(f"vigilctl: {error_message(status, resp)}\n")
                if isinstance(observed, dict) and observed_text is not None:
                    self.err.write(kv([("observed", observed_text(observed))]))
                return EXIT_API_ERROR
            return self._fail(status, resp)
        if self.output == "json":
            self._json(resp)
            return EXIT_OK
        for result in resp.get("results") or [resp]:
            self.out.write(line(result))
        return EXIT_OK


class CliGroup(Protocol):
    """A subsystem's part of vigilctl (``SubsystemSpec.cli``).

    - ``add_commands(sub, common)``: add its subcommands to ``vigilctl NAME ...``; each
      sets ``func`` (``(ctl, args) -> exit code``) with ``parser.set_defaults``.
    - ``aliases``: those of its commands also offered at the top level, for commands that
      were there before subsystems had groups (``vigilctl handover VI_1``).
    - ``status_text(section)``: its part of ``vigilctl status`` for people.
    - ``diff_text(diff)``: its part of ``vigilctl reload``'s summary.
    """

    name: str
    help: str
    aliases: tuple[str, ...]

    def add_commands(self, sub: Any, common: argparse.ArgumentParser) -> None: ...

    def status_text(self, section: dict[str, Any]) -> str: ...

    def diff_text(self, diff: dict[str, Any]) -> str: ...


def json_dump(data: Any, out: TextIO) -> None:
    json.dump(data, out, indent=2, sort_keys=False)
    out.write("\n")
