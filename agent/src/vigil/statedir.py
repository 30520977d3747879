"""The agent's state dir: its default paths and the lock one agent holds on it.

Kept apart from :mod:`vigil.daemon` so :mod:`vigil.faststart` can take the lock before
the rest of the agent is imported (os paths, not pathlib: every import counts there).
"""

from __future__ import annotations

import errno
import fcntl
import os

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SOCKET",
    "DEFAULT_STATE_DIR",
    "LOCK_NAME",
    "StateDirError",
    "StateDirLock",
]

DEFAULT_CONFIG = "/etc/vigil/vigil.yml"
DEFAULT_SOCKET = "/run/vigil/vigil.sock"
DEFAULT_STATE_DIR = "/var/lib/vigil"
LOCK_NAME = "vigild.lock"


# --------------------------------------------------------------------------- state dir


class StateDirError(Exception):
    """The state dir cannot be used (permissions, or another agent holds it)."""


class StateDirLock:
    """An exclusive flock on STATE_DIR/vigild.lock, held for the agent's lifetime.

    Two agents sharing one state dir would fight over the journal and maintenance flags,
    so the second one refuses to start and names the first one's pid. flock is released
    by the kernel when the process dies, so a crashed agent never leaves a stale lock.
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            if os.stat(self.state_dir).st_uid == os.geteuid():
                os.chmod(self.state_dir, 0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateDirError(
                f"cannot use state dir {self.state_dir}: {exc.strerror}; "
                "pass --state-dir or set global.state_dir"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"pid {other}" if other else "another process"
                raise StateDirError(
                    f"state dir {self.state_dir} is in use by another vigild ({who}); "
                    "give each agent its own --state-dir"
                ) from exc
            raise StateDirError(f"cannot lock {self.path}: {exc.strerror}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full or read-only state dir: say so, never a traceback
            os.close(fd)
            raise StateDirError(
                f"cannot write to state dir {self.state_dir}: {exc.strerror}; the agent "
                "needs it writable (journal, maintenance flags): free space or fix it"
            ) from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
