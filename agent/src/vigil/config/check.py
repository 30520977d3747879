"""``vigild --check``: validate a config file and print the verdict for a person or a tool."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from .errors import ConfigError
from .loader import load_config


def check_command(
    path: str, fmt: str = "text", out: TextIO | None = None, *, check_files: bool = True
) -> int:
    """Validate ``path``; print ``FILE: OK (N VRRP instances)`` or every issue. 0 ok, 1 not.

    ``fmt="json"`` prints ``{"valid": ..., "file": ..., "errors": [...]}`` (with
    ``vrrp_instances`` counted when valid) for tools such as the Ansible collection.
    """
    stream = out if out is not None else sys.stdout
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown format {fmt!r}; use 'text' or 'json'")
    try:
        config = load_config(path, check_files=check_files)
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
    count = len(config.vrrp_instances)
    if fmt == "json":
        payload = {"valid": True, "file": path, "errors": [], "vrrp_instances": count}
        stream.write(json.dumps(payload, indent=2) + "\n")
    else:
        noun = "VRRP instance" if count == 1 else "VRRP instances"
        stream.write(f"{path}: OK ({count} {noun})\n")
    return 0
