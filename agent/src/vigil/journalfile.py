"""The journal's file format, apart from :mod:`vigil.journal` (which needs asyncio) so
:mod:`vigil.faststart` can record entries before the rest of the agent is imported.

A namespace's file is ``STATE_DIR/<namespace>-journal.json``:
``{"version": 2, "entries": {key: entry}}``, written whole to a temporary file and renamed.
"""

from __future__ import annotations

import contextlib
import json
import os

SUFFIX = "-journal.json"
VERSION = 2


def path_of(state_dir: str | os.PathLike[str], namespace: str) -> str:
    return os.path.join(os.fspath(state_dir), f"{namespace}{SUFFIX}")


def read_entries(path: str | os.PathLike[str]) -> dict[str, object]:
    """The entries of a journal file; {} when it does not exist. Raises OSError or
    ValueError (with the reason) when it cannot be read or is damaged."""
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("it is not a JSON object")
    entries = raw.get("entries", raw.get("instances", {}))
    if not isinstance(entries, dict):
        raise ValueError("its entries are not a mapping")
    return dict(entries)


def write_entries(path: str | os.PathLike[str], entries: dict[str, object]) -> None:
    """Write ``entries`` whole (temporary file, then rename); OSError leaves the old file.

    No fsync: the journal guards against a crash of the *process* (a SIGKILLed agent's
    VIPs stay in the kernel), which the page cache survives; after a power loss or kernel
    crash the VIPs are gone from the kernel anyway. An fsync here cost 8-17 ms on the
    event loop before every VIP add (measured in the failover benchmark; see the history
    of docs/benchmarks.md).
    """
    data = {"version": VERSION, "entries": dict(sorted(entries.items()))}
    base, _ = os.path.splitext(os.fspath(path))
    tmp = base + ".tmp"
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
