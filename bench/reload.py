"""Reload benchmark: does reloading a master with an unrelated change disturb it?

    python -m bench.reload [--rounds N] [--reloads K] [--rows PATTERN ...] [--json FILE]

Same topology and config path as bench.failover (bench.pair): switch, n1 (priority 150,
master), n2 (priority 100) and a client, both implementations running the same
keepalived.conf (vigil through ``vigilctl import-keepalived``). Each pair runs two
instances, VI_1 (VIP 10.99.0.100, the one the client probes every 10 ms) and VI_2
(10.99.0.101). Each round makes a fresh pair, lets it converge, and then reloads the
master K times with SIGHUP (keepalived's and vigild's reload signal), each time with an
unrelated change to the file:

  add-instance    a third instance VI_3 is added (odd reloads) or removed again (even)
  other-priority  VI_2's priority toggles between 150 and 140 (VI_1 is never touched)

and, for comparison, two changes to VI_1 itself that must not cost a probe either:

  own-vip         VI_1 gains a second VIP (10.99.0.110) and loses it again; the probed VIP
                  stays in both lists
  own-priority    VI_1's priority toggles between 150 and 140 (still above n2's 100)

After each reload the benchmark waits until the reload is done (vigil: its
``config_reloaded`` event; keepalived: its "Reload complete" log line), then keeps
watching for four advert intervals plus half a second (a peer that missed adverts would
have taken over by then). Measured per round: VI_1 transitions on both nodes (vigil: its
event stream; keepalived: "(VI_1) Entering ... STATE" log lines), lost probes and the
longest outage, the longest gap between VI_1's adverts seen by the client (kernel
timestamps), and how long the reload took. Results go to bench/results/reload-<UTC>.json
and a table; nothing is hidden when an implementation flaps.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import itertools
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.lab.agents import AgentHandle
from tests.lab.capture import Capture, Frame
from tests.lab.probe import Probe

from .failover import load_average, machine, run_header, run_rounds
from .pair import (
    IMPLS,
    PRIORITY,
    BenchError,
    InstanceSpec,
    Pair,
    import_keepalived_conf,
    keepalived_conf,
)

__all__ = ["CHANGES", "ROWS", "Row", "advert_times", "longest_gap", "main", "run_round"]

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
CHANGES = ("add-instance", "other-priority", "own-vip", "own-priority")
PROBE_INTERVAL = 0.01
ROUND_LIMIT_S = 180.0
N1_ADDR = "10.99.0.11"


@dataclass(frozen=True)
class Row:
    """One line of the result table: a kind of change at one VRRP version and interval."""

    change: str
    version: int
    interval: float

    @property
    def key(self) -> str:
        return f"{self.change}-v{self.version}-{self.interval:g}s"

    def specs(self, extra: bool = False) -> list[InstanceSpec]:
        names = [("VI_1", 51, "10.99.0.100/24"), ("VI_2", 52, "10.99.0.101/24")]
        if extra:
            names.append(("VI_3", 53, "10.99.0.103/24"))
        return [InstanceSpec(n, v, vip, self.version, self.interval) for n, v, vip in names]

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.key,
            "change": self.change,
            "version": self.version,
            "advert_interval": self.interval,
        }


ROWS = [Row(c, v, i) for v, i in ((2, 1.0), (3, 0.1)) for c in CHANGES]


def select_rows(patterns: Sequence[str] | None) -> list[Row]:
    if not patterns or patterns == ["all"]:
        return list(ROWS)
    rows = [r for r in ROWS if any(fnmatch.fnmatch(r.key, p) for p in patterns)]
    if not rows:
        known = ", ".join(r.key for r in ROWS)
        raise SystemExit(f"bench.reload: no row matches {patterns}; rows are: {known}")
    return rows


# ---------------------------------------------------------------------- observation


def advert_times(frames: Sequence[Frame], src: str, vrid: int) -> list[tuple[float, int]]:
    """(kernel receive time, priority) of the IPv4 VRRP adverts from ``src`` for ``vrid``."""
    want = ipaddress.IPv4Address(src).packed
    out = []
    for f in frames:
        d = f.data
        if len(d) < 42 or d[12:14] != b"\x08\x00" or d[23] != 112 or d[26:30] != want:
            continue
        vrrp = d[14 + (d[14] & 0x0F) * 4 :]
        if len(vrrp) >= 3 and vrrp[1] == vrid:
            out.append((f.time, vrrp[2]))
    return out


def longest_gap(times: Sequence[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def reloaded_nodes(row: Row) -> tuple[str, ...]:
    """Who reloads: n1 only, except when both must agree on VI_1's VIP list.

    A VIP list change goes to the backup first, then the master (as docs/operations.md
    says): keepalived 2.2.7 drops an advert whose VIP list differs from its own, so
    reloading only the master would make the backup take over.
    """
    return ("n2", "n1") if row.change == "own-vip" else ("n1",)


def gap_near(times: Sequence[float], spans: Sequence[tuple[float, float]], slack: float) -> float:
    """The longest advert gap that overlaps a reload (SIGHUP .. done, widened by ``slack``).

    Tells a reload's own effect apart from a hiccup elsewhere in the round (machine load).
    """
    gaps = [
        b - a
        for a, b in itertools.pairwise(times)
        if any(a <= end + slack and b >= start - slack for start, end in spans)
    ]
    return max(gaps, default=0.0)


def conf_text(row: Row, step: int, node: str = "n1") -> str:
    """``node``'s keepalived.conf after ``step`` reloads (step 0: the one it started with)."""
    prio = PRIORITY[node]
    if row.change == "add-instance":
        return keepalived_conf(node, prio, row.specs(extra=step % 2 == 1))
    text = keepalived_conf(node, prio, row.specs())
    if step % 2 == 0 or (node != "n1" and row.change != "own-vip"):
        return text
    name = "VI_1" if row.change.startswith("own-") else "VI_2"
    head, tail = text.split(f"vrrp_instance {name} {{", 1)
    if row.change == "own-vip":
        tail = tail.replace("10.99.0.100/24\n", "10.99.0.100/24\n        10.99.0.110/24\n", 1)
    else:
        tail = tail.replace(f"priority {prio}", f"priority {prio - 10}", 1)
    return head + f"vrrp_instance {name} {{" + tail


