"""``vigilctl import-keepalived FILE``: convert, validate with vigil's schema, render YAML."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import yaml

from vigil import subsystems
from vigil.config import ConfigError
from vigil.keepalived.convert import ImportResult, import_keepalived
from vigil.keepalived.parser import KeepalivedParseError

__all__ = ["import_main", "render_yaml", "validation_errors"]


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with indented lists, no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _comment(text: str) -> str:
    return "\n".join(f"# {line}".rstrip() for line in text.splitlines() or [""])


def render_yaml(result: ImportResult) -> str:
    """The imported config as YAML, headed by comments naming the source and what was lost.

    Deterministic: same keepalived input, same bytes out.
    """
    head = [f"# vigil config imported from {result.source} by vigilctl import-keepalived."]
    if len(result.files) > 1:
        head.append("# Files read: " + ", ".join(result.files))
    if result.unsupported:
        head.append("# Not carried over:")
        head.extend(_comment(f"  {u}") for u in result.unsupported)
    if result.notes:
        head.append("# Notes:")
        head.extend(_comment(f"  {n}") for n in result.notes)
    if result.errors:
        head.append("# Could not convert:")
        head.extend(_comment(f"  {e}") for e in result.errors)
    body = yaml.dump(
        result.config,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return "\n".join(head) + "\n" + body


def validation_errors(result: ImportResult) -> list[str]:
    """Validate the imported config with vigil's own schema; one located line per issue."""
    try:
        subsystems.validate_data(result.config, source=result.source, check_files=False)
    except ConfigError as exc:
        out = []
        for issue in exc.issues:
            where = result.origin_of(issue.path)
            prefix = f"{where[0]}:{where[1]}: " if where else ""
            out.append(
                f"{prefix}{issue.path}: {issue.message}"
                if issue.path
                else f"{prefix}{issue.message}"
            )
        return out
    return []


def import_main(
    path: str, out: TextIO | None = None, err: TextIO | None = None, fmt: str = "yaml"
) -> int:
    """`vigilctl import-keepalived FILE`: 0 valid, 1 invalid result, 2 unreadable input."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        result = import_keepalived(path)
    except KeepalivedParseError as exc:
        if fmt == "json":
            failed: dict[str, Any] = {
                "config": None,
                "unsupported": [],
                "notes": [],
                "errors": [str(exc)],
            }
            out.write(json.dumps(failed, indent=2) + "\n")
        err.write(f"{exc}\n")
        return 2
    errors = result.errors + validation_errors(result)
    if fmt == "json":
        doc: dict[str, Any] = {
            "config": result.config,
            "unsupported": [u.to_dict() for u in result.unsupported],
            "notes": list(result.notes),
            "errors": errors,
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(render_yaml(result))
    for item in result.unsupported:
        err.write(f"{item}\n")
    for problem in errors:
        err.write(f"{problem}\n")
    return 1 if errors else 0
