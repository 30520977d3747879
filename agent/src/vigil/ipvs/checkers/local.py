"""MISC_CHECK (a program), FILE_CHECK (a number in a file) and BFD_CHECK (one of the
agent's BFD sessions): checks run on this host.

MISC runs through :func:`vigil.track.runner.run_command`, the agent's one way to run a
check command: no shell, unprivileged ``user``, own session and process group, SIGKILL of
the whole group at the timeout, script security re-checked before each run. The user is
looked up once (NSS may be slow: off the loop, in :meth:`MiscProbe.prepare`).

FILE reads happen in a small thread pool owned by the engine, never on the loop: a file
on a hung network file system then costs a pool thread, and the engine's hard limit
fails the check.

BFD reads a session's state through a callable the engine is given (the IPVS subsystem
reads the ``bfd:<name>`` tracker that the BFD subsystem publishes): the checkers know
nothing of the BFD code.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from .core import CheckResult
from .settings import BfdCheck, FileCheck, MiscCheck, RealServer
from .sockets import fail

if TYPE_CHECKING:
    from vigil.track.runner import Credentials, RunResult

__all__ = [
    "BfdProbe",
    "BfdState",
    "FileProbe",
    "MiscProbe",
    "file_result",
    "read_number",
    "strtol",
]

#: a BFD session's state by name: (up, what to say), e.g. (False, "session Down (...)");
#: (False, "...") too when there is no such session (yet)
BfdState = Callable[[str], tuple[bool, str]]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: keepalived reads at most 127 bytes of a track file
READ_MAX = 127

_STRTOL = re.compile(rb"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def strtol(text: bytes) -> int:
    """C's ``strtol(text, NULL, 0)``: leading space, sign, 0x hex / 0 octal / decimal,
    stop at the first other character; no number at all is 0."""
    m = _STRTOL.match(text)
    if not m:
        return 0
    sign, digits = m.groups()
    if digits[:2].lower() == b"0x":
        value = int(digits[2:], 16)
    elif digits.startswith(b"0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    return -value if sign == b"-" else value


def read_number(path: str) -> int | None:
    """The file's value as keepalived reads it: missing or empty -> 0; a value outside
    the 32-bit range -> None (ignored). Blocking: runs in a thread."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        data = os.read(fd, READ_MAX)
    except OSError:
        return 0
    finally:
        os.close(fd)
    value = strtol(data)
    if not INT32_MIN <= value <= INT32_MAX + 1:
        return None
    return value


def file_result(value: int, check: FileCheck) -> CheckResult:
    """keepalived's ``track_file`` rule for real servers (``track_file.c``)."""
    if check.weight == 0:
        fault = (value == 0) if check.reverse else (value != 0)
        if fault:
            return CheckResult(ok=False, error=f"{check.path} holds {value} (weight 0: a status)")
        return CheckResult(ok=True)
    product = value * check.weight * (-1 if check.reverse else 1)
    product = max(INT32_MIN, min(INT32_MAX, product))
    if product <= INT32_MIN:
        return CheckResult(ok=False, error=f"{check.path} holds {value}: weight {product} (fault)")
    return CheckResult(ok=True, weight_offset=product)


class FileProbe:
    def __init__(self, check: FileCheck, executor: Executor) -> None:
        self.check = check
        self.executor = executor
        self.value = 0  # the last value in range

    async def run(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(self.executor, read_number, self.check.path)
        if value is not None:
            self.value = value
        return file_result(self.value, self.check)


def misc_result(run: RunResult, dynamic: bool) -> CheckResult:
    """Exit 0 up; with ``misc_dynamic`` 1 down and 2..255 up with weight status - 2."""
    if run.ok:
        return CheckResult(ok=True)
    status = run.status
    if dynamic and status is not None and 2 <= status <= 255:
        return CheckResult(ok=True, weight=status - 2)
    return fail(run.describe())


class MiscProbe:
    def __init__(self, check: MiscCheck, server: RealServer) -> None:
        self.check = check
        self.env = {"VIGIL_RS_ADDRESS": server.address}
        if server.port is not None:
            self.env["VIGIL_RS_PORT"] = str(server.port)
        self._creds: Credentials | None = None
        self._creds_error: str | None = None
        self.pgid: int | None = None  # the running check's process group

    async def prepare(self) -> None:
        """Resolve ``user`` (an NSS lookup, perhaps over the network) in a thread."""
        from vigil.track.runner import Credentials

        loop = asyncio.get_running_loop()
        try:
            self._creds = await loop.run_in_executor(None, Credentials.resolve, self.check.user)
        except KeyError as exc:
            self._creds_error = f"cannot run as {self.check.user}: {exc.args[0]}"

    async def run(self) -> CheckResult:
        from vigil.track.runner import run_command

        if self._creds is None:
            if self._creds_error is None:
                await self.prepare()
            if self._creds is None:
                return fail(self._creds_error or "user not resolved")

        def started(pid: int) -> None:
            self.pgid = pid

        try:
            run = await run_command(
                self.check.argv,
                timeout=self.check.effective_timeout(),
                creds=self._creds,
                secure=self.check.secure,
                env=self.env,
                on_start=started,
            )
        finally:
            self.pgid = None
        return misc_result(run, self.check.misc_dynamic)


class BfdProbe:
    """BFD_CHECK: up while the named BFD session is Up (read, never waited for)."""

    def __init__(self, check: BfdCheck, state: BfdState | None) -> None:
        self.check = check
        self.state = state

    async def run(self) -> CheckResult:
        if self.state is None:
            return CheckResult(ok=False, error="this agent runs no BFD sessions")
        up, what = self.state(self.check.session)
        if up:
            return CheckResult(ok=True)
        return CheckResult(ok=False, error=f"BFD session {self.check.session}: {what}")
