"""Plot client-observed outage per failure type, keepalived vs vigil, from failover JSON.

    python -m bench.plot RESULT.json [--out docs/img/failover.png]

One panel per (VRRP version, advert interval, family); in each, a pair of bars per failure
type (the median of the rounds) with every round's outage drawn as a dot on its bar, so
the spread is visible next to the median.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["main", "plot"]

REPO_ROOT = Path(__file__).resolve().parents[1]
COLORS = {"keepalived": "#7f7f7f", "vigil": "#1f77b4"}
FAILURE_ORDER = ("crash", "stop", "linkdown", "recovery")


def _setting(entry: dict[str, Any]) -> str:
    return f"VRRPv{entry['version']}, advert {entry['advert_interval']:g} s, IPv{entry['family']}"


def plot(doc: dict[str, Any], out: Path) -> Path:
    summary = doc["summary"]
    settings: list[str] = []
    for e in summary:
        if _setting(e) not in settings:
            settings.append(_setting(e))
    if not settings:
        raise ValueError("the JSON has no summary rows to plot")
    cols = min(2, len(settings))
    nrows = (len(settings) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.6 * cols, 4.4 * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(settings) :]:
        ax.set_visible(False)
    width = 0.38
    for ax, setting in zip(flat, settings, strict=False):
        rows = [e for e in summary if _setting(e) == setting]
        rows.sort(key=lambda e: FAILURE_ORDER.index(e["failure"]))
        for offset, impl in ((-width / 2, "keepalived"), (width / 2, "vigil")):
            xs = [i + offset for i in range(len(rows))]
            medians = [e[impl]["median_ms"] or 0.0 for e in rows]
            ax.bar(xs, medians, width, label=impl, color=COLORS[impl], alpha=0.85)
            for x, e in zip(xs, rows, strict=True):
                samples = e[impl].get("samples_ms") or []
                ax.scatter([x] * len(samples), samples, s=9, color="black", zorder=3)
                if e[impl]["median_ms"] is not None:
                    ax.annotate(
                        f"{e[impl]['median_ms']:.0f}",
                        (x, e[impl]["median_ms"]),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        xytext=(0, 2),
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"},
                        textcoords="offset points",
                    )
        ax.set_xticks(range(len(rows)), [e["failure"] for e in rows])
        ax.set_title(setting, fontsize=10)
        ax.set_ylabel("client-observed outage, ms (median; dots = rounds)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    rounds = doc.get("rounds")
    fig.suptitle(
        f"Failover outage seen by a client probing the VIP every "
        f"{doc.get('probe_interval_ms', 10):g} ms ({rounds} rounds per bar)",
        fontsize=11,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__.split("\n")[0])
    p.add_argument("json", type=Path, help="a bench.failover result file")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "img" / "failover.png")
    args = p.parse_args(argv)
    try:
        doc = json.loads(args.json.read_text())
    except (OSError, ValueError) as exc:
        p.error(f"{args.json}: cannot read a failover result: {exc}")
    if doc.get("benchmark") != "failover" or "summary" not in doc:
        p.error(f"{args.json}: not a bench.failover result (no 'summary'); run bench.failover")
    print(plot(doc, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
