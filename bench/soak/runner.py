"""The soak's main loop: build, converge, inject on schedule, check, settle, report."""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.soak.cluster import Cluster, UnitSettings
from bench.soak.injections import INJECTIONS, InjectionRecord, SoakContext
from bench.soak.invariants import Checker, Violation, leak_report
from bench.soak.model import GroupSpec, default_groups
from bench.soak.schedule import make_schedule
from bench.soak.subsystems import IPVS_NOTE, STUCK_S, BfdCheck, IpvsCheck, event_counts
from tests.lab.lab import Lab

__all__ = ["attribute_outages", "run_soak"]

PROBE_INTERVAL = 0.02
SAMPLE_EVERY = 5.0


def attribute_outages(
    probes: dict[str, dict[str, Any]],
    records: list[InjectionRecord],
    groups: dict[str, GroupSpec],
    t_start: float,
) -> list[dict[str, Any]]:
    """Each client outage (a run of lost probes) with the injection it falls under: the
    latest one in the probe's group that started before it and healed less than the
    group's settle time before it. Outages before the injections began are left out."""
    out = []
    for addr, info in probes.items():
        raw = info["raw"]
        gname = info["group"]
        t0 = float(raw["t0_monotonic"])
        settle = groups[gname].settle_s
        for o in raw["outages"]:
            start = t0 + float(o["start"])
            if start < t_start:
                continue
            owner = None
            for rec in records:
                if rec.step.group != gname or rec.started > start:
                    continue
                if start <= (rec.healed or rec.started) + settle:
                    owner = rec
            out.append(
                {
                    "vip": addr,
                    "group": gname,
                    "at_s": round(start - t_start, 3),
                    "duration_ms": o["duration_ms"],
                    "lost": o["lost"],
                    "injection": owner.step.kind if owner else None,
                    "step": owner.step.index if owner else None,
                }
            )
    return out


