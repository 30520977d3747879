"""Running a check command: unprivileged, in its own process group, with a hard timeout.

This is the only place trackers touch subprocesses. The command runs without a shell
(``create_subprocess_exec``), in a new session so that its process group id is its pid:
on timeout (or when the agent stops) the WHOLE group is killed, so a check that forked a
``sleep`` or a hung ``curl`` leaves nothing behind. The child drops to the configured
``user[:group]`` (setgroups/setgid/setuid happen in the child before exec), gets stdin
from /dev/null and no output pipes (a pipe held open by a stray grandchild could never
block us), and a small fixed environment. Nothing here blocks the event loop beyond the
fork/exec itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from vigil.config import files

# What a killed group gets to disappear before we stop waiting for its leader.
KILL_WAIT = 2.0
BASE_ENV = {"PATH": ":".join(files.SAFE_PATH), "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Credentials:
    """Who a command runs as; ``None`` fields mean "as the agent"."""

    spec: str
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None

    @classmethod
    def resolve(cls, spec: str) -> Credentials:
        """Look up ``user[:group]``; KeyError names what is missing.

        When the agent already is that user (unit tests run as themselves) no switch is
        made, so nothing needs root.
        """
        user, _, group = spec.partition(":")
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise KeyError(f"user {user!r} does not exist on this host") from None
        gid = pw.pw_gid
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise KeyError(f"group {group!r} does not exist on this host") from None
        if pw.pw_uid == os.geteuid() and gid == os.getegid():
            return cls(spec)
        groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, gid))))
        return cls(spec, pw.pw_uid, gid, groups)


@dataclass(frozen=True)
class RunResult:
    """How one run ended. ``ok`` is exit status 0 and nothing else."""

    ok: bool
    duration: float
    status: int | None = None  # exit status
    signal: int | None = None  # killed by this signal (not by us)
    timed_out: bool = False
    error: str | None = None  # could not be started or refused

    def describe(self) -> str:
        if self.error is not None:
            return self.error
        if self.timed_out:
            return f"timed out after {self.duration:.2f}s; its process group was killed"
        if self.signal is not None:
            name = signal.Signals(self.signal).name if self.signal in _SIGNALS else self.signal
            return f"killed by signal {name}"
        return f"exit status {self.status}"


_SIGNALS = {int(s) for s in signal.Signals}


def security_problem(argv: tuple[str, ...]) -> str | None:
    """Script security as the config loader applies it, re-checked before each run."""
    program, reason = files.resolve_program(argv[0])
    if program is None:
        return reason or f"program {argv[0]!r} not found"
    checked = [program, *(w for w in argv[1:] if w.startswith("/") and os.path.isfile(w))]
    for target in checked:
        why = files.insecure_reason(target)
        if why:
            return f"refusing {target!r}: {why} (script security)"
    return None


def kill_group(pgid: int) -> None:
    """SIGKILL every member of a process group (gone already is fine)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run_command(
    argv: tuple[str, ...],
    *,
    timeout: float,
    creds: Credentials,
    secure: bool = True,
    env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``argv`` once; never raises for the command's own failures.

    Cancellation (agent stop, tracker replaced on reload) kills the group too and then
    propagates. ``on_start`` is called with the child's pid = process group id.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    if secure:
        problem = security_problem(argv)
        if problem is not None:
            return RunResult(ok=False, duration=0.0, error=problem)
    kwargs: dict[str, object] = {}
    if creds.uid is not None:
        kwargs.update(user=creds.uid, group=creds.gid, extra_groups=list(creds.groups or ()))
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={**BASE_ENV, **(env or {})},
            **kwargs,  # type: ignore[arg-type]
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        what = f"as {creds.spec}" if creds.uid is not None else "as the agent's user"
        return RunResult(
            ok=False, duration=loop.time() - started, error=f"cannot run {what}: {exc}"
        )
    if on_start is not None:
        on_start(proc.pid)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        kill_group(proc.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), KILL_WAIT)
        return RunResult(ok=False, duration=loop.time() - started, timed_out=True)
    except asyncio.CancelledError:
        kill_group(proc.pid)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_WAIT)
        raise
    code = proc.returncode
    duration = loop.time() - started
    assert code is not None
    if code < 0:
        return RunResult(ok=False, duration=duration, signal=-code)
    return RunResult(ok=code == 0, duration=duration, status=code)
