"""The crash journal: what this agent has put in the kernel, one namespace per subsystem.

Why: what an agent adds to the kernel outlives the agent (a SIGKILLed agent's VIPs stay
on the interface, its IPVS services keep forwarding), so a restarted agent, or systemd's
ExecStopPost (``vigild --cleanup``), must be able to remove what its predecessor added
without guessing. Each subsystem records an entry *before* it adds something and drops it
only *after* removing it, so the journal may name something that is not in the kernel
(harmless: removal is idempotent) but never misses something that is. Each subsystem
owns a namespace of JSON-able entries by key and a clean-up hook that reads them
(``SubsystemSpec.cleanup``); the same hook runs at start-up and for ``vigild --cleanup``.

Changes are written together: inside a running event loop, ``record`` and ``forget``
write the file WRITE_DELAY later, once for all the changes made meanwhile (starting 50
instances writes it once, not 50 times). Whoever adds to the kernel calls ``flush()``
first, which writes at once if anything is pending, so the guarantee above holds whatever
the delay; the agent flushes again when it stops.

Each namespace is its own file, ``STATE_DIR/<namespace>-journal.json`` (so a VIP added
by VRRP never rewrites IPVS's thousand entries), JSON, written atomically (temp file +
rename, no fsync: see ``_write``)::

    {"version": 2, "entries": {"VI_1": {"addresses": [...], "routes": [...]}}}

A version 1 file (VRRP's, before namespaces existed) kept its entries under
``"instances"``; it is read the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigil.journalfile import SUFFIX, read_entries, write_entries
from vigil.log import RateLimitedLog

log = logging.getLogger("vigil.journal")
_write_log = RateLimitedLog(log)

__all__ = [
    "WRITE_DELAY",
    "CleanupReport",
    "Journal",
    "JournalNamespace",
    "JournalWriteError",
    "journal_path",
]

#: How long changes wait to be written together (seconds); ``flush()`` does not wait.
WRITE_DELAY = 0.05


def journal_path(state_dir: Path, namespace: str) -> Path:
    return Path(state_dir) / f"{namespace}{SUFFIX}"


class JournalWriteError(OSError):
    """The journal could not be written (full or read-only state dir)."""


class JournalNamespace:
    """One subsystem's journal: JSON-able entries by key, in its own file."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.name = name
        self.path = journal_path(state_dir, name)
        self.entries: dict[str, Any] = {}
        self._pending = False
        self._timer: asyncio.TimerHandle | None = None
        self.writes = 0  # files written, for tests and curiosity
        self.failures = 0  # writes that failed (a metric)
        #: the last write failure, or None once a write succeeded again
        self.last_error: str | None = None
        #: called with the error text when writes start failing, with None when one works
        #: again
        self.on_error: Callable[[str | None], None] | None = None

    def load(self) -> dict[str, Any]:
        """Read what a predecessor left; a damaged file is logged and treated as empty."""
        try:
            self.entries = read_entries(self.path)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("journal: ignoring unreadable %s: %s", self.path, exc)
            self.entries = {}
        return self.entries

    def record(self, key: str, entry: Any) -> None:
        """Note ``entry`` (JSON-able) under ``key``; call ``flush()`` before acting on it."""
        self.entries[key] = entry
        self._changed()

    def forget(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self._changed()

    def clear(self) -> None:
        self.entries = {}
        self._changed()

    @property
    def pending(self) -> bool:
        """Changes not written yet."""
        return self._pending

    @property
    def error(self) -> str | None:
        """Why the last write failed, until one succeeds."""
        return self.last_error

    def flush(self) -> None:
        """Write pending changes now (before anything is added to the kernel).

        Raises JournalWriteError when the file cannot be written; the changes stay
        pending, so the next flush tries again.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._write()
            self._pending = False

    def write_now(self) -> None:
        """Write the file now whether or not anything changed (JournalWriteError if not)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = True
        self._write()
        self._pending = False

    def _changed(self) -> None:
        self._pending = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # no loop (a command-line tool): nothing to batch with; a failure is in
            # ``error`` and the changes stay pending
            with contextlib.suppress(JournalWriteError):
                self.flush()
            return
        if self._timer is None:
            self._timer = loop.call_later(WRITE_DELAY, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        with contextlib.suppress(JournalWriteError):  # logged, and reported via on_error
            self.flush()

    def _write(self) -> None:
        self.writes += 1
        try:
            write_entries(self.path, self.entries)  # (vigil.journalfile: why no fsync)
        except OSError as exc:
            message = f"cannot write the journal {self.path}: {exc.strerror or exc}"
            self.failures += 1
            _write_log.error("write", "journal: %s", message)
            first = self.last_error is None
            self.last_error = message
            if first and self.on_error is not None:
                self.on_error(message)
            raise JournalWriteError(exc.errno or 0, message) from exc
        if self.last_error is not None:
            log.info("journal: %s is writable again", self.path)
            self.last_error = None
            if self.on_error is not None:
                self.on_error(None)


class Journal:
    """The journals of one agent (one state dir): a namespace per subsystem.

    ``on_error(namespace, message)`` is told when a namespace's writes start failing
    (``message``, once per streak of failures) and when they work again (None), whichever
    path wrote: a change batched for later, a flush before acting, a retry.
    """

    def __init__(
        self,
        state_dir: Path,
        on_error: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.namespaces: dict[str, JournalNamespace] = {}
        self.on_error = on_error

    def namespace(self, name: str) -> JournalNamespace:
        if name not in self.namespaces:
            ns = JournalNamespace(self.state_dir, name)
            ns.on_error = lambda message, name=name: self._report(name, message)
            self.namespaces[name] = ns
        return self.namespaces[name]

    def _report(self, name: str, message: str | None) -> None:
        if self.on_error is not None:
            self.on_error(name, message)

    def flush(self) -> None:
        """Write every namespace's pending changes (at stop); failures are logged."""
        for ns in self.namespaces.values():
            with contextlib.suppress(JournalWriteError):
                ns.flush()


class CleanupReport:
    """Where a clean-up hook says what it did: an event at start-up, a line for --cleanup.

    ``removed(key, what, **data)`` for each thing taken out of the kernel,
    ``already_gone(key, what)`` for a journalled thing that was not there any more,
    ``failed(key, what, error)`` for one that could not be removed (it stays journalled).
    """

    def __init__(
        self,
        subsystem: str,
        emit: Callable[[str, str | None, str, dict[str, Any]], None],
    ) -> None:
        self.subsystem = subsystem
        self._emit = emit
        self.failures = 0

    def removed(self, key: str, what: str, kind: str = "cleanup", **data: Any) -> None:
        """``what`` was removed; at start-up this is an event of ``kind`` with ``data``."""
        self._emit(kind, key, f"removed {what}", data)

    def already_gone(self, key: str, what: str) -> None:
        self._emit("", key, f"already gone: {what}", {})

    def failed(self, key: str, what: str, error: str) -> None:
        self.failures += 1
        self._emit("cleanup_failed", key, f"cannot remove {what}: {error}", {})
