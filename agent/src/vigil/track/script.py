"""Check scripts (``vrrp_scripts``): run every interval, rise/fall, killed at the timeout.

One :class:`ScriptTracker` per script, however many instances track it, so each script
runs once per interval. Runs start on a fixed schedule (``interval`` after the previous
start, or at once if a run took longer) and never overlap. Everything runs as an asyncio
subprocess: a hung script costs a sleeping task, never an advert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from vigil.track.base import RiseFall, Tracker, TrackerState
from vigil.track.config import VrrpScriptConfig
from vigil.track.runner import Credentials, RunResult, run_command

log = logging.getLogger("vigil.track")


class ScriptTracker(Tracker):
    """A periodic check command whose exit status (0 = success) drives OK/FAILED."""

    kind = "script"

    def __init__(self, cfg: VrrpScriptConfig, *, secure: bool = True) -> None:
        super().__init__(cfg.name, TrackerState.FAILED if cfg.init_fail else TrackerState.OK)
        self.cfg = cfg
        self.secure = secure
        self.counter = RiseFall(cfg.rise, cfg.fall, initially_ok=not cfg.init_fail)
        self.reason = "initial state (init_fail)" if cfg.init_fail else "initial state"
        self.runs = 0
        self.last: RunResult | None = None
        self.pgid: int | None = None  # the running check's process group, if one runs
        self._task: asyncio.Task[None] | None = None
        self._creds: Credentials | None = None
        self._creds_error: str | None = None
        try:
            self._creds = Credentials.resolve(cfg.user)
        except KeyError as exc:
            self._creds_error = f"cannot run as {cfg.user}: {exc.args[0]}"

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"track-script-{self.name}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            result = await self.run_once()
            self.record(result)
            delay = started + self.cfg.interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def run_once(self) -> RunResult:
        if self._creds is None:
            return RunResult(ok=False, duration=0.0, error=self._creds_error)

        def started(pid: int) -> None:
            self.pgid = pid

        try:
            return await run_command(
                self.cfg.argv,
                timeout=self.cfg.timeout,
                creds=self._creds,
                secure=self.secure,
                on_start=started,
            )
        finally:
            self.pgid = None

    def record(self, result: RunResult) -> None:
        """Count one run's result; flips the state after rise/fall in a row."""
        self.runs += 1
        previous = self.last
        self.last = result
        if not result.ok and (previous is None or previous.describe() != result.describe()):
            log.info("tracker %s: check failed: %s", self.key, result.describe())
        if self.counter.record(result.ok):
            if self.counter.ok:
                why = f"{self.counter.successes} success(es) in a row"
            else:
                why = f"{self.counter.failures} failure(s) in a row, last: {result.describe()}"
            self._set_state(TrackerState.OK if self.counter.ok else TrackerState.FAILED, why)

    def details(self) -> dict[str, Any]:
        last = self.last
        return {
            "runs": self.runs,
            "successes_in_row": self.counter.successes,
            "failures_in_row": self.counter.failures,
            "rise": self.cfg.rise,
            "fall": self.cfg.fall,
            "last_result": None if last is None else last.describe(),
            "last_duration": None if last is None else round(last.duration, 4),
        }
