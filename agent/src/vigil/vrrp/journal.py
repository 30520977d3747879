"""A small on-disk journal of the addresses and routes this agent has put in the kernel.

Why: a VIP outlives a crashed agent (SIGKILL leaves it on the interface), so a restarted
agent, or systemd's ExecStopPost, must be able to remove what its predecessor added
without guessing. The journal records an instance's addresses *before* they are added
and drops them only *after* they are removed, so it may name an address that is not in
the kernel (harmless: removal is idempotent) but never misses one that is. The runtime
records every VIP and route of an instance when the instance starts (and a reload's new
ones when it is applied) and drops them when the instance stops or a reload removes them,
so the failover path, Master_Down to the first GARP/NA, never waits for this file.

The file is JSON, written atomically (temp file + rename, no fsync: see ``_write``) in the
state dir::

    {"version": 1, "instances": {"VI_1": {"addresses": [["eth0", "10.0.0.100/24"]],
                                          "routes": [{"to": ..., ...}]}}}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from vigil.net.netlink import IPInterface, RouteSpec

log = logging.getLogger("vigil.vrrp.journal")

JOURNAL_NAME = "vrrp-journal.json"


@dataclass
class JournalEntry:
    """What one instance may have in the kernel."""

    addresses: list[tuple[str, IPInterface]] = field(default_factory=list)
    routes: list[RouteSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "addresses": [[dev, str(addr)] for dev, addr in self.addresses],
            "routes": [
                {
                    "to": str(r.to),
                    "via": None if r.via is None else str(r.via),
                    "dev": r.dev,
                    "src": None if r.src is None else str(r.src),
                    "metric": r.metric,
                    "table": r.table,
                    "scope": r.scope,
                }
                for r in self.routes
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JournalEntry:
        entry = cls()
        for dev, addr in data.get("addresses", []):
            entry.addresses.append((str(dev), ip_interface(addr)))
        for route in data.get("routes", []):
            entry.routes.append(RouteSpec.parse(**route))
        return entry


class Journal:
    """The journal file of one agent (one state dir)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / JOURNAL_NAME
        self.entries: dict[str, JournalEntry] = {}

    def load(self) -> dict[str, JournalEntry]:
        """Read what a predecessor left; a damaged file is logged and treated as empty."""
        try:
            raw = json.loads(self.path.read_text())
            self.entries = {
                name: JournalEntry.from_dict(data)
                for name, data in raw.get("instances", {}).items()
            }
        except FileNotFoundError:
            self.entries = {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("vrrp: ignoring unreadable journal %s: %s", self.path, exc)
            self.entries = {}
        return self.entries

    def record(self, name: str, entry: JournalEntry) -> None:
        self.entries[name] = entry
        self._write()

    def forget(self, name: str) -> None:
        if self.entries.pop(name, None) is not None:
            self._write()

    def clear(self) -> None:
        self.entries = {}
        self._write()

    def _write(self) -> None:
        data = {
            "version": 1,
            "instances": {name: e.to_dict() for name, e in sorted(self.entries.items())},
        }
        tmp = self.path.with_suffix(".tmp")
        try:
            # No fsync: the journal guards against a crash of the *process* (a SIGKILLed
            # agent's VIPs stay in the kernel), which the page cache survives; after a power
            # loss or kernel crash the VIPs are gone from the kernel anyway. An fsync here
            # cost 8-17 ms on the event loop before every VIP add (docs/benchmarks.md).
            with open(tmp, "w") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("vrrp: cannot write journal %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
