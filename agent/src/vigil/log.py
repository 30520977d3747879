"""Logging set-up for vigild: one line per record on stderr.

Under systemd (JOURNAL_STREAM names our stderr) journald adds its own timestamps and
reads a `<N>` syslog priority prefix, so we print `<N>` and no timestamp; elsewhere we
print an ISO timestamp and the level name. Either way the line names the logger's
subject, e.g. `(VI_1) BACKUP -> MASTER: ...` (see vigil.events).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = [
    "LEVELS",
    "JournalFormatter",
    "RateLimitedLog",
    "parse_level",
    "setup_logging",
    "under_journald",
]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def parse_level(name: str) -> int:
    """'info' -> logging.INFO; raises ValueError naming the allowed values."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}; use one of: {', '.join(LEVELS)}") from None


def under_journald(stream: TextIO) -> bool:
    """True when JOURNAL_STREAM names this very stream (not just an inherited variable)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalFormatter(logging.Formatter):
    """`<6>message`: priority prefix journald understands, no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


QUIET_LOGGERS = ("aiohttp.access", "pyroute2", "asyncio")


def setup_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Configure the root logger once for the daemon (replaces earlier handlers)."""
    stream = stream or sys.stderr
    if isinstance(level, str):
        level = parse_level(level)
    handler = logging.StreamHandler(stream)
    if under_journald(stream):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log is noise on a local control socket, and pyroute2 logs every
    # netlink message at DEBUG: keep both out of vigild's own debug output. pyroute2 resets
    # its logger's level when it is first imported, so import it before quieting it.
    import pyroute2.config.log  # noqa: F401

    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_level(level: int | str) -> None:
    """Change the level after start (config reload of global.log_level)."""
    if isinstance(level, str):
        level = parse_level(level)
    logging.getLogger().setLevel(level)


class RateLimitedLog:
    """One line per burst for messages that someone outside the agent can cause.

    The first message of a key is logged at once; more of the same key within
    ``interval`` seconds are counted, not logged, and when the interval has passed a
    summary line says how many were left out (from a timer inside an event loop, so a
    burst that ends is still reported; otherwise with the next message). A flood of
    malformed requests or refused connections thus costs two lines per interval, not one
    per request.

    A caller that also reports the first message elsewhere (an event) passes
    ``on_summary``: it is called with the count when the summary line is written, so the
    end of a burst reaches that audience too.
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, tuple[int, int, str]] = {}  # key -> (count, level, text)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._on_summary: dict[str, Callable[[int], None]] = {}

    def warning(
        self, key: str, msg: str, *args: Any, on_summary: Callable[[int], None] | None = None
    ) -> bool:
        return self.log(logging.WARNING, key, msg, *args, on_summary=on_summary)

    def error(self, key: str, msg: str, *args: Any, exc_info: bool = False) -> bool:
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)

    def log(
        self,
        level: int,
        key: str,
        msg: str,
        *args: Any,
        exc_info: bool = False,
        on_summary: Callable[[int], None] | None = None,
    ) -> bool:
        """Log now (with the traceback if ``exc_info``), or count it; True when logged."""
        now = time.monotonic()
        last = self._last.get(key)
        if on_summary is not None:
            self._on_summary[key] = on_summary
        if last is not None and now - last < self.interval:
            count, _, _ = self._suppressed.get(key, (0, level, ""))
            text = msg % args if args else msg
            self._suppressed[key] = (count + 1, level, text)
            self._arm(key, last + self.interval - now)
            return False
        self._flush(key)
        self._last[key] = now
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def _arm(self, key: str, delay: float) -> None:
        if key in self._timers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next message reports the count
        self._timers[key] = loop.call_later(max(0.0, delay), self._flush, key)

    def _flush(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        count, level, text = self._suppressed.pop(key, (0, logging.INFO, ""))
        if not count:
            return
        self._last[key] = time.monotonic()
        if count == 1:
            self.logger.log(level, "%s", text)
        else:
            self.logger.log(
                level, "%s (and %d more like it within %gs)", text, count - 1, self.interval
            )
        report = self._on_summary.get(key)
        if report is not None:
            try:
                report(count)
            except Exception:  # a report must not break the logging path
                self.logger.debug("summary report for %s failed", key, exc_info=True)
