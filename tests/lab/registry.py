"""The on-disk run registry: what each lab run created, so leftovers can be found later.

A test run (one Python process using the lab) gets a short random run id. Everything it
creates in the kernel (namespaces, with the bridges inside them; process groups) or on disk
(short socket/state directories) is appended to ``/run/vigil-lab/<runid>/resources.jsonl``
*before* it is created, and a removal line is appended after it is gone. The run directory
also holds ``owner.json`` (pid and kernel start time of the owning process), so
``python -m tests.lab.cleanup`` can tell a live run from a dead one without guessing from
names, and never touches a live run's resources or anything that is not recorded here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_ROOT = Path(os.environ.get("VIGIL_LAB_RUN_ROOT", "/run/vigil-lab"))
RUN_ID_RE = re.compile(r"^[0-9a-f]{4}$")
PREFIX = "vgl"

__all__ = [
    "PREFIX",
    "RUN_ROOT",
    "RunInfo",
    "RunRegistry",
    "current_run",
    "current_run_if_started",
    "list_runs",
    "proc_alive",
    "proc_pgid",
    "proc_start_time",
    "proc_state",
]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain ')' or spaces.
    return raw[raw.rindex(")") + 2 :].split()


def proc_state(pid: int) -> str | None:
    """One-letter process state ('R', 'S', 'Z', ...) or None if there is no such pid."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def proc_alive(pid: int, start: int | None = None) -> bool:
    """The process runs: it exists, is not a zombie (a zombie still answers ``kill -0``,
    and a slow init may leave it for seconds) and, if given, has this start time."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return start is None or int(fields[19]) == start


def proc_pgid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[2]) if fields else None


def proc_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot: with the pid, it names one process for good."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _pid_is(pid: int, start: int | None) -> bool:
    return start is not None and proc_start_time(pid) == start


@dataclass
class RunRegistry:
    """Append-only record of one run's resources under RUN_ROOT/<run_id>/."""

    run_id: str
    root: Path = RUN_ROOT
    _created: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not RUN_ID_RE.match(self.run_id):
            raise ValueError(f"run id {self.run_id!r}: must be 4 lowercase hex digits")

    @property
    def dir(self) -> Path:
        return self.root / self.run_id

    @property
    def prefix(self) -> str:
        """Every namespace of this run starts with this."""
        return f"{PREFIX}{self.run_id}"

    def create(self) -> None:
        """Create the run directory and claim it for this process (idempotent)."""
        if self._created:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        owner = {
            "pid": os.getpid(),
            "start": proc_start_time(os.getpid()),
            "argv": sys.argv,
            "created": time.time(),
        }
        tmp = self.dir / "owner.json.tmp"
        tmp.write_text(json.dumps(owner))
        tmp.replace(self.dir / "owner.json")
        self._created = True

    def _append(self, entry: dict[str, Any]) -> None:
        self.create()
        line = json.dumps(entry, sort_keys=True) + "\n"
        # O_APPEND writes of one short line are atomic; no lock is needed.
        fd = os.open(self.dir / "resources.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def record(self, kind: str, key: str, **data: Any) -> None:
        """Note a resource about to be created (kind: netns, bridge, pgid, dir, mount)."""
        self._append({"op": "add", "kind": kind, "key": key, **data})

    def forget(self, kind: str, key: str) -> None:
        """Note that a resource is gone."""
        self._append({"op": "del", "kind": kind, "key": key})

    def resources(self) -> list[dict[str, Any]]:
        """Resources recorded and not yet forgotten, in creation order."""
        return read_resources(self.dir)

    def remove_if_empty(self) -> bool:
        """Drop the run directory once nothing recorded is left (end of a clean run)."""
        if not self.dir.exists():
            return True
        if self.resources():
            return False
        shutil.rmtree(self.dir, ignore_errors=True)
        return True


def read_resources(run_dir: Path) -> list[dict[str, Any]]:
    live: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        text = (run_dir / "resources.jsonl").read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line of a killed run
        ident = (entry.get("kind", ""), str(entry.get("key", "")))
        if entry.get("op") == "add":
            live[ident] = entry
        else:
            live.pop(ident, None)
    return list(live.values())


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    dir: Path
    owner_pid: int | None
    owner_start: int | None

    @property
    def alive(self) -> bool:
        """True while the owning process runs (same pid *and* start time)."""
        if self.owner_pid is None:
            # No owner file yet: a run being created right now. Treat it as alive
            # unless its directory is old (a run killed during creation).
            try:
                return time.time() - self.dir.stat().st_mtime < 60
            except FileNotFoundError:
                return False
        return _pid_is(self.owner_pid, self.owner_start)

    def resources(self) -> list[dict[str, Any]]:
        return read_resources(self.dir)


def list_runs(root: Path = RUN_ROOT) -> list[RunInfo]:
    runs: list[RunInfo] = []
    if not root.is_dir():
        return runs
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or not RUN_ID_RE.match(entry.name):
            continue
        pid = start = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            owner = json.loads((entry / "owner.json").read_text())
            pid, start = int(owner["pid"]), owner.get("start")
        runs.append(RunInfo(entry.name, entry, pid, start))
    return runs


_CURRENT: RunRegistry | None = None


def current_run_if_started() -> RunRegistry | None:
    """This process's run if the lab was used, else None (nothing to check or clean)."""
    return _CURRENT


def current_run() -> RunRegistry:
    """This process's run (created on first use).

    ``VIGIL_LAB_RUN_ID`` picks the id (a parent test runs a child pytest with a known id);
    otherwise a fresh random one is drawn that no run directory uses yet.
    """
    global _CURRENT
    if _CURRENT is None:
        wanted = os.environ.get("VIGIL_LAB_RUN_ID")
        if wanted:
            reg = RunRegistry(wanted)
            for info in list_runs(reg.root):
                if info.run_id == wanted and info.alive and info.owner_pid != os.getpid():
                    raise RuntimeError(
                        f"VIGIL_LAB_RUN_ID={wanted} belongs to live pid {info.owner_pid}; "
                        "unset it or pick another id"
                    )
        else:
            for _ in range(100):
                reg = RunRegistry(secrets.token_hex(2))
                if not reg.dir.exists():
                    break
            else:  # pragma: no cover - 100 collisions among 65536 ids
                raise RuntimeError(f"no free run id under {RUN_ROOT}; run tests.lab.cleanup")
        reg.create()
        _CURRENT = reg
    return _CURRENT
