"""Remove what dead lab runs left behind: ``python -m tests.lab.cleanup``.

Only resources recorded in a run registry whose owner process is gone are touched:
process groups (when the recorded leader, or an orphan still carrying its group id, is
found), tmpfs mounts inside the run's directories, namespaces named with that run's prefix
(and whatever still runs inside them), and short directories under /tmp with that prefix.
A live run is reported and left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .lab import delete_netns, netns_exists
from .procs import group_members
from .registry import PREFIX, RUN_ROOT, RunInfo, list_runs, proc_start_time
from .waiting import wait_for

#: where the lab makes directories: short socket dirs, FRR instance run dirs
LAB_DIR_PARENTS = (Path("/tmp"), Path("/var/run/frr"), Path("/run/frr"))

__all__ = ["cleanup_dead_runs", "cleanup_run", "main"]


def _our_group(entry: dict[str, Any]) -> list[int]:
    """Members of a recorded group, if it is still provably the one we started."""
    pgid = int(entry["key"])
    leader_start = proc_start_time(pgid)
    if leader_start is not None and leader_start != entry.get("start"):
        # The pid now belongs to another process: the kernel only reuses a pid once no
        # process uses it as a group id either, so our group is gone.
        return []
    return group_members(pgid)


def _gone(entry: dict[str, Any]) -> Callable[[], bool]:
    return lambda: not _our_group(entry)


def cleanup_run(run: RunInfo, *, verbose: bool = True) -> list[str]:
    """Remove one dead run's resources; return what could not be removed."""
    prefix = f"{PREFIX}{run.run_id}"
    problems: list[str] = []
    resources = run.resources()
    for entry in resources:
        if entry["kind"] != "pgid":
            continue
        members = _our_group(entry)
        if members:
            if verbose:
                print(f"  kill process group {entry['key']} ({entry.get('name')}): {members}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(entry["key"]), signal.SIGKILL)
            try:
                wait_for(_gone(entry), timeout=5, what=f"group {entry['key']} to exit")
            except AssertionError as exc:
                problems.append(str(exc))
    for entry in reversed(resources):
        path = Path(str(entry["key"]))
        if entry["kind"] != "mount":
            continue
        if not any(p.parent == Path("/tmp") and p.name.startswith(prefix) for p in path.parents):
            problems.append(f"mount {path} is not inside a lab directory of this run: left alone")
            continue
        if os.path.ismount(path):
            if verbose:
                print(f"  unmount {path}")
            subprocess.run(
                ["umount", "-l", str(path)], capture_output=True, timeout=10, check=False
            )
            if os.path.ismount(path):
                problems.append(f"cannot unmount {path}")
    for entry in reversed(resources):
        ns = str(entry["key"])
        if entry["kind"] != "netns":
            continue
        if not ns.startswith(prefix):
            problems.append(f"namespace {ns} does not carry the run prefix {prefix}: left alone")
            continue
        if netns_exists(ns):
            if verbose:
                print(f"  delete namespace {ns}")
            try:
                delete_netns(ns)
            except Exception as exc:
                problems.append(str(exc))
    for entry in resources:
        path = Path(str(entry["key"]))
        if entry["kind"] != "dir":
            continue
        if path.parent not in LAB_DIR_PARENTS or not path.name.startswith(prefix):
            problems.append(f"directory {path} is not a lab directory: left alone")
            continue
        if path.exists():
            if verbose:
                print(f"  remove directory {path}")
            shutil.rmtree(path, ignore_errors=True)
    if not problems:
        shutil.rmtree(run.dir, ignore_errors=True)
    return problems


def cleanup_dead_runs(root: Path = RUN_ROOT, *, verbose: bool = True) -> list[str]:
    """Clean every dead run under ``root``; live runs are listed and skipped."""
    problems: list[str] = []
    for run in list_runs(root):
        if run.run_id == os.environ.get("VIGIL_LAB_KEEP_RUN"):
            continue
        if run.alive:
            if verbose:
                print(f"run {run.run_id}: live (pid {run.owner_pid}), left alone")
            continue
        if verbose:
            print(f"run {run.run_id}: owner {run.owner_pid} is gone, cleaning up")
        problems += cleanup_run(run, verbose=verbose)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab.cleanup",
        description="Remove namespaces, processes and directories left by dead lab runs.",
    )
    parser.add_argument("--root", type=Path, default=RUN_ROOT, help="registry directory")
    parser.add_argument("--list", action="store_true", help="only list runs and resources")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for run in list_runs(args.root):
            state = "live" if run.alive else "dead"
            print(f"run {run.run_id} ({state}, owner pid {run.owner_pid})")
            for entry in run.resources():
                print(f"  {entry['kind']} {entry['key']}")
        return 0
    if os.geteuid() != 0:
        print("tests.lab.cleanup: must run as root (namespaces)", file=sys.stderr)
        return 2
    problems = cleanup_dead_runs(args.root, verbose=not args.quiet)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
