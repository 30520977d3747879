"""The journal's file format, apart from :mod:`vigil.journal` (which needs asyncio) so
:mod:`vigil.faststart` can record entries before the rest of the agent is imported.

A namespace's file is ``STATE_DIR/<namespace>-journal.json``:
``{"version": 2, "entries": {key: entry}}``, written whole to a temporary file and renamed.
``json`` is imported when it is needed (under the IPVS lab's emulation, importing it
costs the start plan a third of a second).
"""

from __future__ import annotations

import contextlib
import os

SUFFIX = "-journal.json"
VERSION = 2
#: the text of a journal without entries (what :func:`render` gives for {})
EMPTY = b'{\n "entries": {},\n "version": 2\n}'


def path_of(state_dir: str | os.PathLike[str], namespace: str) -> str:
    return os.path.join(os.fspath(state_dir), f"{namespace}{SUFFIX}")


def read_entries(path: str | os.PathLike[str]) -> dict[str, object]:
    """The entries of a journal file; {} when it does not exist. Raises OSError or
    ValueError (with the reason) when it cannot be read or is damaged."""
    import json

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


def render(entries: dict[str, object]) -> bytes:
    """The file's whole text for ``entries``."""
    import json

    data = {"version": VERSION, "entries": dict(sorted(entries.items()))}
    return json.dumps(data, indent=1, sort_keys=True).encode()


def write_entries(path: str | os.PathLike[str], entries: dict[str, object]) -> None:
    """Write ``entries`` whole (temporary file, then rename); OSError leaves the old file."""
    write_raw(path, render(entries))


def write_raw(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a rendered journal (:func:`render`) whole, through ``<name>.tmp`` and a
    rename; OSError leaves the old file. (The IPVS start plan is written so too.)

    No fsync: the journal guards against a crash of the *process* (a SIGKILLed agent's
    VIPs stay in the kernel), which the page cache survives; after a power loss or kernel
    crash the VIPs are gone from the kernel anyway. An fsync here cost 8-17 ms on the
    event loop before every VIP add (measured in the failover benchmark; see the history
    of docs/benchmarks.md).
    """
    base, _ = os.path.splitext(os.fspath(path))
    tmp = base + ".tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
