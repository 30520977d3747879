"""A small on-disk journal of the addresses and routes this agent has put in the kernel.

Why: a VIP outlives a crashed agent (SIGKILL leaves it on the interface), so a restarted
agent, or systemd's ExecStopPost, must be able to remove what its predecessor added
without guessing. The journal records an instance's addresses *before* they are added
and drops them only *after* they are removed, so it may name an address that is not in
the kernel (harmless: removal is idempotent) but never misses one that is. The runtime
records every VIP and route of an instance when the instance starts (and a reload's new
ones when it is applied) and drops them when the instance stops or a reload removes them,
so the failover path, Master_Down to the first GARP/NA, never waits for this file.

Changes are written together: inside a running event loop, ``record`` and ``forget``
write the file WRITE_DELAY later, once for all the changes made meanwhile (starting or
stopping 50 instances writes it once, not 50 times). Whoever adds to the kernel calls
``flush()`` first, which writes at once if anything is pending, and adds nothing unless
it returns True, so the guarantee above holds whatever the delay; the agent flushes
again when it stops. A write that fails (full or read-only state dir) leaves the changes
pending and says why in ``error`` until a later write succeeds: journal first, so a VIP
the journal could not name is not added (issue 15).

The file is JSON, written atomically (temp file + rename, no fsync: see ``_write``) in the
state dir::

    {"version": 1, "instances": {"VI_1": {"addresses": [["eth0", "10.0.0.100/24"]],
                                          "routes": [{"to": ..., ...}]}}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from vigil.log import RateLimitedLog
from vigil.net.netlink import IPInterface, RouteSpec

log = logging.getLogger("vigil.vrrp.journal")
_write_log = RateLimitedLog(log)

JOURNAL_NAME = "vrrp-journal.json"
#: How long changes wait to be written together (seconds); ``flush()`` does not wait.
WRITE_DELAY = 0.05


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
        self._pending = False
        self._timer: asyncio.TimerHandle | None = None
        self.writes = 0  # files written, for tests and curiosity
        self.failures = 0  # writes that failed (a metric)
        #: why the last write failed, until one succeeds
        self.error: str | None = None

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
        self._changed()

    def forget(self, name: str) -> None:
        if self.entries.pop(name, None) is not None:
            self._changed()

    def clear(self) -> None:
        self.entries = {}
        self._changed()

    @property
    def pending(self) -> bool:
        """Changes not written yet."""
        return self._pending

    def flush(self) -> bool:
        """Write pending changes now; True when the file holds every change recorded.

        Called before anything is added to the kernel, which must not happen on False.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._pending = not self._write()
        return not self._pending

    def write_now(self) -> bool:
        """Write the file now whether or not anything changed; True if it was written."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = not self._write()
        return not self._pending

    def _changed(self) -> None:
        self._pending = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()  # no loop (a command-line tool): nothing to batch with
            return
        if self._timer is None:
            self._timer = loop.call_later(WRITE_DELAY, self.flush)

    def _write(self) -> bool:
        self.writes += 1
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
            self.failures += 1
            self.error = f"cannot write {self.path}: {exc.strerror or exc}"
            _write_log.error("write", "vrrp: journal: %s", self.error)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        if self.error is not None:
            log.info("vrrp: journal %s written again", self.path)
            self.error = None
        return True
