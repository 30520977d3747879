"""Fuzz at the socket: malformed VRRP at a running vigild pair, and what it did to them.

    python -m bench.fuzz_vrrp [--count 1000000] [--rate 10000] [--seed 1]
                              [--advert-interval 1] [--json FILE] [--workdir DIR]
    python -m bench.fuzz_vrrp --dump K [--seed 1] [--count N]   # packet K, how it was made

A lab (tests.lab): switch, n1 (vigild, priority 150, master), n2 (vigild, priority 100)
and a fuzzer namespace ``fz`` on the same bridge, with fixed MAC and IP addresses so a
seed names the same packets on every run. The agents run three instances: VI_4 (VRRPv3,
IPv4), VI_6 (VRRPv3, IPv6) and VI_2 (VRRPv2 with PASS authentication). The fuzzer
(:mod:`bench.fuzz.sender`, in ``fz``) first builds every frame from the packet families
(:mod:`bench.fuzz.vrrp`: scapy templates and 21 kinds of malformation, IPv4 and IPv6,
to the VRRP group and to each agent's unicast address), then sends them on an AF_PACKET
socket at ``--rate`` packets per second.

Measured, from outside the agents:

- packets sent (per kind), and how many had their priority neutralized (never send a
  valid advert that may legitimately move mastership, see bench.fuzz.vrrp);
- crashes: an agent that exited, or whose pid changed (goal 0); internal errors: tracebacks
  in the agents' logs;
- state changes (goal 0): ``vrrp_transition`` events on either agent's event stream and
  VIP addresses appearing or disappearing in either namespace (rtnetlink), from the start
  of the flood to the end of the settling window;
- RSS drift (goal within 5 MB): VmRSS before the flood and after it (peak as well);
- the worst advert gap on the wire from the master (goal within 1.1x the interval): a
  capture on the master's bridge port (kernel timestamps, BPF on its MAC and protocol 112),
  per instance, from one interval before the flood to the end of the settling window, and
  how many adverts it sent beyond one per interval (answers to lower-priority adverts);
- the agents' reject counters by reason (per-instance ``counters.rejected``, the unknown-VRID
  counter, accepted adverts), and what the kernel dropped before the agents saw it (IP
  header errors, raw socket drops: bad IPv6 checksums, full buffers).

Writes JSON (default bench/results/fuzz-vrrp-<UTC date>.json) and prints a summary; exits 1
when a goal was missed (crash, state change, RSS drift over 5 MB, an advert gap over 1.1x).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.fuzz.engine import FuzzPlan, InstanceInfo, TargetInfo, family, generate_batch
from tests.lab.agents import AgentHandle
from tests.lab.capture import Capture, Frame
from tests.lab.lab import Lab
from tests.lab.observe import AddressWatch, EventFollower, proc_sample
from tests.lab.waiting import wait_for

__all__ = ["FuzzRun", "advert_gaps", "main", "make_plan", "node_config"]

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
RSS_DRIFT_LIMIT_KB = 5 * 1024
GAP_LIMIT = 1.1

#: the lab's fixed addresses (a seed names the same packets on every run)
NODES = {
    "n1": {"mac": "02:00:0a:63:00:0b", "ipv4": "10.99.0.11", "ipv6": "fd00:99::11",
           "priority": 150},
    "n2": {"mac": "02:00:0a:63:00:0c", "ipv4": "10.99.0.12", "ipv6": "fd00:99::12",
           "priority": 100},
}  # fmt: skip
FUZZER = {"mac": "02:00:0a:63:00:1e", "ipv4": "10.99.0.30", "ipv6": "fd00:99::30"}
PASSWORD = "fuzzpass"


def link_local(mac: str) -> str:
    """The EUI-64 link-local address the kernel gives an interface with this MAC."""
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    eui = [*b[:3], 0xFF, 0xFE, *b[3:]]
    groups = [f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2)]
    return "fe80::" + ":".join(groups)


def instances(interval: int) -> tuple[InstanceInfo, ...]:
    return (
        InstanceInfo("VI_4", 51, 3, 4, interval * 100, ("10.99.0.100",)),
        InstanceInfo("VI_6", 52, 3, 6, interval * 100, ("fd00:99::100",)),
        InstanceInfo("VI_2", 53, 2, 4, interval, ("10.99.0.102",), PASSWORD),
    )


def node_config(name: str, interval: int) -> dict[str, Any]:
    prio = int(NODES[name]["priority"])  # type: ignore[call-overload]
    out = []
    for inst in instances(interval):
        item: dict[str, Any] = {
            "name": inst.name,
            "interface": "eth0",
            "vrid": inst.vrid,
            "priority": prio,
            "version": inst.version,
            "advert_interval": interval,
            "virtual_ipaddresses": [f"{v}/{24 if inst.family == 4 else 64}" for v in inst.vips],
        }
        if inst.auth_password:
            item["authentication"] = {"type": "pass", "password": inst.auth_password}
        out.append(item)
    return {"global": {"router_id": name}, "vrrp_instances": out}


def make_plan(args: argparse.Namespace) -> FuzzPlan:
    targets = tuple(
        TargetInfo(name, str(n["mac"]), str(n["ipv4"]), str(n["ipv6"]), link_local(str(n["mac"])))
        for name, n in NODES.items()
    )
    count = int(args.count)
    rate = float(args.rate)
    return FuzzPlan(
        seed=int(args.seed),
        count=count,
        rate=rate,
        max_seconds=float(args.max_seconds or (count / rate * 1.5 + 30 if rate else 600)),
        ifname="eth0",
        src_mac=FUZZER["mac"],
        src_ipv4=FUZZER["ipv4"],
        src_ipv6_ll=link_local(FUZZER["mac"]),
        targets=targets,
        instances=instances(int(args.advert_interval)),
        safe_priority_below=min(int(n["priority"]) for n in NODES.values()),  # type: ignore[call-overload]
        families=tuple((f, 1.0) for f in args.families),
    )


# ---------------------------------------------------------------------- measurements


def _kernel_counters(pid: int) -> dict[str, int]:
    """IP-layer drop counters and raw-socket drops in the agent's namespace."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        lines = Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
        for head, vals in zip(lines[::2], lines[1::2], strict=False):
            keys, values = head.split()[1:], vals.split()[1:]
            if head.startswith("Ip:"):
                for k, v in zip(keys, values, strict=False):
                    if k in ("InHdrErrors", "InAddrErrors", "InDiscards", "ReasmFails",
                             "InUnknownProtos"):  # fmt: skip
                        out[f"ip4_{k}"] = int(v)
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/snmp6").read_text().splitlines():
            k, _, v = line.partition(" ")
            if k in ("Ip6InHdrErrors", "Ip6InDiscards", "Ip6InTruncatedPkts", "Ip6InAddrErrors",
                     "Ip6ReasmFails", "Ip6InUnknownProtos"):  # fmt: skip
                out[k.lower()] = int(v.strip())
    for name in ("raw", "raw6"):
        total = 0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 2 and cols[1].endswith(":0070"):  # protocol 112
                    total += int(cols[-1])
        out[f"{name}_socket_drops"] = total
    return out


