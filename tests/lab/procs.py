"""Processes the lab starts: each in its own session and process group, logged to a file.

Why groups: daemons fork (keepalived's VRRP child, vigild's scripts), and a crash is
simulated by killing *everything* the daemon started at once, which is what SIGKILL to the
process group does. Teardown does the same after a polite SIGTERM, then checks /proc so
neither a stray child nor a zombie survives the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .registry import RunRegistry, proc_alive, proc_pgid, proc_start_time, proc_state
from .waiting import wait_for

__all__ = ["ProcessHandle", "group_members", "kill_groups", "spawn_in_netns"]


def group_members(pgid: int, *, zombies: bool = False) -> list[int]:
    """Pids whose process group is ``pgid``.

    Zombies are left out unless asked for: they are dead (only their exit status waits to
    be collected, by init for orphans, which may take seconds here) and cannot be killed.
    """
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if proc_pgid(pid) == pgid and (zombies or proc_alive(pid)):
            members.append(pid)
    return members


@dataclass
class ProcessHandle:
    """A process (group leader) started by the lab inside a namespace."""

    name: str
    argv: list[str]
    netns: str | None
    log_path: Path
    popen: subprocess.Popen[bytes]
    start_time: int | None
    registry: RunRegistry | None = None
    _closed: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        """The group id: the leader's pid, since it called setsid()."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        """The leader still runs (a zombie leader is reaped here and counts as dead)."""
        return self.popen.poll() is None

    def members(self) -> list[int]:
        """Live processes of the group (the leader is reaped here once it exits)."""
        self.popen.poll()
        return group_members(self.pgid)

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the whole group; False if the group is already gone."""
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return False
        return True

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the leader only (e.g. keepalived's parent: a clean shutdown)."""
        if self.popen.poll() is not None:
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float) -> int:
        """Wait for the leader to exit and return its exit status."""
        return self.popen.wait(timeout=timeout)

    def log_text(self, tail: int | None = None) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        if tail is not None:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the group, SIGKILL what is left after ``timeout``; reap; check /proc."""
        kill_groups([self], timeout=timeout)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash) and wait until it is gone."""
        self.signal_group(signal.SIGKILL)
        _wait_groups_gone([self], timeout=5.0)
        # The group can look empty (the leader a zombie) before poll() saw the exit: reap
        # the leader itself, so returncode is set when kill() returns.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5.0)
        self._forget()

    def _forget(self) -> None:
        if not self._closed and not self.members():
            self._closed = True
            if self.registry is not None:
                self.registry.forget("pgid", str(self.pgid))

    def __repr__(self) -> str:
        state = "running" if self.popen.poll() is None else f"exited {self.popen.returncode}"
        return f"<{self.name} pid={self.pid} ns={self.netns} {state}>"


def _wait_groups_gone(handles: Sequence[ProcessHandle], timeout: float) -> list[int]:
    """Reap leaders and wait until no process of the groups is left; return the leftovers."""
    leftovers: list[int] = []

    def gone() -> bool:
        nonlocal leftovers
        leftovers = [pid for h in handles for pid in h.members()]
        return not leftovers

    with contextlib.suppress(AssertionError):
        wait_for(gone, timeout=timeout, interval=0.01, what="process groups to exit")
    return leftovers


def kill_groups(handles: Iterable[ProcessHandle], timeout: float = 5.0) -> None:
    """Stop several groups in parallel: SIGTERM all, wait, SIGKILL the rest, verify.

    Raises RuntimeError naming any process that survives SIGKILL or stays a zombie.
    """
    handles = [h for h in handles if not h._closed]
    for h in handles:
        h.signal_group(signal.SIGTERM)
    left = _wait_groups_gone(handles, timeout)
    if left:
        for h in handles:
            h.signal_group(signal.SIGKILL)
        left = _wait_groups_gone(handles, 5.0)
    for h in handles:
        with contextlib.suppress(subprocess.TimeoutExpired):
            h.popen.wait(timeout=1.0)
        h._forget()
    if left:
        states = {pid: proc_state(pid) for pid in left}
        raise RuntimeError(f"processes survived SIGKILL (pid: state): {states}")


def spawn_in_netns(
    name: str,
    netns: str | None,
    argv: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    registry: RunRegistry | None = None,
    pass_fds: Sequence[int] = (),
) -> ProcessHandle:
    """Start ``argv`` inside ``netns`` (None: this namespace) in a new session.

    ``ip netns exec`` execs the command, so the pid we get is the command's own pid and
    the group leader. stdout and stderr both go to ``log_path``; stdin is /dev/null.
    """
    if not argv:
        raise ValueError(f"spawn {name}: empty argv")
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    merged_env = dict(os.environ)
    if env:
        merged_env.update(env)
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%H:%M:%S')} start: {' '.join(full)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=merged_env,
            cwd=cwd,
            pass_fds=tuple(pass_fds),
        )
    if registry is not None:
        # Recorded right after fork: the pid cannot be reused while the group exists,
        # and the start time pins the leader for the cleanup tool.
        registry.record(
            "pgid",
            str(popen.pid),
            start=proc_start_time(popen.pid),
            name=name,
            netns=netns,
        )
    return ProcessHandle(
        name=name,
        argv=list(argv),
        netns=netns,
        log_path=log_path,
        popen=popen,
        start_time=proc_start_time(popen.pid),
        registry=registry,
    )
