"""Ansible benchmark: the vigil.ha playbooks against real (systemd-nspawn) hosts.

    python -m bench.ansible [--rounds N] [--cold-wheelhouse] [--json FILE]
    python -m bench.ansible --fleet 1,3,6 [--upgrade-at 6] [--json FILE]

Every round boots two fresh Debian hosts from the cached rootfs (tests/hosts) with the
pair inventory of the end-to-end tests (tests/hosts/scenario.py) and measures wall time on
the controller of:

  site        ``ansible-playbook vigil.ha.site`` on the fresh hosts (install the agent from
              the wheelhouse, unit, config, start, verify convergence)
  rerun       the same playbook again; its PLAY RECAP must show changed=0
  failover    ``ansible-playbook vigil.ha.failover`` end to end while the lab's controller
              namespace probes the VIP every 10 ms; lost probes are counted

Targets (issue 5): site < 60 s, rerun < 15 s with changed=0, failover < 10 s with 0 lost.

``--fleet 1,3,6`` measures the fleet instead (issue 14): for each count N, 2N fresh hosts
form N pairs, each with one VRRP instance (its own VRID and VIP) and a BFD session between
its two nodes (tests/hosts/scenario.py ``fleet_inventory``); ``vigil.ha.site`` runs with
``--forks 2N`` from scratch, then again (changed must be 0). For N in ``--upgrade-at``
(default: the largest N) a rolling upgrade follows: the agent's sources with another
version (a new wheel, built by the role) rolled out by ``vigil.ha.site`` while the
controller namespace probes every VIP every 10 ms; lost probes per VIP and the total time
are recorded. Targets: 6 pairs from scratch <= 180 s, rerun <= 45 s with changed=0, 0 lost
probes on every VIP. The per-pair cost is (site time at N - site time at the smallest N) /
(N - smallest N).
The controller's wheelhouse cache is warm after the first run (it is keyed by the agent
sources); ``--cold-wheelhouse`` points the role at an empty cache so the first round also
pays for ``pip wheel``. Results print as a table and are written as JSON (default
bench/results/ansible-<UTC date>.json). Root is needed (namespaces, nspawn).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.hosts.hostlab import HostLab
from tests.hosts.rootfs import ensure_rootfs
from tests.hosts.scenario import (
    GROUP,
    HOSTS,
    VIP,
    bfd_states,
    fleet_holders,
    fleet_hosts,
    fleet_inventory,
    fleet_vip,
    pair_inventory,
    upgraded_agent_source,
    vip_holders,
)
from tests.lab.lab import Lab

from .failover import RESULTS, machine

__all__ = ["Round", "main", "run_round"]

TARGETS = {"site_s": 60.0, "rerun_s": 15.0, "failover_s": 10.0}
PLAYBOOK_TIMEOUT = 600.0
MAX_ROUNDS = 20


class BenchError(RuntimeError):
    """A playbook failed or the pair is not as expected; the message has the output."""


@dataclass(frozen=True)
class Round:
    """One round's figures (seconds on the controller's wall clock)."""

    boot_s: float
    site_s: float
    site_changed: int
    rerun_s: float
    rerun_changed: int
    failover_s: float
    probes_sent: int
    probes_lost: int
    longest_outage_ms: float


def run_round(rootfs: Path, workdir: Path, extra: list[str]) -> Round:
    """Fresh hosts, site, rerun, failover (with the probe); everything removed after."""
    lab = Lab(workdir / "lab")
    try:
        hl = HostLab(lab, rootfs)
        started = time.monotonic()
        hl.boot(list(HOSTS))
        boot_s = time.monotonic() - started
        inv = pair_inventory(hl)
        hl.collections_dir()  # the snapshot is taken before the clock starts
        site = hl.playbook(inv, "vigil.ha.site", *extra, timeout=PLAYBOOK_TIMEOUT)
        if site.returncode != 0:
            raise BenchError("site.yml failed\n" + site.describe())
        rerun = hl.playbook(inv, "vigil.ha.site", *extra, timeout=PLAYBOOK_TIMEOUT)
        if rerun.returncode != 0:
            raise BenchError("site.yml rerun failed\n" + rerun.describe())
        before = vip_holders(hl)
        probe = lab.probe("ctl", VIP, interval=0.01, timeout=1.0, max_duration=300)
        probe.wait_received(50, timeout=10)
        failover = hl.playbook(
            inv, "vigil.ha.failover", "-e", f"vigil_hosts={GROUP}", timeout=PLAYBOOK_TIMEOUT
        )
        probe.wait_received(50, timeout=10)
        result = probe.stop()
        if failover.returncode != 0:
            raise BenchError("failover.yml failed\n" + failover.describe())
        after = vip_holders(hl)
        if len(after) != 1 or after == before:
            raise BenchError(f"failover.yml did not move {VIP}: before {before}, after {after}")
        return Round(
            boot_s=round(boot_s, 2),
            site_s=round(site.seconds, 2),
            site_changed=site.total("changed"),
            rerun_s=round(rerun.seconds, 2),
            rerun_changed=rerun.total("changed"),
            failover_s=round(failover.seconds, 2),
            probes_sent=result.sent,
            probes_lost=result.lost,
            longest_outage_ms=round(result.longest_outage_ms, 1),
        )
    finally:
        lab.close()


FLEET_TARGETS = {"site_6_pairs_s": 180.0, "rerun_6_pairs_s": 45.0, "upgrade_lost": 0}


@dataclass(frozen=True)
class FleetRun:
    """One fleet size's figures (seconds on the controller's wall clock)."""

    pairs: int
    boot_s: float
    site_s: float
    site_changed: int
    rerun_s: float
    rerun_changed: int
    upgrade_s: float | None = None
    upgrade_changed: int | None = None
    lost_per_vip: dict[str, int] | None = None
    sent_per_vip: dict[str, int] | None = None
    longest_outage_ms: float | None = None


def _fleet_check(hl: HostLab, pairs: int, what: str) -> None:
    holders = fleet_holders(hl, pairs)
    want = {n: [f"h{2 * n - 1}"] for n in range(1, pairs + 1)}
    if holders != want:
        raise BenchError(f"{what}: VIP holders {holders}, expected {want}")
    for h in fleet_hosts(pairs):
        states = bfd_states(hl, h)
        if states != {"peer": "Up"}:
            raise BenchError(f"{what}: BFD on {h} is {states}")


def run_fleet(rootfs: Path, workdir: Path, pairs: int, *, upgrade: bool) -> FleetRun:
    """2*pairs fresh hosts: site from scratch, rerun, and optionally a rolling upgrade."""
    lab = Lab(workdir / "lab")
    try:
        hl = HostLab(lab, rootfs)
        started = time.monotonic()
        hl.boot(fleet_hosts(pairs), timeout=180)
        boot_s = time.monotonic() - started
        inv = fleet_inventory(hl, pairs)
        hl.collections_dir()
        forks = ["--forks", str(2 * pairs)]
        site = hl.playbook(inv, "vigil.ha.site", *forks, timeout=PLAYBOOK_TIMEOUT)
        if site.returncode != 0:
            raise BenchError(f"{pairs} pairs: site.yml failed\n" + site.describe())
        _fleet_check(hl, pairs, f"{pairs} pairs after site")
        rerun = hl.playbook(inv, "vigil.ha.site", *forks, timeout=PLAYBOOK_TIMEOUT)
        if rerun.returncode != 0:
            raise BenchError(f"{pairs} pairs: rerun failed\n" + rerun.describe())
        run = FleetRun(
            pairs=pairs,
            boot_s=round(boot_s, 2),
            site_s=round(site.seconds, 2),
            site_changed=site.total("changed"),
            rerun_s=round(rerun.seconds, 2),
            rerun_changed=rerun.total("changed"),
        )
        if not upgrade:
            return run
        source, _version = upgraded_agent_source(hl, "bench1")
        probes = {
            n: lab.probe("ctl", fleet_vip(n), interval=0.01, timeout=1.0, max_duration=900)
            for n in range(1, pairs + 1)
        }
        for probe in probes.values():
            probe.wait_received(50, timeout=20)
        up = hl.playbook(
            inv, "vigil.ha.site", *forks, "-e", f"vigil_agent_source={source}",
            timeout=PLAYBOOK_TIMEOUT,
        )  # fmt: skip
        for probe in probes.values():
            probe.wait_received(50, timeout=20)
        results = {fleet_vip(n): p.stop() for n, p in probes.items()}
        if up.returncode != 0:
            raise BenchError(f"{pairs} pairs: upgrade failed\n" + up.describe())
        _fleet_check(hl, pairs, f"{pairs} pairs after the upgrade")
        return FleetRun(
            pairs=run.pairs,
            boot_s=run.boot_s,
            site_s=run.site_s,
            site_changed=run.site_changed,
            rerun_s=run.rerun_s,
            rerun_changed=run.rerun_changed,
            upgrade_s=round(up.seconds, 2),
            upgrade_changed=up.total("changed"),
            lost_per_vip={v: r.lost for v, r in results.items()},
            sent_per_vip={v: r.sent for v, r in results.items()},
            longest_outage_ms=round(max(r.longest_outage_ms for r in results.values()), 1),
        )
    finally:
        lab.close()


def fleet_summary(runs: list[FleetRun]) -> dict[str, Any]:
    base = min(runs, key=lambda r: r.pairs)
    per_pair = {
        str(r.pairs): round((r.site_s - base.site_s) / (r.pairs - base.pairs), 2)
        for r in runs
        if r.pairs != base.pairs
    }
    six = [r for r in runs if r.pairs == 6]
    upgraded = [r for r in runs if r.lost_per_vip is not None]
    return {
        "site_s_by_pairs": {str(r.pairs): r.site_s for r in runs},
        "rerun_s_by_pairs": {str(r.pairs): r.rerun_s for r in runs},
        "site_s_per_extra_pair_from_smallest": per_pair,
        "rerun_changed_max": max(r.rerun_changed for r in runs),
        "upgrade_lost_total": sum(sum((r.lost_per_vip or {}).values()) for r in upgraded),
        "targets_met": {
            "site_6_pairs_s": all(r.site_s <= FLEET_TARGETS["site_6_pairs_s"] for r in six)
            if six
            else None,
            "rerun_6_pairs_s": all(
                r.rerun_s <= FLEET_TARGETS["rerun_6_pairs_s"] and r.rerun_changed == 0 for r in six
            )
            if six
            else None,
            "upgrade_lost": all(sum((r.lost_per_vip or {}).values()) == 0 for r in upgraded)
            if upgraded
            else None,
        },
    }


def print_fleet(run: FleetRun, *, header: bool) -> None:
    if header:
        print(
            f"{'pairs':>5}  {'boot s':>6}  {'site s':>7}  {'rerun s':>7}  {'changed':>7}  "
            f"{'upgrade s':>9}  {'lost/VIP':>12}"
        )
    lost = "-" if run.lost_per_vip is None else ",".join(map(str, run.lost_per_vip.values()))
    up = "-" if run.upgrade_s is None else f"{run.upgrade_s:.1f}"
    print(
        f"{run.pairs:>5}  {run.boot_s:>6.1f}  {run.site_s:>7.1f}  {run.rerun_s:>7.1f}  "
        f"{run.rerun_changed:>7}  {up:>9}  {lost:>12}"
    )


def main_fleet(sizes: list[int], upgrade_at: list[int], out: Path | None) -> int:
    rootfs = ensure_rootfs()
    load_at_start = os.getloadavg()[0]
    runs: list[FleetRun] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for i, n in enumerate(sizes):
            try:
                runs.append(run_fleet(rootfs, Path(tmp) / f"fleet{n}", n, upgrade=n in upgrade_at))
            except BenchError as exc:
                print(f"{n} pairs: {exc}", file=sys.stderr)
                return 1
            print_fleet(runs[-1], header=i == 0)
    result = {
        "benchmark": "ansible-fleet",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_avg_1m_at_start": load_at_start,
        "load_avg_1m_at_end": os.getloadavg()[0],
        "targets": FLEET_TARGETS,
        "runs": [asdict(r) for r in runs],
        "summary": fleet_summary(runs),
    }
    path = out or RESULTS / f"ansible-fleet-{datetime.now(UTC):%Y%m%d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    print(f"written to {path}")
    return 0


def summary(rounds: list[Round]) -> dict[str, Any]:
    """Medians and worst cases, and whether each target was met in every round."""

    def med(key: str) -> float:
        return round(statistics.median(getattr(r, key) for r in rounds), 2)

    return {
        "site_s_median": med("site_s"),
        "rerun_s_median": med("rerun_s"),
        "failover_s_median": med("failover_s"),
        "rerun_changed_max": max(r.rerun_changed for r in rounds),
        "probes_lost_total": sum(r.probes_lost for r in rounds),
        "targets_met": {
            "site_s": all(r.site_s < TARGETS["site_s"] for r in rounds),
            "rerun_s": all(r.rerun_s < TARGETS["rerun_s"] and r.rerun_changed == 0 for r in rounds),
            "failover_s": all(
                r.failover_s < TARGETS["failover_s"] and r.probes_lost == 0 for r in rounds
            ),
        },
    }


def print_table(rounds: list[Round], *, first: int = 1, header: bool = True) -> None:
    head = (
        f"{'round':>5}  {'boot s':>6}  {'site s':>7}  {'rerun s':>7}  {'changed':>7}  "
        f"{'failover s':>10}  {'probes':>6}  {'lost':>4}"
    )
    if header:
        print(head)
    for i, r in enumerate(rounds, first):
        print(
            f"{i:>5}  {r.boot_s:>6.1f}  {r.site_s:>7.1f}  {r.rerun_s:>7.1f}  "
            f"{r.rerun_changed:>7}  {r.failover_s:>10.1f}  {r.probes_sent:>6}  {r.probes_lost:>4}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help=f"1..{MAX_ROUNDS} (default 1)")
    parser.add_argument(
        "--cold-wheelhouse", action="store_true", help="use an empty wheelhouse cache"
    )
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument(
        "--fleet", help="measure fleets of these pair counts instead, e.g. 1,3,6 (1..6)"
    )
    parser.add_argument(
        "--upgrade-at", help="pair counts that also get a rolling upgrade (default: the largest)"
    )
    args = parser.parse_args(argv)
    if args.fleet:
        try:
            sizes = sorted({int(x) for x in args.fleet.split(",")})
            upgrade_at = (
                [int(x) for x in args.upgrade_at.split(",")] if args.upgrade_at else [sizes[-1]]
            )
        except ValueError:
            parser.error(f"--fleet {args.fleet!r} / --upgrade-at: comma-separated pair counts")
        if not all(1 <= n <= 6 for n in sizes):
            parser.error(f"--fleet {args.fleet!r}: pair counts must be in 1..6")
        if os.geteuid() != 0:
            print("error: bench.ansible needs root (namespaces, systemd-nspawn)", file=sys.stderr)
            return 2
        return main_fleet(sizes, upgrade_at, args.json)
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds: {args.rounds} is not in 1..{MAX_ROUNDS}")
    if os.geteuid() != 0:
        print("error: bench.ansible needs root (namespaces, systemd-nspawn)", file=sys.stderr)
        return 2
    rootfs = ensure_rootfs()
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-ansible-") as tmp:
        extra: list[str] = []
        if args.cold_wheelhouse:
            extra = ["-e", f"vigil_wheel_cache={tmp}/wheelhouse"]
        for i in range(args.rounds):
            try:
                rounds.append(run_round(rootfs, Path(tmp) / f"round{i + 1}", extra))
            except BenchError as exc:
                print(f"round {i + 1}: {exc}", file=sys.stderr)
                return 1
            print_table(rounds[-1:], first=i + 1, header=i == 0)
    result = {
        "benchmark": "ansible",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_avg_1m_at_end": os.getloadavg()[0],
        "cold_wheelhouse": args.cold_wheelhouse,
        "targets": TARGETS,
        "rounds": [asdict(r) for r in rounds],
        "summary": summary(rounds),
    }
    out = args.json or RESULTS / f"ansible-{datetime.now(UTC):%Y%m%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
