"""``vigild --check``: validate a config file and print the verdict for a person or a tool."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from .errors import ConfigError
from .loader import load_config
from .model import Config
from .section import ConfigSection

__all__ = ["check_command", "summary_text"]


def _counts(config: Config, counted: Sequence[ConfigSection]) -> dict[str, tuple[int, str]]:
    return {
        section.name: section.summary(config.sections[section.name])
        for section in counted
        if section.name in config.sections
    }


def summary_text(config: Config, counted: Sequence[ConfigSection]) -> str:
    """``2 VRRP instances, 3 virtual servers``: what the config runs, section by section."""
    parts = [f"{n} {what}" for n, what in _counts(config, counted).values() if n]
    return ", ".join(parts) or "nothing configured"


def check_command(
    path: str,
    fmt: str = "text",
    out: TextIO | None = None,
    *,
    sections: Sequence[ConfigSection],
    counted: Sequence[ConfigSection] = (),
    check_files: bool = True,
    accepted: Callable[[Config], None] | None = None,
) -> int:
    """Validate ``path``; print ``FILE: OK (2 VRRP instances)`` or every issue. 0 ok, 1 not.

    ``counted`` are the sections whose size the verdict names (the subsystems').
    ``fmt="json"`` prints ``{"valid": ..., "file": ..., "errors": [...], "counts": {...}}``
    for tools such as the Ansible collection. ``accepted`` is called with a valid config
    before the verdict is printed (it must not raise).
    """
    stream = out if out is not None else sys.stdout
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown format {fmt!r}; use 'text' or 'json'")
    try:
        config = load_config(path, sections=sections, check_files=check_files)
    except ConfigError as exc:
        if fmt == "json":
            payload = {"valid": False, "file": path, "errors": [i.to_dict() for i in exc.issues]}
            stream.write(json.dumps(payload, indent=2) + "\n")
        else:
            for issue in exc.issues:
                stream.write(f"{issue}\n")
        return 1
    except Exception as exc:  # a loader bug: say so plainly, never a traceback
        message = f"cannot check the config: {exc!r}"
        if fmt == "json":
            error = {"path": "", "message": message, "line": None, "file": path}
            payload = {"valid": False, "file": path, "errors": [error]}
            stream.write(json.dumps(payload, indent=2) + "\n")
        else:
            stream.write(f"{path}: {message}\n")
        return 1
    if accepted is not None:
        accepted(config)
    if fmt == "json":
        counts = {name: n for name, (n, _what) in _counts(config, counted).items()}
        payload = {"valid": True, "file": path, "errors": [], "counts": counts}
        stream.write(json.dumps(payload, indent=2) + "\n")
    else:
        stream.write(f"{path}: OK ({summary_text(config, counted)})\n")
    return 0
