"""IPVS notify commands: a real server up/down, a virtual server's quorum gained/lost.

Run with :func:`vigil.track.runner.run_command`, the agent's one way to run a command: no
shell, as ``global.script_user``, in its own session and process group, killed with the
whole group at ``global.notify_timeout``, script security re-checked before each run.
Each target (a real server, a virtual server's quorum) has its own queue, so the scripts
see the changes in the order they happened (a flap never ends with the script believing
the wrong state); a queue keeps at most ``MAX_PENDING`` runs, dropping the oldest waiting
one. Commands get no extra arguments (as keepalived's) but a few environment variables:
``VIGIL_VIRTUAL_SERVER``, ``VIGIL_REAL_SERVER`` (real server commands), ``VIGIL_EVENT``
(``up``, ``down``, ``quorum_up``, ``quorum_down``). Every run is a ``notify`` event.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vigil.config import files

log = logging.getLogger("vigil.ipvs.notify")

MAX_PENDING = 16

__all__ = ["Notifier", "NotifyJob"]


@dataclass(frozen=True)
class NotifyJob:
    target: str  # queue key: "web/10.0.0.11:80" or "web"
    virtual_server: str
    event: str
    command: str
    timeout: float
    real_server: str | None = None


class Notifier:
    """Per-target ordered queues of notify commands; ``publish(kind, instance, msg, **data)``."""

    def __init__(self, publish: Callable[..., None]) -> None:
        self.publish = publish
        self.user = "nobody"
        self.secure = True
        self._creds: Any = None
        self._queues: dict[str, collections.deque[NotifyJob]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.runs = 0
        self.failures = 0

    async def configure(self, user: str, secure: bool) -> None:
        """Who commands run as; the user is looked up off the loop (NSS may be slow)."""
        from vigil.track.runner import Credentials

        if user == self.user and secure == self.secure and self._creds is not None:
            return
        self.user, self.secure = user, secure
        try:
            self._creds = await asyncio.to_thread(Credentials.resolve, user)
        except KeyError as exc:
            log.error("ipvs: notify commands cannot run as %s: %s", user, exc.args[0])
            self._creds = None

    def submit(self, job: NotifyJob) -> None:
        queue = self._queues.setdefault(job.target, collections.deque())
        if len(queue) >= MAX_PENDING:
            dropped = queue.popleft()
            log.warning("(%s) notify queue full; dropped %s", job.target, dropped.event)
        queue.append(job)
        task = self._tasks.get(job.target)
        if task is None or task.done():
            self._tasks[job.target] = asyncio.get_running_loop().create_task(
                self._drain(job.target), name=f"ipvs notify {job.target}"
            )

    async def _drain(self, target: str) -> None:
        queue = self._queues.get(target)
        for _ in range(10_000):  # bounded: the queue holds at most MAX_PENDING at a time
            if not queue:
                break
            await self.run(queue.popleft())
        self._queues.pop(target, None)

    async def run(self, job: NotifyJob) -> bool:
        """Run one command now (also used at stop for omega); True if it exited 0."""
        from vigil.track.runner import run_command

        self.runs += 1
        try:
            argv = tuple(files.split_command(job.command))
        except ValueError as exc:
            argv = ()
            error: str | None = f"cannot split {job.command!r}: {exc}"
        else:
            error = None if argv else "empty command"
        if error is None and self._creds is None:
            error = f"cannot run as {self.user}: no such user"
        env = {"VIGIL_VIRTUAL_SERVER": job.virtual_server, "VIGIL_EVENT": job.event}
        if job.real_server is not None:
            env["VIGIL_REAL_SERVER"] = job.real_server
        ok, message, data = False, "", {}
        if error is None:
            result = await run_command(
                argv, timeout=job.timeout, creds=self._creds, secure=self.secure, env=env
            )
            ok = result.ok
            message = result.describe()
            data = {
                "exit_status": result.status,
                "duration_s": round(result.duration, 4),
                "timed_out": result.timed_out,
            }
        else:
            message = error
        if not ok:
            self.failures += 1
        who = f"{job.virtual_server}/{job.real_server}" if job.real_server else job.virtual_server
        self.publish(
            "notify",
            job.virtual_server,
            f"notify {job.event} for {who}: {job.command!r}: {message}",
            event=job.event,
            real_server=job.real_server,
            command=job.command,
            ok=ok,
            **data,
        )
        return ok

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._queues.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
