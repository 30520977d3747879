"""CPU and memory of a pair with many instances, keepalived vs vigil.

    python -m bench.cpu [--instances 50] [--seconds 60] [--json FILE]

For each implementation a fresh lab runs a pair (n1 priority 150, n2 priority 100) from
one keepalived.conf with N VRRPv2 instances at a 1 s advert interval (VRIDs 1..N, one
IPv4 VIP each); vigil runs the config ``vigilctl import-keepalived`` makes of it. Once n1
is master of every instance, the CPU time of each daemon's whole process group is read
at the start and the end of a window of ``--seconds``; CPU % = used / window (100 % = one
core). The time used is the scheduler's own count, to the nanosecond, of every thread of
every member (/proc/PID/task/TID/schedstat), plus cutime + cstime of the members so that
children which ran and were reaped count too. utime + stime from /proc/PID/stat are
whole clock ticks (10 ms), too coarse for a daemon that uses five of them a minute; they
are reported beside it as ``cpu_ticks``. Peak RSS is the sum of VmHWM over the group's
processes at the end of the window (it includes start-up). The implementations run one
after the other, never at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.lab.procs import group_members

from .failover import RESULTS, load_average, machine
from .pair import IMPLS, BenchError, InstanceSpec, Pair, use_vigil_revision

__all__ = ["GroupSample", "instances_for", "main", "measure", "sample_group"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_INSTANCES = 200


@dataclass(frozen=True)
class GroupSample:
    """CPU seconds used so far and summed peak RSS of one process group."""

    cpu_s: float
    ticks: int
    hwm_kb: int
    rss_kb: int
    members: int


def _stat_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of ``pid`` in clock ticks ((0, 0) if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0, 0
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return utime + stime, cutime + cstime


def _run_ns(pid: int) -> int:
    """Nanoseconds every thread of ``pid`` has run on a CPU (0 if it is gone)."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        # A thread that ended between the listing and the read counts no more.
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def sample_group(pgid: int) -> GroupSample:
    pids = group_members(pgid)
    ticks = [_stat_ticks(p) for p in pids]
    reaped = sum(children for _, children in ticks)
    return GroupSample(
        cpu_s=sum(_run_ns(p) for p in pids) / 1e9 + reaped / CLK_TCK,
        ticks=sum(own + children for own, children in ticks),
        hwm_kb=sum(_status_kb(p, "VmHWM") for p in pids),
        rss_kb=sum(_status_kb(p, "VmRSS") for p in pids),
        members=len(pids),
    )


def instances_for(count: int) -> list[InstanceSpec]:
    """``count`` VRRPv2 instances at 1 s: VRIDs 1..count, VIPs 10.99.1.1.. (a /16 apart
    from the nodes' 10.99.0.0/24 so no VIP collides with a node address)."""
    if not 1 <= count <= MAX_INSTANCES:
        raise ValueError(f"--instances {count}: must be 1..{MAX_INSTANCES}")
    return [
        InstanceSpec(f"VI_{i}", i, f"10.99.{1 + (i - 1) // 250}.{1 + (i - 1) % 250}/16", 2, 1.0)
        for i in range(1, count + 1)
    ]


def measure(impl: str, count: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """Run one implementation's pair and measure it over the window."""
    specs = instances_for(count)
    pair = Pair(workdir, impl, specs)
    try:
        pair.start_all()
        pair.wait_converged(timeout=30.0 + count * 0.2)
        groups = {name: pair.process(name).pgid for name in ("n1", "n2")}
        before = {name: sample_group(pg) for name, pg in groups.items()}
        t0 = time.monotonic()
        deadline = t0 + seconds
        # The window is the measurement itself; poll once a second that both still run.
        for _ in range(int(seconds) + 2):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(1.0, left))
            for name in groups:
                if not pair.process(name).alive():
                    raise BenchError(f"{impl} on {name} exited during the window")
        window = time.monotonic() - t0
        after = {name: sample_group(pg) for name, pg in groups.items()}
        if not pair.converged():
            raise BenchError(f"{impl} pair lost its roles during the window")
        result: dict[str, Any] = {
            "impl": impl,
            "window_s": round(window, 2),
            "loadavg_1m": load_average(),
        }
        for name, role in (("n1", "master"), ("n2", "backup")):
            used = after[name].cpu_s - before[name].cpu_s
            result[role] = {
                "cpu_s": round(used, 4),
                "cpu_percent": round(100.0 * used / window, 3),
                "cpu_ticks": after[name].ticks - before[name].ticks,
                "peak_rss_mb": round(after[name].hwm_kb / 1024, 1),
                "rss_mb": round(after[name].rss_kb / 1024, 1),
                "processes": after[name].members,
            }
        return result
    finally:
        pair.close()