class Observer:
    """Reload and transitions, the same questions asked of either implementation."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.marks: dict[str, int] = {}

    def mark(self) -> None:
        """Remember where the logs / event streams are now."""
        for name in ("n1", "n2"):
            handle = self.pair.handles[name]
            if isinstance(handle, AgentHandle):
                status, body = handle.client.get("/v1/status")
                if status != 200:
                    raise BenchError(f"vigild on {name}: /v1/status answered {status}")
                self.marks[name] = int(body["agent"]["last_event_seq"])
            else:
                self.marks[name] = len(handle.log(None))

    def _since(self, name: str) -> tuple[list[dict[str, Any]], str]:
        handle = self.pair.handles[name]
        if isinstance(handle, AgentHandle):
            status, body = handle.client.get(f"/v1/events?since={self.marks[name]}")
            if status != 200:
                raise BenchError(f"vigild on {name}: /v1/events answered {status}")
            return list(body), ""
        return [], handle.log(None)[self.marks[name] :]

    def reload_done(self, node: str = "n1") -> bool | str:
        """True when ``node``'s reload finished; a string when it failed."""
        events, log = self._since(node)
        if isinstance(self.pair.handles[node], AgentHandle):
            for e in events:
                if e["kind"] == "config_reloaded":
                    return True
                if e["kind"] == "reload_failed":
                    return f"vigild rejected the reload: {e['data'].get('issues')}"
            return False
        return "Reload complete" in log

    def transitions(self, instance: str) -> list[str]:
        """Every transition of ``instance`` on n1 and n2 since mark()."""
        out = []
        for name in ("n1", "n2"):
            events, log = self._since(name)
            for e in events:
                if e["kind"] == "vrrp_transition" and e["instance"] == instance:
                    out.append(f"{name}: {e['message']}")
            marker = f"({instance}) Entering "
            out += [f"{name}: {line.strip()}" for line in log.splitlines() if marker in line]
        return out