def _cpu_seconds(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _counters(agent: AgentHandle) -> dict[str, Any]:
    status, body = agent.client.get("/v1/status")
    if status != 200:
        raise RuntimeError(f"status of {agent.node.name}: {status} {body}")
    vrrp = body["vrrp"]
    rejected: Counter[str] = Counter()
    received = 0
    states = {}
    per_instance = {}
    for inst in vrrp["instances"]:
        c = inst["counters"]
        rejected.update(c.get("rejected", {}))
        received += int(c.get("adverts_received", 0))
        states[inst["name"]] = inst["state"]
        per_instance[inst["name"]] = {
            "rejected": dict(c.get("rejected", {})),
            "adverts_received": c.get("adverts_received", 0),
            "adverts_sent": c.get("adverts_sent", 0),
        }
    return {
        "rejected": dict(rejected),
        "adverts_received": received,
        "unknown_vrid": sum(int(v) for v in vrrp.get("unknown_vrid", {}).values()),
        "states": states,
        "instances": per_instance,
    }


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = sorted(set(after) | set(before))
    return {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in keys}


def advert_gaps(
    frames: Sequence[Frame], start: float, end: float, interval: float
) -> dict[str, dict[str, Any]]:
    """Per instance (``IPv4/VRID``): the worst gap between consecutive adverts that falls
    in [start, end] (the last advert before ``start`` opens the first gap), as seconds and
    as a multiple of ``interval``, and the adverts sent beyond one per interval."""
    times: dict[str, list[float]] = defaultdict(list)
    for f in frames:
        data = f.data
        if len(data) < 14:
            continue
        ethertype = int.from_bytes(data[12:14], "big")
        if ethertype == 0x0800 and len(data) >= 34:
            off = 14 + (data[14] & 0x0F) * 4
            key = f"IPv4/{data[off + 1]}" if len(data) > off + 1 else None
        elif ethertype == 0x86DD and len(data) >= 56:
            key = f"IPv6/{data[55]}"
        else:
            key = None
        if key is not None:
            times[key].append(f.time)
    out: dict[str, dict[str, Any]] = {}
    for key, ts in sorted(times.items()):
        ts.sort()
        before = [t for t in ts if t < start]
        inside = [t for t in ts if start <= t <= end]
        seq = ([before[-1]] if before else []) + inside
        gaps = [b - a for a, b in itertools.pairwise(seq)]
        worst = max(gaps, default=0.0)
        expected = (end - start) / interval
        out[key] = {
            "adverts": len(inside),
            "expected_about": round(expected, 1),
            "extra_adverts": max(0, len(inside) - int(expected) - 1),
            "worst_gap_s": round(worst, 4),
            "worst_gap_x": round(worst / interval, 3) if interval else None,
        }
    return out


class FuzzRun:
    """One run: the lab, the agents, the observers; ``run()`` returns the result."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.interval = int(args.advert_interval)
        self.plan = make_plan(args)

    def build(self, lab: Lab) -> dict[str, AgentHandle]:
        lab.add_switch()
        for name, n in NODES.items():
            lab.add_namespace(name)
            lab.connect(name, addrs=[f"{n['ipv4']}/24", f"{n['ipv6']}/64"], mac=str(n["mac"]))
        lab.add_namespace("fz")
        lab.connect("fz", addrs=[f"{FUZZER['ipv4']}/24", f"{FUZZER['ipv6']}/64"], mac=FUZZER["mac"])
        agents = {name: lab.start_vigild(name, node_config(name, self.interval)) for name in NODES}
        vips = [v for inst in self.plan.instances for v in inst.vips]
        lab.wait_for(
            lambda: all(lab.has_address("n1", v) for v in vips),
            timeout=10 + 4 * self.interval,
            what="n1 to hold every VIP",
        )

        def backup_sees_master() -> bool:
            st = _counters(agents["n2"])["states"]
            return all(s == "BACKUP" for s in st.values())

        lab.wait_for(backup_sees_master, timeout=10, what="n2 BACKUP in every instance")
        return agents

    def run(self, lab: Lab) -> dict[str, Any]:
        args = self.args
        agents = self.build(lab)
        vips = {v for inst in self.plan.instances for v in inst.vips}
        watch = AddressWatch(lab)
        for name in NODES:
            watch.watch(name)
        followers = {name: EventFollower(name, a.socket_path).start() for name, a in agents.items()}
        lab.add_cleanup(lambda: [f.close() for f in followers.values()])
        master_port = lab.link("n1").port
        capture = Capture(
            lab,
            "sw",
            master_port,
            bpf=f"ether src {NODES['n1']['mac']} and (ip proto 112 or ip6 proto 112)",
        )
        # Events already buffered (start-up) arrive first; wait until both streams are live.
        lab.wait_for(
            lambda: all(
                any(e.kind == "agent_started" for e in f.snapshot()) for f in followers.values()
            ),
            timeout=10,
            what="both event streams",
        )

        plan_path = self.workdir / "plan.json"
        plan_path.write_text(json.dumps(self.plan.to_dict(), indent=1))
        out_path = self.workdir / "sender.json"
        progress_path = self.workdir / "sender.progress"
        sender = lab.spawn(
            "fz",
            [sys.executable, "-m", "bench.fuzz.sender", "--plan", str(plan_path),
             "--out", str(out_path), "--progress", str(progress_path)],
            name="fuzzer", cwd=REPO_ROOT, env={"PYTHONPATH": _pythonpath()},
        )  # fmt: skip

        def progress() -> dict[str, Any]:
            try:
                return dict(json.loads(progress_path.read_text()))
            except (OSError, ValueError):
                return {}

        def built() -> bool:
            if not sender.alive():
                raise RuntimeError(f"the fuzzer exited while building:\n{sender.log_text(tail=30)}")
            return progress().get("phase") == "built"

        build_timeout = 120 + self.plan.count / 2000
        wait_for(built, timeout=build_timeout, interval=0.2, what="the fuzzer to build its frames")

        pids = {name: a.pid for name, a in agents.items()}
        before = {name: _counters(a) for name, a in agents.items()}
        kernel_before = {name: _kernel_counters(a.pid) for name, a in agents.items()}
        cpu_before = {name: _cpu_seconds(a.pid) for name, a in agents.items()}
        rss_before = {name: proc_sample(a.pid) for name, a in agents.items()}
        log_size = {name: a.process.log_path.stat().st_size for name, a in agents.items()}
        t_start = time.monotonic()
        if not sender.signal(signal.SIGUSR1):
            raise RuntimeError(f"the fuzzer is gone:\n{sender.log_text(tail=30)}")

        rss_peak = {name: s.rss_kb if s else 0 for name, s in rss_before.items()}
        send_timeout = self.plan.max_seconds + 30

        def sent_all() -> bool:
            for name, a in agents.items():
                s = proc_sample(a.pid)
                if s is not None:
                    rss_peak[name] = max(rss_peak[name], s.rss_kb)
            capture.read()
            return not sender.alive() or progress().get("phase") == "done"

        wait_for(sent_all, timeout=send_timeout, interval=0.5, what="the fuzzer to finish")
        t_flood_end = time.monotonic()
        with contextlib.suppress(Exception):
            sender.wait(timeout=10)
        sent = json.loads(out_path.read_text()) if out_path.exists() else {"sent": 0}

        # Settle: three more adverts of every instance from the master after the flood.
        wall_end = time.time()
        capture.wait(lambda f: f.time > wall_end, count=3 * len(self.plan.instances),
                     timeout=5 * self.interval + 5)  # fmt: skip
        t_end = time.monotonic()

        after = {name: _counters(a) for name, a in agents.items()}
        kernel_after = {name: _kernel_counters(a.pid) for name, a in agents.items()}
        cpu_after = {name: _cpu_seconds(a.pid) for name, a in agents.items()}
        rss_after = {name: proc_sample(a.pid) for name, a in agents.items()}

        crashes = []
        for name, a in agents.items():
            if not a.process.alive() or a.pid != pids[name]:
                crashes.append(f"{name}: exited {a.process.returncode}")
        transitions = [
            {"node": e.node, "seq": e.event.get("seq"), "message": e.event.get("message")}
            for f in followers.values()
            for e in f.snapshot()
            if t_start <= e.time <= t_end and e.kind == "vrrp_transition"
        ]
        vip_moves = [
            {"node": c.node, "address": str(c.address), "present": c.present,
             "t": round(c.time - t_start, 3)}
            for c in watch.changes
            if t_start <= c.time <= t_end and str(c.address) in vips
        ]  # fmt: skip
        state_changes = [
            f"{name}/{inst}: {before[name]['states'][inst]} -> {st}"
            for name in agents
            for inst, st in after[name]["states"].items()
            if before[name]["states"].get(inst) != st
        ]
        # Capture times are wall clock (kernel stamps); map the monotonic window onto it.
        offset = time.time() - time.monotonic()
        gaps = advert_gaps(capture.read(), t_start + offset, t_end + offset, self.interval)
        worst_x = max((g["worst_gap_x"] or 0.0 for g in gaps.values()), default=0.0)

        agents_out: dict[str, Any] = {}
        for name, a in agents.items():
            b, c = rss_before[name], rss_after[name]
            log_text = a.log(tail=None)
            new_log = a.process.log_path.read_bytes()[log_size[name] :].decode(errors="replace")
            cpu_a, cpu_b = cpu_after[name], cpu_before[name]
            agents_out[name] = {
                "pid": a.pid,
                "alive": a.process.alive(),
                "rss_kb_before": b.rss_kb if b else None,
                "rss_kb_after": c.rss_kb if c else None,
                "rss_kb_peak": rss_peak[name],
                "rss_drift_kb": (c.rss_kb - b.rss_kb) if b and c else None,
                "fds_before": b.fds if b else None,
                "fds_after": c.fds if c else None,
                "cpu_s": round(cpu_a - cpu_b, 2)
                if cpu_a is not None and cpu_b is not None
                else None,
                "rejected": _delta(after[name]["rejected"], before[name]["rejected"]),
                "unknown_vrid": after[name]["unknown_vrid"] - before[name]["unknown_vrid"],
                "adverts_received": after[name]["adverts_received"]
                - before[name]["adverts_received"],
                "kernel_drops": _delta(kernel_after[name], kernel_before[name]),
                "states": after[name]["states"],
                "tracebacks": log_text.count("Traceback"),
                "log_lines_during_run": new_log.count("\n"),
            }
        drifts = [a["rss_drift_kb"] for a in agents_out.values() if a["rss_drift_kb"] is not None]
        goals = {
            "crashes": len(crashes) == 0,
            "state_changes": not (transitions or vip_moves or state_changes),
            "rss_drift_within_5MB": bool(drifts) and max(drifts) <= RSS_DRIFT_LIMIT_KB,
            "advert_gap_within_1.1x": worst_x <= GAP_LIMIT,
            "internal_errors": all(a["tracebacks"] == 0 for a in agents_out.values()),
        }
        return {
            "tool": "bench.fuzz_vrrp",
            "command": "python -m bench.fuzz_vrrp " + " ".join(args.argv),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": self.plan.seed,
            "advert_interval_s": self.interval,
            "instances": [i.name for i in self.plan.instances],
            "families": [f for f, _ in self.plan.families],
            "sender": sent,
            "flood_s": round(t_flood_end - t_start, 2),
            "observed_s": round(t_end - t_start, 2),
            "crashes": crashes,
            "transitions": transitions,
            "vip_changes": vip_moves,
            "state_changes": state_changes,
            "advert_gaps": gaps,
            "worst_advert_gap_x": worst_x,
            "agents": agents_out,
            "event_stream_reconnects": {n: f.reconnects for n, f in followers.items()},
            "goals": goals,
            "ok": all(goals.values()),
        }


def summary(result: dict[str, Any]) -> str:
    s = result["sender"]
    lines = [
        f"fuzz: {s.get('sent', 0):,} packets sent in {s.get('send_s', 0)} s "
        f"({s.get('rate_pps')} pps), seed {result['seed']}, "
        f"{s.get('neutralized', 0)} neutralized, advert interval {result['advert_interval_s']} s",
        f"crashes: {len(result['crashes'])}   state changes: "
        f"{len(result['transitions']) + len(result['vip_changes']) + len(result['state_changes'])}"
        f"   worst advert gap: {result['worst_advert_gap_x']}x",
    ]
    for name, a in result["agents"].items():
        rej = ", ".join(
            f"{k} {v:,}" for k, v in sorted(a["rejected"].items(), key=lambda kv: -kv[1])
        )
        kern = ", ".join(f"{k} {v:,}" for k, v in a["kernel_drops"].items() if v)
        lines.append(
            f"{name}: RSS {a['rss_kb_before']} -> {a['rss_kb_after']} KiB "
            f"(drift {a['rss_drift_kb']} KiB, peak {a['rss_kb_peak']}), fds {a['fds_before']} -> "
            f"{a['fds_after']}, CPU {a['cpu_s']} s, tracebacks {a['tracebacks']}, "
            f"log lines {a['log_lines_during_run']}"
        )
        lines.append(
            f"  accepted {a['adverts_received']:,}, unknown VRID {a['unknown_vrid']:,}; "
            f"rejected: {rej or 'none'}"
        )
        lines.append(f"  kernel dropped: {kern or 'nothing'}")
    for key, g in result["advert_gaps"].items():
        lines.append(
            f"  master adverts {key}: {g['adverts']} (about {g['expected_about']} due), "
            f"worst gap {g['worst_gap_s']} s = {g['worst_gap_x']}x, extra {g['extra_adverts']}"
        )
    failed = [k for k, ok in result["goals"].items() if not ok]
    lines.append("goals: all met" if not failed else f"goals missed: {', '.join(failed)}")
    return "\n".join(lines)


def dump(args: argparse.Namespace, index: int) -> int:
    plan = make_plan(args)
    if not 0 <= index < plan.count:
        print(f"--dump {index}: the plan has packets 0..{plan.count - 1}", file=sys.stderr)
        return 2
    gens = {name: family(name).generator(plan) for name, _w in plan.families}
    batch = list(generate_batch(plan, gens, index // plan.batch))
    m = batch[index % plan.batch]
    print(f"packet {index} of seed {plan.seed}: {m.family}/{m.kind}: {m.note}")
    print(m.frame.hex())
    with contextlib.suppress(ImportError):
        from scapy.layers.l2 import Ether

        Ether(m.frame).show()
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.fuzz_vrrp", description=__doc__.split("\n")[0]
    )
    p.add_argument("--count", type=int, default=1_000_000, help="packets to send")
    p.add_argument("--rate", type=float, default=10_000, help="packets per second (0: no pacing)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--max-seconds",
        type=float,
        default=0,
        help="bound on sending (default: from count and rate)",
    )
    p.add_argument(
        "--advert-interval",
        type=int,
        default=1,
        choices=range(1, 11),
        metavar="1..10",
        help="the instances' advert interval (whole seconds: VI_2 is VRRPv2)",
    )
    p.add_argument("--families", nargs="+", default=["vrrp"], help="packet families to send")
    p.add_argument(
        "--json", type=Path, help="result file (default bench/results/fuzz-vrrp-DATE.json)"
    )
    p.add_argument(
        "--workdir", type=Path, help="lab logs and plan (default: a temporary directory)"
    )
    p.add_argument("--dump", type=int, metavar="K", help="print packet K of the plan and exit")
    args = p.parse_args(argv)
    args.argv = argv
    if args.count < 1 or args.count > 50_000_000:
        p.error("--count: 1..50,000,000")
    if args.rate < 0:
        p.error("--rate: 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.dump is not None:
        return dump(args, args.dump)
    if os.geteuid() != 0:
        print("bench.fuzz_vrrp: needs root (namespaces, raw sockets)", file=sys.stderr)
        return 2
    import tempfile

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vigil-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    run = FuzzRun(args, workdir)
    with Lab(workdir / "lab") as lab:
        result = run.run(lab)
    result["machine"] = _machine()
    out = args.json or RESULTS / f"fuzz-vrrp-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(summary(result))
    print(f"result: {out}   lab logs: {workdir}")
    return 0 if result["ok"] else 1


def _pythonpath() -> str:
    """The repository first, then whatever the caller had (the agent's sources)."""
    parts = [str(REPO_ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return os.pathsep.join(p for p in parts if p)


def _machine() -> dict[str, Any]:
    from bench.failover import load_average, machine

    return {**machine(), "load_average": load_average()}


if __name__ == "__main__":
    sys.exit(main())
