"""Track files (keepalived ``track_file``): an integer in a file moves the priority.

Another program (a deploy script, a health daemon) writes a number; the effect is the
number times the tracking weight (see :func:`vigil.track.base.file_effect`). The file is
polled once a second with ``stat`` (cheap) and only read when its identity, size or mtime
changed. A missing, unreadable or non-numeric file counts as value 0 and shows the tracker
FAILED with the reason, so an operator sees the typo instead of a silent zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import Any

from vigil.track.base import Effect, Tracker, TrackerState, file_effect
from vigil.track.config import TrackFileConfig

POLL_INTERVAL = 1.0
MAX_READ = 4096
_NUMBER = re.compile(r"\s*([+-]?\d+)")


def parse_value(text: str) -> int | None:
    """The leading integer of the file (as keepalived's strtol reads it), or None."""
    match = _NUMBER.match(text)
    return int(match.group(1)) if match else None


class FileTracker(Tracker):
    """One track file; ``value`` is what it holds now (0 when it cannot be read)."""

    kind = "file"

    def __init__(self, cfg: TrackFileConfig, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.value = 0
        self.poll_interval = poll_interval
        self._stamp: tuple[int, int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def effect(self, weight: int, reverse: bool = False) -> Effect:
        return file_effect(self.value, weight, reverse)

    async def start(self) -> None:
        if self.cfg.init_file is not None and not os.path.exists(self.cfg.file):
            try:
                with open(self.cfg.file, "x") as fh:
                    fh.write(f"{self.cfg.init_file}\n")
            except OSError as exc:
                self.reason = f"cannot create {self.cfg.file} (init_file): {exc.strerror}"
        self.poll(force=True)
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"track-file-{self.name}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.poll()

    def poll(self, force: bool = False) -> None:
        """Re-read the file if it changed since the last look."""
        path = self.cfg.file
        try:
            st = os.stat(path)
        except OSError as exc:
            self._stamp = None
            self._update(None, f"cannot read {path}: {exc.strerror}", force)
            return
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        try:
            with open(path, "rb") as fh:
                text = fh.read(MAX_READ).decode("utf-8", "replace")
        except OSError as exc:
            self._update(None, f"cannot read {path}: {exc.strerror}", force)
            return
        value = parse_value(text)
        if value is None:
            shown = text.strip()[:40]
            self._update(None, f"{path} does not hold an integer ({shown!r}); counted as 0", force)
        else:
            self._update(value, f"{path} holds {value}", force)

    def _update(self, value: int | None, reason: str, force: bool) -> None:
        state = TrackerState.OK if value is not None else TrackerState.FAILED
        new_value = value if value is not None else 0
        changed = state is not self.state or new_value != self.value
        self.reason = reason
        self.value = new_value
        self.state = state
        if changed and not force:
            self._notify()

    def details(self) -> dict[str, Any]:
        return {"file": self.cfg.file, "value": self.value}