def run_soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    seconds = float(args.minutes) * 60
    groups = default_groups(float(args.advert_interval))
    unit = UnitSettings.from_unit()
    steps = make_schedule(
        int(args.seed),
        seconds,
        groups,
        INJECTIONS,
        gap=(args.gap_min, args.gap_max),
        only=args.only,
    )
    stop = threading.Event()
    records: list[InjectionRecord] = []
    with Lab(workdir / "lab") as lab:
        cluster = Cluster(lab, groups, unit)
        cluster.build(probe_interval=PROBE_INTERVAL, max_seconds=seconds + 900)
        checker = Checker(cluster, time.monotonic())
        bfd_check, ipvs_check = BfdCheck(), IpvsCheck()
        sub_checks = [c for c in (bfd_check, ipvs_check) if any(map(c.applies, groups))]
        checker.extra_checks.extend(sub_checks)
        start_problems: list[str] = []
        if not checker.wait_settled(60, checker.converged):
            start_problems.append("the groups did not converge within 60 s of start")
        followers = cluster.followers
        checker.wait_settled(
            15,
            lambda: all(
                any(e.kind == "agent_started" for e in f.snapshot()) for f in followers.values()
            ),
        )
        ns_before = cluster.namespace_processes()
        cluster.sample()

        def sampler() -> None:
            while not stop.wait(SAMPLE_EVERY):
                cluster.sample()

        sampling = threading.Thread(target=sampler, name="sampler", daemon=True)
        sampling.start()
        t_start = time.monotonic()
        checker.t0 = t_start
        checker.start()
        ctx = SoakContext(cluster, workdir, random.Random(), stop.is_set)
        for step in steps:
            due = t_start + step.at
            if due > time.monotonic():
                stop.wait(due - time.monotonic())  # the schedule's pacing
            if time.monotonic() - t_start >= seconds:
                break
            group = cluster.groups[step.group]
            checker.check_settled(group)
            inj = INJECTIONS[step.kind]
            rec = InjectionRecord(step)
            ctx.rng = random.Random(f"soak:{args.seed}:{step.seed}")
            rec.started, rec.wall_started = time.monotonic(), time.time()
            checker.injection_started(rec, inj.excuses(step))
            try:
                inj.apply(ctx, rec)
            except Exception as exc:
                rec.errors.append(f"apply: {exc!r}")
            stop.wait(float(step.params.get("duration", 0)))  # the fault's planned length
            try:
                inj.heal(ctx, rec)
            except Exception as exc:
                rec.errors.append(f"heal: {exc!r}")
            rec.healed, rec.wall_healed = time.monotonic(), time.time()
            checker.injection_healed(rec, inj.excuses(step))
            records.append(rec)
            print(
                f"[{rec.started - t_start:7.1f}s] {step.kind:<15} {step.group:<5} "
                f"{rec.target or '-':<9} {step.params}"
                + (f"  errors: {rec.errors}" if rec.errors else ""),
                flush=True,
            )
        t_injections_end = time.monotonic()
        # Settle: every group converges (bounded), then the final checks.
        longest = max(g.settle_s for g in groups)
        converged = checker.wait_settled(3 * longest + 30, checker.converged)
        for group in groups:
            checker.check_settled(group, final=True)
        # BFD sessions Up and real servers UP again (bounded), else "stuck" at the end.
        subs_settled = checker.wait_settled(
            2 * STUCK_S, lambda: not any(c.pending(checker) for c in sub_checks)
        )
        if not subs_settled:
            for c in sub_checks:
                c.final_stuck(checker)
        cluster.sample()
        ns_after = cluster.namespace_processes()
        stop.set()
        checker.close()
        sampling.join(timeout=10)
        cluster.supervisor.close()
        probes = cluster.stop_probes()
        events = [e for f in followers.values() for e in f.snapshot()]
        for c in sub_checks:
            c.final(checker, events)
        for rec in records:
            rec.visible, rec.visibility = INJECTIONS[rec.step.kind].expect(ctx, rec, events)
        violations: list[Violation] = list(checker.violations)
        for problem in start_problems:
            violations.append(Violation("start", "-", "-", 0.0, problem))
        for rec in records:
            if rec.visible is False:
                violations.append(
                    Violation(
                        "visible",
                        rec.step.group,
                        str(rec.target),
                        rec.started - t_start,
                        rec.visibility,
                        rec.step.index,
                        rec.step.kind,
                    )
                )
        for node in cluster.nodes.values():
            for ex in node.exits:
                if not ex["expected"]:
                    violations.append(
                        Violation(
                            "crash",
                            node.group.name,
                            node.name,
                            ex["time"] - t_start,
                            f"vigild exited with {ex['code']} unasked; log: "
                            f"{ex['log_tail'][-1500:]}",
                        )
                    )
        leaks = leak_report(cluster, ns_before=ns_before, ns_after=ns_after)
        for text in leaks.violations:
            violations.append(Violation("leak", "-", text.split(":")[0], seconds, text))
        if not converged:
            violations.append(
                Violation(
                    "final",
                    "-",
                    "-",
                    time.monotonic() - t_start,
                    "did not converge after the last injection",
                )
            )
        outages = attribute_outages(probes, records, cluster.groups, t_start)
        result = build_result(
            args, groups, unit, steps, records, violations, checker, leaks.nodes, outages, probes,
            cluster, t_start, t_injections_end, ns_before, ns_after,
        )  # fmt: skip
        result["subsystems"] = {
            "bfd": {
                g.name: {
                    "mode": g.bfd.mode,
                    "session": g.bfd.session,
                    "interval_s": g.bfd.interval,
                    "multiplier": g.bfd.multiplier,
                    "router": "FRR bfdd" if g.bfd.router is not None else None,
                }
                for g in groups
                if g.bfd is not None
            },
            "ipvs": {
                g.name: {
                    "virtual_server": g.ipvs.name,
                    "real_servers": list(g.ipvs.real_server_names),
                    "quorum": g.ipvs.quorum,
                }
                for g in groups
                if g.ipvs is not None
            },
            "ipvs_kernel": ipvs_check.kernel,
            "ipvs_note": IPVS_NOTE,
            "events": event_counts(events),
            "final_bfd": bfd_check.final_results,
            "final_ipvs": ipvs_check.final_results,
            "api_polls": {"bfd": bfd_check.polls, "ipvs": ipvs_check.polls},
            "settled_at_end": subs_settled,
        }
    return result


def _kind_entry() -> dict[str, Any]:
    return {
        "count": 0,
        "variants": Counter(),
        "visible": 0,
        "not_visible": 0,
        "not_applicable": 0,
        "violations": 0,
        "errors": 0,
        "longest_outage_ms": 0.0,
        "longest_outage": None,
    }