def write_config(pair: Pair, row: Row, step: int, node: str) -> None:
    """Write ``node``'s config for ``step`` (vigil: the import of the same keepalived.conf)."""
    handle = pair.handles[node]
    text = conf_text(row, step, node)
    if isinstance(handle, AgentHandle):
        src = pair.lab.node_dir(node) / f"keepalived-reload-{step}.conf"
        src.write_text(text)
        import_keepalived_conf(src, handle.config_path)
    else:
        handle.files["conf"].write_text(text)


def sighup(pair: Pair, node: str) -> None:
    handle = pair.handles[node]
    if isinstance(handle, AgentHandle):
        handle.sighup()
    else:
        handle.process.signal(signal.SIGHUP)


def run_round(row: Row, impl: str, workdir: Path, reloads: int, log_level: str = "info") -> dict:
    """Fresh pair, converge, then ``reloads`` reloads of n1; see the module docstring."""
    started = time.monotonic()
    pair = Pair(workdir, impl, row.specs(), log_level=log_level)
    try:
        pair.start_all()
        pair.wait_converged(15.0 + 5 * row.interval)
        capture = Capture(pair.lab, "client")
        probe = Probe(
            pair.lab, "client", "10.99.0.100", interval=PROBE_INTERVAL, max_duration=170.0
        )
        probe.start()
        probe.wait_received(20, timeout=10.0)
        obs = Observer(pair)
        obs.mark()
        t_first = time.time()
        spans: list[tuple[float, float]] = []  # wall time of each SIGHUP .. reload done
        took: list[float] = []
        window = 4 * row.interval + 0.5
        for step in range(1, reloads + 1):
            for node in reloaded_nodes(row):
                step_mark = Observer(pair)
                step_mark.mark()
                write_config(pair, row, step, node)
                t0 = time.monotonic()
                w0 = time.time()
                sighup(pair, node)
                failed: list[str] = []

                def done(
                    m: Observer = step_mark, failed: list[str] = failed, node: str = node
                ) -> bool:
                    state = m.reload_done(node)
                    if isinstance(state, str):
                        failed.append(state)
                        return True
                    return state

                pair.lab.wait_for(
                    done, timeout=20.0, interval=0.01, what=f"{impl} reload {step} of {node}"
                )
                if failed:
                    raise BenchError(failed[0])
                if node == "n1":
                    took.append(time.monotonic() - t0)
                    spans.append((w0, time.time()))
            # Watch: as many probe replies as the window holds.
            probe.wait_received(int(window / PROBE_INTERVAL * 0.9), timeout=window + 10.0)
        t_last = time.time()
        result = probe.stop()
        adverts = advert_times(capture.read(), N1_ADDR, 51)
        capture.close()
        times = [t for t, _ in adverts if t_first - row.interval <= t <= t_last]
        flips = obs.transitions("VI_1")
        if time.monotonic() - started > ROUND_LIMIT_S:
            raise BenchError(f"round took longer than {ROUND_LIMIT_S}s")
        return {
            "impl": impl,
            "row": row.key,
            "reloads": reloads,
            "transitions": len(flips),
            "transition_lines": flips[:20],
            "lost": result.lost,
            "sent": result.sent,
            "outage_ms": round(result.longest_outage_ms, 1),
            "max_advert_gap_ms": round(longest_gap(times) * 1000, 1),
            "max_advert_gap_at_reload_ms": round(gap_near(times, spans, row.interval) * 1000, 1),
            "adverts": len(times),
            "reload_ms": [round(t * 1000, 1) for t in took],
            "round_s": round(time.monotonic() - started, 2),
            "loadavg_1m": load_average(),
        }
    finally:
        pair.close()


# ---------------------------------------------------------------------- summary


