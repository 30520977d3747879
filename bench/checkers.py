"""CPU of the IPVS checker engine checking N real servers, for comparison with keepalived.

    python -m bench.checkers [--servers 1000] [--seconds 30] [--kind tcp|http|mixed]
                             [--delay-loop 1] [--concurrency 256] [--json FILE]
                             [--keepalived-conf FILE]

A lab (tests.lab) gets a director namespace ``lb`` and a server namespace ``srv`` with
one address per 250 servers (10.78.1.N), each served on ports 9000-9249 by
tests.lab.check_servers (HTTP, so TCP and HTTP checks hit the same backends). The engine
runs alone in its own process in ``lb`` (``--child``): it starts, lets the warmup and one
round pass, then measures a window of ``--seconds``: its own CPU (getrusage), the runs it
completed, and the lateness of a 10 ms ticker on its loop. The parent reads the
scheduler's count for the child's whole process group (/proc/PID/task/TID/schedstat, as
bench.cpu does) over the same window. CPU % = used / window (100 % = one core).

The host kernel has no IPVS, so keepalived's checker cannot run here;
``--keepalived-conf`` writes the equivalent keepalived.conf (one virtual server per port
with the same real servers and checks) for running it in the IPVS VM (docs/testing.md)
against the same lab, so both are measured the same way there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PORT0 = 9000
PER_ADDRESS = 250


def addresses(count: int) -> list[str]:
    n = (count + PER_ADDRESS - 1) // PER_ADDRESS
    if n > 250:
        raise SystemExit("--servers: at most 62500")
    return [f"10.78.1.{i}" for i in range(1, n + 1)]


def plan(count: int, kind: str) -> list[tuple[str, int, str]]:
    """(address, port, check kind) for each real server."""
    out = []
    for i in range(count):
        addr = addresses(count)[i // PER_ADDRESS]
        port = PORT0 + i % PER_ADDRESS
        k = kind if kind != "mixed" else ("http" if i % 2 else "tcp")
        out.append((addr, port, k))
    return out


# ---------------------------------------------------------------------------- child


async def child_main(cfg: dict[str, Any]) -> dict[str, Any]:
    from vigil.ipvs.checkers import CheckEngine, HttpCheck, RealServer, TcpCheck

    timing = {
        "delay_loop": cfg["delay_loop"],
        "connect_timeout": 2.0,
        "retry": 1,
        "delay_before_retry": 1.0,
    }
    servers = []
    for addr, port, kind in cfg["plan"]:
        check = HttpCheck(**timing) if kind == "http" else TcpCheck(**timing)
        servers.append(RealServer(address=addr, port=port, checks=(check,)))
    engine = CheckEngine(servers, concurrency=cfg["concurrency"])
    await engine.start()
    print("started", flush=True)
    await asyncio.sleep(2 * cfg["delay_loop"] + 0.5)  # warmup + one round
    loop = asyncio.get_running_loop()
    r0, runs0, t0 = resource.getrusage(resource.RUSAGE_SELF), engine.stats.runs, loop.time()
    print("window-start", flush=True)
    lags: list[float] = []
    end = t0 + cfg["seconds"]
    while loop.time() < end:
        wanted = loop.time() + 0.01
        await asyncio.sleep(0.01)
        lags.append(loop.time() - wanted)
    r1, runs1, t1 = resource.getrusage(resource.RUSAGE_SELF), engine.stats.runs, loop.time()
    print("window-end", flush=True)
    down = sum(1 for s in engine.status() if not s["alive"])
    await engine.stop()
    lags.sort()
    wall = t1 - t0
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    return {
        "window_s": round(wall, 3),
        "runs_per_s": round((runs1 - runs0) / wall, 1),
        "rusage_cpu_pct": round(100 * (user + system) / wall, 2),
        "rusage_user_pct": round(100 * user / wall, 2),
        "rusage_sys_pct": round(100 * system / wall, 2),
        "us_per_run": round(1e6 * (user + system) / max(1, runs1 - runs0), 1),
        "lag_max_ms": round(1000 * lags[-1], 2) if lags else None,
        "lag_p99_ms": round(1000 * lags[int(len(lags) * 0.99)], 2) if lags else None,
        "servers_down": down,
        "peak_rss_mb": round(r1.ru_maxrss / 1024, 1),
        "stats": engine.stats.to_dict(),
    }


# ---------------------------------------------------------------------------- parent


def keepalived_conf(items: Sequence[tuple[str, int, str]], delay_loop: float) -> str:
    """The same servers and checks for keepalived: one virtual server per port."""
    by_port: dict[int, list[tuple[str, str]]] = {}
    for addr, port, kind in items:
        by_port.setdefault(port, []).append((addr, kind))
    lines = ["global_defs {", "  router_id bench_checkers", "}", ""]
    for port, members in sorted(by_port.items()):
        lines += [
            f"virtual_server 10.78.255.1 {port} {{",
            f"  delay_loop {delay_loop:g}",
            "  lb_algo rr",
            "  lb_kind NAT",
            "  protocol TCP",
        ]
        for addr, kind in members:
            lines.append(f"  real_server {addr} {port} {{")
            lines.append("    weight 1")
            if kind == "http":
                lines += [
                    "    HTTP_GET {",
                    "      url {",
                    "        path /",
                    "        status_code 200",
                    "      }",
                    "      connect_timeout 2",
                    "      retry 1",
                    "      delay_before_retry 1",
                    "    }",
                ]
            else:
                lines += [
                    "    TCP_CHECK {",
                    "      connect_timeout 2",
                    "      retry 1",
                    "      delay_before_retry 1",
                    "    }",
                ]
            lines.append("  }")
        lines += ["}", ""]
    return "\n".join(lines)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    from tests.lab.lab import Lab
    from tests.lab.waiting import wait_for

    from .cpu import sample_group

    items = plan(args.servers, args.kind)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-checkers-") as tmp, Lab(Path(tmp)) as lab:
        lab.add_switch()
        lab.add_namespace("lb")
        lab.connect("lb", addrs=["10.78.0.1/16"])
        lab.add_namespace("srv")
        lab.connect("srv", addrs=[f"{a}/16" for a in addresses(args.servers)])
        last = f"{PORT0}-{PORT0 + min(args.servers, PER_ADDRESS) - 1}"
        for addr in addresses(args.servers):
            proc = lab.spawn(
                "srv",
                [sys.executable, "-m", "tests.lab.check_servers", "--listen", addr,
                 "--ports", last, "--max-duration", str(args.seconds + 120)],
                name=f"web-{addr}",
                cwd=str(root),
            )  # fmt: skip
            wait_for(lambda p=proc: "listening" in p.log_text(), 15, what=f"servers on {addr}")
        cfg = {
            "plan": items,
            "delay_loop": args.delay_loop,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
        }
        cfg_path = Path(tmp) / "child.json"
        cfg_path.write_text(json.dumps(cfg))
        child = lab.spawn(
            "lb",
            [sys.executable, "-m", "bench.checkers", "--child", str(cfg_path)],
            name="engine",
            cwd=str(root),
        )
        budget = 2 * args.delay_loop + args.seconds + 60
        wait_for(lambda: "window-start" in child.log_text(), budget, what="engine window")
        s0, t0 = sample_group(child.pgid), time.monotonic()
        wait_for(lambda: "window-end" in child.log_text(), budget, interval=0.01, what="end")
        s1, t1 = sample_group(child.pgid), time.monotonic()
        wait_for(lambda: '"runs_per_s"' in child.log_text(), 30, what="engine report")
        report = json.loads(next(ln for ln in child.log_text().splitlines() if ln.startswith("{")))
    report.update(
        {
            "servers": args.servers,
            "kind": args.kind,
            "delay_loop": args.delay_loop,
            "concurrency": args.concurrency,
            "schedstat_cpu_pct": round(100 * (s1.cpu_s - s0.cpu_s) / (t1 - t0), 2),
            "python": sys.version.split()[0],
        }
    )
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.checkers", description=__doc__)
    p.add_argument("--servers", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--kind", choices=("tcp", "http", "mixed"), default="mixed")
    p.add_argument("--delay-loop", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--json", type=Path, help="write the report here too")
    p.add_argument("--keepalived-conf", type=Path, help="write the keepalived equivalent")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 1 <= args.servers <= 62500 or args.seconds <= 0 or args.delay_loop <= 0:
        p.error("--servers 1..62500, --seconds and --delay-loop > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        cfg = json.loads(args.child.read_text())
        print(json.dumps(asyncio.run(child_main(cfg))), flush=True)
        return 0
    if args.keepalived_conf is not None:
        conf = keepalived_conf(plan(args.servers, args.kind), args.delay_loop)
        args.keepalived_conf.write_text(conf)
        print(f"wrote {args.keepalived_conf}")
    report = run_bench(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