def table(results: Sequence[dict[str, Any]]) -> str:
    head = (
        "| implementation | role | CPU % of a core | CPU s | clock ticks | peak RSS MB "
        "| processes |"
    )
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for role in ("master", "backup"):
            m = r[role]
            lines.append(
                f"| {r['impl']} | {role} | {m['cpu_percent']:.3f} | {m['cpu_s']:.3f} | "
                f"{m['cpu_ticks']} | {m['peak_rss_mb']:.1f} | {m['processes']} |"
            )
    return "\n".join(lines)


def verdict(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The issue's bounds: vigil CPU at most 2x keepalived's, vigil RSS at most 60 MB."""
    by = {r["impl"]: r for r in results}
    if set(by) != set(IMPLS):
        return {}
    k, v = by["keepalived"], by["vigil"]
    out: dict[str, Any] = {}
    for role in ("master", "backup"):
        kc, vc = k[role]["cpu_percent"], v[role]["cpu_percent"]
        out[f"{role}_cpu_ratio"] = round(vc / kc, 2) if kc > 0 else None
        out[f"{role}_cpu_at_most_2x"] = vc <= 2 * kc
        out[f"{role}_rss_at_most_60mb"] = v[role]["peak_rss_mb"] <= 60.0
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.cpu", description="CPU/RSS of N instances, keepalived vs vigil."
    )
    p.add_argument("--instances", type=int, default=50, help="VRRP instances per node")
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    p.add_argument("--impl", choices=IMPLS, action="append", help="only this implementation")
    p.add_argument("--json", type=Path, help="result file (default bench/results/...)")
    p.add_argument("--workdir", type=Path, help="logs and configs (default bench/results/)")
    p.add_argument(
        "--vigil-rev",
        default="HEAD",
        help="git revision of agent/src to run vigild from (default HEAD; 'worktree')",
    )
    args = p.parse_args(argv)
    if not 1 <= args.instances <= MAX_INSTANCES:
        p.error(f"--instances {args.instances}: must be 1..{MAX_INSTANCES}")
    if not 1 <= args.seconds <= 3600:
        p.error(f"--seconds {args.seconds:g}: must be 1..3600")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.cpu: needs root (network namespaces)", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.json or RESULTS / f"cpu-{stamp}.json"
    workdir = args.workdir or RESULTS / f"cpu-{stamp}"
    vigil_source = use_vigil_revision(args.vigil_rev, workdir / "vigil-src")
    command = "python -m bench.cpu " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    results = []
    try:
        for impl in args.impl or IMPLS:
            print(f"{impl}: {args.instances} instances, {args.seconds:g} s window ...", flush=True)
            results.append(measure(impl, args.instances, args.seconds, workdir / impl))
    except KeyboardInterrupt:
        print("bench.cpu: interrupted", file=sys.stderr)
        return 130
    doc = {
        "benchmark": "cpu",
        "command": command.strip(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "instances": args.instances,
        "advert_interval": 1.0,
        "version": 2,
        "seconds": args.seconds,
        "machine": machine(),
        "vigil_source": vigil_source,
        "results": results,
        "verdict": verdict(results),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(table(results))
    if doc["verdict"]:
        print(json.dumps(doc["verdict"]))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
