"""Planned failover benchmark: vigil's verified handover/takeover vs stopping keepalived.

    python -m bench.handover [--rounds N] [--interval S] [--actions A ...] [--json FILE]
                             [--plot docs/img/handover.png]

Same topology and config path as bench.failover (bench.pair): switch, n1 (priority 150,
master), n2 (priority 100), a client probing the VIP every 10 ms, both implementations
running the same keepalived.conf (VRRPv2, advert 1 s by default; vigil through
``vigilctl import-keepalived``). Each round is a fresh pair that has converged; then one
planned failover moves the VIP from n1 to n2:

  vigil/handover     ``vigilctl handover VI_1`` on n1: make-before-break (n1 sends priority
                     0 but keeps answering until n2's advert, then drops the VIP)
  vigil/takeover     ``vigilctl takeover VI_1`` on n2: n2 adds and announces the VIP,
                     then preempts
  vigil/stop         SIGTERM of vigild on n1 (priority 0, VIP removed): the reference
  keepalived/stop    SIGTERM of keepalived on n1: keepalived's closest equivalent, as it
                     has no control API (priority 0, VIP removed, n2 takes over after its
                     skew time)

Measured: lost probes and the longest outage, the time until the VIP is on n2 alone, and
for the vigilctl actions the time the verified command took and its exit status (it
returns only once the new master was seen and the old one dropped the VIP).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.lab.agents import AgentHandle
from tests.lab.probe import Probe

from .failover import load_average, machine, run_header
from .pair import BenchError, InstanceSpec, Pair

__all__ = ["ACTIONS", "main", "plot", "run_round", "summarize"]

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
ACTIONS = ("vigil/handover", "vigil/takeover", "vigil/stop", "keepalived/stop")
VIP = "10.99.0.100"
PROBE_INTERVAL = 0.01
REPLIES_AFTER = 50  # replies after the move: the outage, if any, has closed
ROUND_LIMIT_S = 120.0


def run_round(action: str, interval: float, workdir: Path, log_level: str = "info") -> dict:
    """Fresh pair, converge, probe, one planned failover from n1 to n2; what was seen."""
    impl, how = action.split("/")
    started = time.monotonic()
    spec = InstanceSpec("VI_1", 51, f"{VIP}/24", 2 if interval == int(interval) else 3, interval)
    pair = Pair(workdir, impl, [spec], log_level=log_level)
    try:
        pair.start_all()
        pair.wait_converged(15.0 + 5 * interval)
        probe = Probe(pair.lab, "client", VIP, interval=PROBE_INTERVAL, max_duration=100.0)
        probe.start()
        probe.wait_received(50, timeout=10.0)
        command: dict[str, Any] = {}
        t0 = time.monotonic()
        if how == "stop":
            pair.stop("n1")
        else:
            node = "n1" if how == "handover" else "n2"
            handle = pair.handles[node]
            assert isinstance(handle, AgentHandle)
            res = handle.vigilctl("-o", "json", how, "VI_1", timeout=60.0)
            command = {
                "exit": res.returncode,
                "took_ms": round((time.monotonic() - t0) * 1000, 1),
            }
            try:
                body = json.loads(res.stdout)
                command["message"] = body.get("message") or body
                command["elapsed_s"] = body.get("elapsed_s")
            except ValueError:
                command["message"] = (res.stdout + res.stderr).strip()[-500:]
            if res.returncode != 0:
                raise BenchError(f"vigilctl {how} failed ({res.returncode}): {command}")
        t_cmd = time.monotonic()
        pair.lab.wait_for(
            lambda: pair.vips_on("n2") == {VIP} and not pair.vips_on("n1"),
            timeout=10.0 + 5 * interval,
            interval=0.01,
            what="the VIP on n2 alone",
        )
        moved = time.monotonic()
        probe.wait_received(REPLIES_AFTER, timeout=10.0)
        result = probe.stop()
        if time.monotonic() - started > ROUND_LIMIT_S:
            raise BenchError(f"round took longer than {ROUND_LIMIT_S}s")
        return {
            "action": action,
            "impl": impl,
            "lost": result.lost,
            "sent": result.sent,
            "outage_ms": round(result.longest_outage_ms, 1),
            "outages": result.raw["outages"],
            "action_ms": round((t_cmd - t0) * 1000, 1),
            "vip_moved_ms": round((moved - t0) * 1000, 1),
            "command": command,
            "round_s": round(time.monotonic() - started, 2),
            "loadavg_1m": load_average(),
        }
    finally:
        pair.close()


def summarize(actions: Sequence[str], samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for action in actions:
        mine = [s for s in samples if s["action"] == action]
        good = [s for s in mine if "error" not in s]
        lost = [s["lost"] for s in good]

        def median(key: str, rows: list[dict[str, Any]] = good) -> float | None:
            values = [s[key] for s in rows]
            return round(statistics.median(values), 1) if values else None

        out.append(
            {
                "action": action,
                "rounds": len(good),
                "errors": len(mine) - len(good),
                "lost_median": statistics.median(lost) if lost else None,
                "lost_max": max(lost, default=None),
                "lost_samples": lost,
                "outage_ms_median": median("outage_ms"),
                "action_ms_median": median("action_ms"),
                "vip_moved_ms_median": median("vip_moved_ms"),
            }
        )
    return out


def table(summary: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| action | rounds | lost probes (median / max) | longest outage ms (median) "
        "| command returned ms (median) | VIP on n2 alone ms (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in summary:
        if not e["rounds"]:
            lines.append(f"| {e['action']} | 0 ({e['errors']} errors) | - | - | - | - |")
            continue
        lines.append(
            f"| {e['action']} | {e['rounds']} | {e['lost_median']:g} / {e['lost_max']} "
            f"| {e['outage_ms_median']:.0f} | {e['action_ms_median']:.0f} "
            f"| {e['vip_moved_ms_median']:.0f} |"
        )
    return "\n".join(lines)


def plot(doc: dict[str, Any], out: Path) -> Path:
    """Lost probes per action (median bar, every round as a dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = [e for e in doc["summary"] if e["rounds"]]
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    colors = {"keepalived": "#7f7f7f", "vigil": "#1f77b4"}
    for i, e in enumerate(summary):
        impl = e["action"].split("/")[0]
        ax.bar(i, e["lost_median"], 0.6, color=colors[impl], alpha=0.85)
        ax.scatter([i] * len(e["lost_samples"]), e["lost_samples"], s=10, color="black", zorder=3)
        ax.annotate(
            f"{e['lost_median']:g} lost\nVIP moved in {e['vip_moved_ms_median'] / 1000:.2f} s",
            (i, (e["lost_max"] or 0) + 1.5),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(summary)), [e["action"] for e in summary])
    ax.set_ylabel("probes lost (10 ms probing)")
    top = max((e["lost_max"] or 0 for e in summary), default=1)
    ax.set_ylim(0, max(10, top * 1.35))
    interval = doc.get("advert_interval")
    ax.set_title(f"Planned failover n1 -> n2, advert {interval:g} s ({doc['rounds']} rounds)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.handover",
        description="Planned failover: vigilctl handover/takeover vs stopping the master.",
    )
    p.add_argument("--rounds", type=int, default=5, help="rounds per action")
    p.add_argument("--interval", type=float, default=1.0, help="advert interval (s)")
    p.add_argument("--actions", nargs="+", choices=ACTIONS, help="default: all")
    p.add_argument("--json", type=Path, help="result file (default bench/results/...)")
    p.add_argument("--workdir", type=Path, help="logs and configs (default bench/results/)")
    p.add_argument("--plot", type=Path, help="also draw the lost-probe chart here (PNG)")
    p.add_argument("--log-level", default="info", choices=("debug", "info"))
    p.add_argument("--from-json", type=Path, help="only redraw --plot from this result file")
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 100:
        p.error(f"--rounds {args.rounds}: must be 1..100")
    if not 0.01 <= args.interval <= 10:
        p.error(f"--interval {args.interval}: must be 0.01..10 seconds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        stored = json.loads(args.from_json.read_text())
        print(table(stored["summary"]))
        if args.plot:
            print(f"plot: {plot(stored, args.plot)}")
        return 0
    if os.geteuid() != 0:
        print("bench.handover: needs root (network namespaces)", file=sys.stderr)
        return 2
    actions = tuple(args.actions or ACTIONS)
    out, workdir, doc = run_header("handover", argv, args.json, args.workdir)
    doc |= {
        "rounds": args.rounds,
        "advert_interval": args.interval,
        "probe_interval_ms": PROBE_INTERVAL * 1000,
        "machine": machine(),
        "samples": [],
    }
    samples: list[dict[str, Any]] = doc["samples"]
    total = args.rounds * len(actions)
    done = 0
    interrupted = False
    try:
        for rnd in range(args.rounds):
            order = actions if rnd % 2 == 0 else tuple(reversed(actions))
            for action in order:
                done += 1
                wd = workdir / action.replace("/", "-") / f"r{rnd + 1}"
                try:
                    s = run_round(action, args.interval, wd, args.log_level)
                except (BenchError, AssertionError) as exc:
                    s = {"action": action, "error": str(exc)[:4000]}
                s["round"] = rnd + 1
                samples.append(s)
                shown = (
                    f"{s['lost']} lost, VIP moved in {s['vip_moved_ms']:.0f} ms"
                    if "error" not in s
                    else "ERROR " + s["error"].splitlines()[0]
                )
                print(f"[{done}/{total}] {action} r{rnd + 1}: {shown}", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("bench.handover: interrupted; writing what was measured", file=sys.stderr)
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["interrupted"] = interrupted
    doc["summary"] = summarize(actions, samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print()
    print(table(doc["summary"]))
    print(f"\nJSON: {out}")
    if args.plot:
        print(f"plot: {plot(doc, args.plot)}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
