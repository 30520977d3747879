"""``python -m bench.soak [--minutes 30] [--seed 1] [--json FILE] [--workdir DIR]``.

Options: ``--only KIND ...`` restricts the injections, ``--gap MIN MAX`` the seconds
between two (start to start), ``--advert-interval`` the VRRPv3 instances' interval,
``--list`` prints the schedule and exits. Exit status 1 when an invariant was violated.
``SOAK_MINUTES`` is the default for ``--minutes`` (``make soak SOAK_MINUTES=10``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.soak.injections import INJECTIONS
from bench.soak.model import default_groups
from bench.soak.runner import run_soak, table
from bench.soak.schedule import make_schedule

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "bench" / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30")))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--advert-interval", type=float, default=0.1)
    p.add_argument("--gap", nargs=2, type=float, default=(2.0, 5.0), metavar=("MIN", "MAX"))
    p.add_argument("--only", nargs="+", default=[], choices=sorted(INJECTIONS), metavar="KIND")
    p.add_argument("--json", type=Path, help="result (default bench/results/soak-DATE.json)")
    p.add_argument("--workdir", type=Path, help="lab logs (default: a temporary directory)")
    p.add_argument("--list", action="store_true", help="print the schedule and exit")
    args = p.parse_args(argv)
    if not 0 < args.minutes <= 24 * 60:
        p.error("--minutes: more than 0, at most a day")
    args.gap_min, args.gap_max = args.gap
    if not 0.5 <= args.gap_min <= args.gap_max:
        p.error("--gap: 0.5 <= MIN <= MAX")
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.list:
        groups = default_groups(args.advert_interval)
        steps = make_schedule(args.seed, args.minutes * 60, groups, INJECTIONS,
                              gap=(args.gap_min, args.gap_max), only=args.only)  # fmt: skip
        for step in steps:
            print(json.dumps(step.to_dict()))
        return 0
    if os.geteuid() != 0:
        print("bench.soak: needs root (namespaces, nftables, tmpfs)", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_soak(args, workdir)
    out = args.json or RESULTS / f"soak-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(table(result))
    print(f"result: {out}   lab logs: {workdir}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