def build_result(
    args: argparse.Namespace,
    groups: tuple[GroupSpec, ...],
    unit: UnitSettings,
    steps: list[Any],
    records: list[InjectionRecord],
    violations: list[Violation],
    checker: Checker,
    resources: dict[str, Any],
    outages: list[dict[str, Any]],
    probes: dict[str, dict[str, Any]],
    cluster: Cluster,
    t_start: float,
    t_end: float,
    ns_before: dict[str, int],
    ns_after: dict[str, int],
) -> dict[str, Any]:
    by_kind: dict[str, dict[str, Any]] = {}
    for rec in records:
        k = by_kind.setdefault(rec.step.kind, _kind_entry())
        k["count"] += 1
        variant = (
            rec.step.params.get("variant")
            or rec.step.params.get("trigger")
            or rec.notes.get("variant")
            or rec.target_role
        )
        k["variants"][str(variant)] += 1
        if rec.visible is True:
            k["visible"] += 1
        elif rec.visible is False:
            k["not_visible"] += 1
        else:
            k["not_applicable"] += 1
        k["errors"] += len(rec.errors)
    for v in violations:
        if v.kind in by_kind:
            by_kind[v.kind]["violations"] += 1
    for o in outages:
        kind = o["injection"] or "(none)"
        k = by_kind.setdefault(kind, _kind_entry())
        if o["duration_ms"] > k["longest_outage_ms"]:
            k["longest_outage_ms"] = o["duration_ms"]
            k["longest_outage"] = o
    for k in by_kind.values():
        k["variants"] = dict(k["variants"])
    supervisor = {
        node.name: {
            "exits": [{**e, "time": round(e["time"] - t_start, 2)} for e in node.exits],
            "cleanups": [{**c, "time": round(c["time"] - t_start, 2)} for c in node.cleanups],
            "generation": node.generation,
        }
        for node in cluster.nodes.values()
    }
    per_invariant = Counter(v.invariant for v in violations)
    return {
        "tool": "bench.soak",
        "command": "python -m bench.soak " + " ".join(args.argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed,
        "minutes": args.minutes,
        "injection_seconds": round(t_end - t_start, 1),
        "advert_interval": args.advert_interval,
        "unit": unit.to_dict(),
        "groups": {
            g.name: {
                "nodes": {n.name: n.priority for n in g.nodes},
                "instances": [
                    {
                        "name": i.name,
                        "vrid": i.vrid,
                        "version": i.version,
                        "family": i.family,
                        "interval": i.interval,
                        "vips": list(i.vips),
                        "window_s": round(g.window(i), 3),
                    }
                    for i in g.instances
                ],
                "settle_s": round(g.settle_s, 3),
            }
            for g in groups
        },
        "planned_steps": len(steps),
        "injections": len(records),
        "by_kind": by_kind,
        "violations": [v.to_dict() for v in violations],
        "violations_by_invariant": dict(per_invariant),
        "split_episodes": checker.splits,
        "checker": {
            "ticks": checker.ticks,
            "settle_checks": checker.settle_checks,
            "unsettled_skips": checker.unsettled_skips,
        },
        "outages": outages,
        "probes": {
            addr: {k: p["raw"].get(k) for k in ("sent", "received", "lost", "longest_outage_ms")}
            for addr, p in probes.items()
        },
        "resources": resources,
        "namespace_processes": {"start": ns_before, "end": ns_after},
        "supervisor": supervisor,
        "start_limit_hits": cluster.supervisor.start_limit_hits,
        "records": [r.to_dict() for r in records],
        "ok": not violations,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"soak: {result['injections']} injections in {result['injection_seconds']} s "
        f"(seed {result['seed']}), violations: {len(result['violations'])} "
        f"{result['violations_by_invariant']}",
        "",
        f"{'injection':<16}{'count':>6}{'visible':>10}{'n/a':>5}{'violations':>12}"
        f"{'longest outage':>16}  variants",
    ]
    for kind, k in sorted(result["by_kind"].items()):
        vis = f"{k['visible']}/{k['visible'] + k['not_visible']}"
        lo = k["longest_outage"]
        where = f" ({lo['vip']})" if lo else ""
        lines.append(
            f"{kind:<16}{k['count']:>6}{vis:>10}{k['not_applicable']:>5}{k['violations']:>12}"
            f"{k['longest_outage_ms']:>13.0f} ms  {k['variants']}{where}"
        )
    lines += [
        "",
        f"{'node':<6}{'fds start':>10}{'fds end':>9}{'RSS start':>11}{'RSS end':>10}"
        f"{'restarts':>10}",
    ]
    for name, r in sorted(result["resources"].items()):
        lines.append(
            f"{name:<6}{r['start']['fds']:>10}{r['end']['fds']:>9}"
            f"{r['start']['rss_kb'] // 1024:>8} MB"
            f"{r['end']['rss_kb'] // 1024:>7} MB{r['restarts']:>10}"
        )
    subs = result.get("subsystems")
    if subs:
        totals: Counter[str] = Counter()
        for per in subs["events"].values():
            totals.update(per)
        lines += ["", "BFD/IPVS events (all nodes): " + ", ".join(
            f"{k} {v}" for k, v in sorted(totals.items())
        )]  # fmt: skip
        if subs["ipvs"]:
            lines.append("IPVS: " + subs["ipvs_note"])
    if result["violations"]:
        lines += ["", "violations (first 40):"]
        for v in result["violations"][:40]:
            lines.append(
                f"  [{v['at_s']:7.1f}s] {v['invariant']:<8} {v['group']:<5} {v['where']:<14} "
                f"step {v['step']} {v['injection']}: {v['detail'][:160]}"
            )
    return "\n".join(lines)


def by_group(records: list[InjectionRecord]) -> dict[str, int]:
    counts: defaultdict[str, int] = defaultdict(int)
    for r in records:
        counts[r.step.group] += 1
    return dict(counts)
