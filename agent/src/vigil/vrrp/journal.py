"""VRRP's journal: the VIPs and routes each instance may have in the kernel.

The journal itself (one namespace per subsystem, batched atomic writes, "record before
adding, forget after removing") is :mod:`vigil.journal`; this module gives VRRP's
namespace its typed entries and is VRRP's clean-up hook: :func:`cleanup` removes what a
crashed predecessor left, at start-up and for ``vigild --cleanup`` alike. The runtime
records every VIP and route of an instance when the instance starts (and a reload's new
ones when it is applied) and drops them when the instance stops or a reload removes them,
so the failover path, Master_Down to the first GARP/NA, never waits for this file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from vigil.journal import WRITE_DELAY, CleanupReport, JournalNamespace, JournalWriteError
from vigil.net.netlink import IPInterface, RouteSpec

log = logging.getLogger("vigil.vrrp.journal")

__all__ = ["JOURNAL_NAME", "WRITE_DELAY", "Journal", "JournalEntry", "cleanup"]

NAMESPACE = "vrrp"
JOURNAL_NAME = f"{NAMESPACE}-journal.json"


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
    """VRRP's namespace of the journal, with typed entries (one per instance)."""

    def __init__(self, where: Path | JournalNamespace) -> None:
        self.ns = (
            where
            if isinstance(where, JournalNamespace)
            else JournalNamespace(Path(where), NAMESPACE)
        )
        self.entries: dict[str, JournalEntry] = self._parse(self.ns.entries)

    @property
    def path(self) -> Path:
        return self.ns.path

    @property
    def writes(self) -> int:
        return self.ns.writes

    @property
    def pending(self) -> bool:
        return self.ns.pending

    @property
    def failures(self) -> int:
        """Writes that failed (a metric)."""
        return self.ns.failures

    @property
    def error(self) -> str | None:
        """Why the last write failed, until one succeeds."""
        return self.ns.error

    @staticmethod
    def _parse(raw: dict[str, Any]) -> dict[str, JournalEntry]:
        entries: dict[str, JournalEntry] = {}
        for name, data in raw.items():
            try:
                entries[name] = JournalEntry.from_dict(data)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                log.warning("vrrp: ignoring a damaged journal entry for %s: %s", name, exc)
        return entries

    def adopt(self) -> None:
        """Take the namespace's entries as they are now (after the agent's clean-up ran on
        them: what could not be removed stays, and later records add to it)."""
        self.entries = self._parse(dict(self.ns.entries))

    def load(self) -> dict[str, JournalEntry]:
        """Read what a predecessor left; a damaged file is logged and treated as empty."""
        self.entries = self._parse(self.ns.load())
        return self.entries

    def record(self, name: str, entry: JournalEntry) -> None:
        self.entries[name] = entry
        self.ns.record(name, entry.to_dict())

    def forget(self, name: str) -> None:
        self.entries.pop(name, None)
        self.ns.forget(name)

    def clear(self) -> None:
        self.entries = {}
        self.ns.clear()

    def flush(self) -> bool:
        """Write pending changes now; True when the file holds every change recorded.

        Called before anything is added to the kernel, which must not happen on False
        (journal first: a VIP the journal could not name is not added). A failed write
        keeps its changes pending and says why in ``error`` until a write succeeds.
        """
        try:
            self.ns.flush()
        except JournalWriteError:
            return False
        return True

    def write_now(self) -> bool:
        """Write the file now whether or not anything changed; True if it was written."""
        try:
            self.ns.write_now()
        except JournalWriteError:
            return False
        return True


async def cleanup(ns: JournalNamespace, report: CleanupReport, netns: str | None = None) -> None:
    """Remove every journalled route, then every address; keep what failed in the journal.

    VRRP's clean-up hook (``SubsystemSpec.cleanup``): the agent runs it before VRRP starts,
    and ``vigild --cleanup`` runs it after a crash.
    """
    from vigil.net.netlink import Netlink, NetlinkFailure

    journal = Journal(ns)
    failed: dict[str, JournalEntry] = {}
    async with Netlink(netns) as nl:
        for name, entry in sorted(journal.entries.items()):
            left = JournalEntry()
            for route in entry.routes:
                try:
                    if await nl.del_route(route):
                        report.removed(name, f"route {route}")
                    else:
                        report.already_gone(name, f"route {route}")
                except (NetlinkFailure, OSError) as exc:
                    report.failed(name, f"route {route}", str(exc))
                    left.routes.append(route)
            for dev, addr in entry.addresses:
                try:
                    if await nl.del_address(dev, addr):
                        report.removed(
                            name,
                            f"VIP {addr} on {dev}",
                            kind="vip_cleanup",
                            address=str(addr),
                            dev=dev,
                        )
                    else:
                        report.already_gone(name, f"VIP {addr} on {dev}")
                except (NetlinkFailure, OSError) as exc:
                    report.failed(name, f"VIP {addr} on {dev}", str(exc))
                    left.addresses.append((dev, addr))
            if left.addresses or left.routes:
                failed[name] = left
    journal.clear()
    for name, left in failed.items():
        journal.record(name, left)