def summarize(rows: Sequence[Row], samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        entry = row.to_dict()
        for impl in IMPLS:
            ok = [s for s in samples if s["row"] == row.key and s["impl"] == impl]
            good = [s for s in ok if "error" not in s]
            entry[impl] = {
                "rounds": len(good),
                "errors": len(ok) - len(good),
                "reloads": sum(s["reloads"] for s in good),
                "transitions": sum(s["transitions"] for s in good),
                "lost": sum(s["lost"] for s in good),
                "max_outage_ms": max((s["outage_ms"] for s in good), default=None),
                "max_advert_gap_ms": max((s["max_advert_gap_ms"] for s in good), default=None),
                "max_advert_gap_at_reload_ms": max(
                    (s["max_advert_gap_at_reload_ms"] for s in good), default=None
                ),
                "median_reload_ms": (
                    round(statistics.median([t for s in good for t in s["reload_ms"]]), 1)
                    if good
                    else None
                ),
            }
        out.append(entry)
    return out


def table(summary: Sequence[dict[str, Any]]) -> str:
    head = (
        "| row | impl | reloads | VI_1 transitions | lost probes | longest outage ms "
        "| longest advert gap ms: at a reload / anywhere | reload ms (median) |"
    )
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for e in summary:
        for impl in IMPLS:
            s = e[impl]
            if not s["rounds"]:
                lines.append(f"| {e['row']} | {impl} | - | - | - | - | - | - |")
                continue
            lines.append(
                f"| {e['row']} | {impl} | {s['reloads']} | {s['transitions']} | {s['lost']} "
                f"| {s['max_outage_ms']:.0f} "
                f"| {s['max_advert_gap_at_reload_ms']:.0f} / {s['max_advert_gap_ms']:.0f} "
                f"| {s['median_reload_ms']:.0f} |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.reload",
        description="Reload a master with an unrelated change: keepalived vs vigil.",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds per row and implementation")
    p.add_argument("--reloads", type=int, default=5, help="reloads per round")
    p.add_argument("--rows", nargs="+", metavar="PATTERN", help="row keys or shell patterns")
    p.add_argument("--impl", choices=IMPLS, action="append", help="only this implementation")
    p.add_argument("--json", type=Path, help="result file (default bench/results/...)")
    p.add_argument("--workdir", type=Path, help="logs and configs (default bench/results/)")
    p.add_argument("--log-level", default="info", choices=("debug", "info"))
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 100:
        p.error(f"--rounds {args.rounds}: must be 1..100")
    if not 1 <= args.reloads <= 50:
        p.error(f"--reloads {args.reloads}: must be 1..50")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(r.key for r in ROWS))
        return 0
    rows = select_rows(args.rows)
    if os.geteuid() != 0:
        print("bench.reload: needs root (network namespaces)", file=sys.stderr)
        return 2
    impls = tuple(args.impl or IMPLS)
    out, workdir, doc = run_header("reload", argv, args.json, args.workdir)
    doc |= {
        "rounds": args.rounds,
        "reloads_per_round": args.reloads,
        "probe_interval_ms": PROBE_INTERVAL * 1000,
        "machine": machine(),
    }

    def measure(row: Row, impl: str, rnd: int) -> dict[str, Any]:
        wd = workdir / row.key / f"{impl}-r{rnd + 1}"
        return run_round(row, impl, wd, args.reloads, args.log_level)

    samples, interrupted = run_rounds(
        "reload",
        args.rounds,
        rows,
        impls,
        measure,
        lambda s: (
            f"{s['transitions']} transitions, {s['lost']} lost, "
            f"advert gap {s['max_advert_gap_at_reload_ms']} ms at a reload, "
            f"{s['max_advert_gap_ms']} ms anywhere"
        ),
        errors=(BenchError, AssertionError),
    )
    doc["samples"] = samples
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["interrupted"] = interrupted
    doc["summary"] = summarize(rows, samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print()
    print(table(doc["summary"]))
    print(f"\nJSON: {out}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
