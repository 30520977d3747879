"""Fuzz at the socket: malformed BFD at a running vigild pair with live sessions.

    python -m bench.fuzz_bfd [--count 1000000] [--rate 10000] [--seed 1] [--json FILE]
    python -m bench.fuzz_bfd --dump K [--seed 1]       # packet K, how it was made

A lab (tests.lab): switch, n1 (vigild, VRRP priority 150, master) and n2 (priority 100)
and a fuzzer namespace ``fz`` on the same bridge, with fixed MAC and IP addresses. The
agents run three BFD sessions with each other at ``--bfd-interval`` x 3 (300 ms: on a
shared 2-core machine under load a 300 ms stall of either agent is not rare, and it would
be a real Down that the fuzz did not cause): ``p4`` (IPv4), ``p6`` (IPv6)
and ``a4`` (IPv4 on a second subnet, meticulous keyed SHA1), and one VRRP instance VI_4
(VRRPv3, 1 s) whose ``fast_takeover_bfd`` is ``p4``, so a session that goes Down also
moves a VIP. Once every session is Up the fuzzer reads each session's discriminators from
the API and builds its packets from them (:mod:`bench.fuzz.bfd`: templates of what each
session's peer sends, 27 kinds of malformation, an independent receiver model; anything a
correct receiver would accept is sent with TTL 254 instead), then sends them at both
agents' unicast addresses on an AF_PACKET socket at ``--rate`` packets per second
(:mod:`bench.fuzz.sender`).

Measured, from outside the agents (goals in brackets):

- packets sent per kind, and how many were neutralized;
- crashes [0]: an agent that exited or whose pid changed; tracebacks in the logs [0];
- state changes [0]: ``bfd_transition`` and ``vrrp_transition`` events on either agent's
  stream, the sessions' and instance's states before and after, and VIP addresses
  appearing or disappearing (rtnetlink), from the start of the flood to the end of the
  settling window;
- RSS drift [within 5 MB]: VmRSS before and after the flood (peak as well);
- the master's packets on the wire (capture on its bridge port, kernel timestamps): the
  worst gap between its BFD packets per session (as a multiple of the interval; the
  detection time is 3x) and between its VRRP adverts [within 1.1x the interval];
- the agents' BFD counters: per-session ``rejects`` by reason, ``packets_in``, and
  ``bfd.unmatched`` (packets no session was found for, by reason), and what the kernel
  dropped before the agents saw anything (UDP checksum and length errors).

Writes JSON (default bench/results/fuzz-bfd-<UTC date>.json), prints a summary, exits 1
when a goal was missed.
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
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.fuzz.engine import FuzzPlan, TargetInfo, family, generate_batch
from bench.fuzz_vrrp import (
    GAP_LIMIT,
    RSS_DRIFT_LIMIT_KB,
    _cpu_seconds,
    _delta,
    _machine,
    _pythonpath,
    advert_gaps,
    link_local,
)
from tests.lab.agents import AgentHandle
from tests.lab.capture import Capture, Frame
from tests.lab.lab import Lab
from tests.lab.observe import AddressWatch, EventFollower, proc_sample
from tests.lab.waiting import wait_for

__all__ = ["BfdFuzzRun", "bfd_gaps", "main", "node_config"]

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"

NODES = {
    "n1": {"mac": "02:00:0a:63:00:0b", "ipv4": "10.99.0.11", "auth4": "10.99.1.11",
           "ipv6": "fd00:99::11", "priority": 150},
    "n2": {"mac": "02:00:0a:63:00:0c", "ipv4": "10.99.0.12", "auth4": "10.99.1.12",
           "ipv6": "fd00:99::12", "priority": 100},
}  # fmt: skip
FUZZER = {"mac": "02:00:0a:63:00:1e", "ipv4": "10.99.0.30", "ipv6": "fd00:99::30"}
VIP = "10.99.0.100"
INTERVAL = 0.3  # BFD min_tx / min_rx, seconds (--bfd-interval)
MULTIPLIER = 3
VRRP_INTERVAL = 1
AUTH_KEY_ID = 7
AUTH_SECRET = "fuzz-bfd-key"
SESSIONS = ("p4", "p6", "a4")


def _other(name: str) -> str:
    return "n2" if name == "n1" else "n1"


def node_config(name: str, interval: float = INTERVAL) -> dict[str, Any]:
    me, peer = NODES[name], NODES[_other(name)]
    timers = {"interface": "eth0", "min_tx": interval, "min_rx": interval,
              "multiplier": MULTIPLIER}  # fmt: skip
    sessions = [
        {"name": "p4", "peer": peer["ipv4"], "local": me["ipv4"], **timers},
        {"name": "p6", "peer": peer["ipv6"], "local": me["ipv6"], **timers},
        {
            "name": "a4",
            "peer": peer["auth4"],
            "local": me["auth4"],
            **timers,
            "auth": {
                "type": "meticulous_keyed_sha1",
                "keys": [{"id": AUTH_KEY_ID, "secret": AUTH_SECRET}],
            },
        },
    ]
    return {
        "global": {"router_id": name},
        "bfd": {"sessions": sessions},
        "vrrp_instances": [
            {
                "name": "VI_4",
                "interface": "eth0",
                "vrid": 51,
                "priority": me["priority"],
                "version": 3,
                "advert_interval": VRRP_INTERVAL,
                "fast_takeover_bfd": "p4",
                "virtual_ipaddresses": [f"{VIP}/24"],
            }
        ],
    }


def _bfd_status(agent: AgentHandle) -> dict[str, Any]:
    status, body = agent.client.get("/v1/status")
    if status != 200:
        raise RuntimeError(f"status of {agent.node.name}: {status} {body}")
    bfd = body["bfd"]
    sessions = {s["name"]: s for s in bfd["sessions"]}
    vrrp_states = {i["name"]: i["state"] for i in body["vrrp"]["instances"]}
    return {
        "states": {n: s["state"] for n, s in sessions.items()},
        "rejects": {n: dict(s.get("rejects", {})) for n, s in sessions.items()},
        "auth_failures": {n: int(s.get("auth_failures", 0)) for n, s in sessions.items()},
        "packets_in": {n: int(s["counters"]["packets_in"]) for n, s in sessions.items()},
        "packets_out": {n: int(s["counters"]["packets_out"]) for n, s in sessions.items()},
        "discr": {n: (s["local_discr"], s["remote_discr"]) for n, s in sessions.items()},
        "unmatched": dict(bfd.get("unmatched", {})),
        "vrrp": vrrp_states,
    }


def _udp_errors(pid: int) -> dict[str, int]:
    """The kernel's UDP error counters in the agent's namespace (checksum, length...)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        lines = Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
        for head, vals in zip(lines[::2], lines[1::2], strict=False):
            if head.startswith(("Udp:", "Ip:")):
                proto = head.split(":")[0].lower()
                for k, v in zip(head.split()[1:], vals.split()[1:], strict=False):
                    if k in ("InErrors", "InCsumErrors", "RcvbufErrors", "NoPorts",
                             "InHdrErrors", "InAddrErrors", "ReasmFails"):  # fmt: skip
                        out[f"{proto}_{k}"] = int(v)
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/snmp6").read_text().splitlines():
            k, _, v = line.partition(" ")
            if k in ("Udp6InErrors", "Udp6InCsumErrors", "Udp6RcvbufErrors", "Udp6NoPorts",
                     "Ip6InHdrErrors", "Ip6InTruncatedPkts", "Ip6ReasmFails"):  # fmt: skip
                out[k.lower()] = int(v.strip())
    return out


def _run_queue_wait(pid: int) -> float | None:
    """Seconds the process has waited for a CPU (/proc/PID/schedstat): on a shared machine
    a detection time can expire because the agent (or its peer) was not scheduled."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return None
    return int(fields[1]) / 1e9


def _is_vrrp(f: Frame) -> bool:
    d = f.data
    return len(d) > 34 and d[12:14] == b"\x08\x00" and d[23] == 112


def bfd_gaps(
    frames: Sequence[Frame], start: float, end: float, interval: float
) -> dict[str, dict[str, Any]]:
    """Per destination address: the worst gap between the master's BFD packets in
    [start, end] (the last one before ``start`` opens the first gap), in seconds and as a
    multiple of ``interval``."""
    import ipaddress

    times: dict[str, list[float]] = defaultdict(list)
    for f in frames:
        d = f.data
        if len(d) < 14:
            continue
        if d[12:14] == b"\x08\x00" and len(d) >= 34 and d[23] == 17:
            off = 14 + (d[14] & 0x0F) * 4
            if int.from_bytes(d[off + 2 : off + 4], "big") == 3784:
                times[str(ipaddress.IPv4Address(d[30:34]))].append(f.time)
        elif (
            d[12:14] == b"\x86\xdd"
            and len(d) >= 62
            and d[20] == 17
            and int.from_bytes(d[56:58], "big") == 3784
        ):
            times[str(ipaddress.IPv6Address(d[38:54]))].append(f.time)
    out: dict[str, dict[str, Any]] = {}
    for key, ts in sorted(times.items()):
        ts.sort()
        before = [t for t in ts if t < start]
        inside = [t for t in ts if start <= t <= end]
        seq = ([before[-1]] if before else []) + inside
        worst = max((b - a for a, b in itertools.pairwise(seq)), default=0.0)
        out[key] = {
            "packets": len(inside),
            "worst_gap_s": round(worst, 4),
            "worst_gap_x": round(worst / interval, 3),
        }
    return out


def make_plan(args: argparse.Namespace, sessions: list[dict[str, Any]]) -> FuzzPlan:
    targets = tuple(
        TargetInfo(name, str(n["mac"]), str(n["ipv4"]), str(n["ipv6"]), link_local(str(n["mac"])))
        for name, n in NODES.items()
    )
    count, rate = int(args.count), float(args.rate)
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
        instances=(),
        safe_priority_below=1,
        families=(("bfd", 1.0),),
        bfd_sessions=tuple(sessions),
    )


def session_infos(status: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's view of every live session, from each agent's status."""
    out = []
    for name, st in status.items():
        me, peer = NODES[name], NODES[_other(name)]
        for sess in SESSIONS:
            local_discr, remote_discr = st["discr"][sess]
            fam, key = (6, "ipv6") if sess == "p6" else (4, "auth4" if sess == "a4" else "ipv4")
            info: dict[str, Any] = {
                "target": name,
                "name": sess,
                "family": fam,
                "local": me[key],
                "peer": peer[key],
                "local_discr": int(local_discr),
                "remote_discr": int(remote_discr),
                "auth_type": None,
                "auth_key_id": 0,
                "auth_secret": "",
            }
            if sess == "a4":
                info.update(auth_type=5, auth_key_id=AUTH_KEY_ID, auth_secret=AUTH_SECRET)
            out.append(info)
    return out


class BfdFuzzRun:
    """One run: the lab, the agents, the observers; ``run()`` returns the result."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir

    def build(self, lab: Lab) -> dict[str, AgentHandle]:
        lab.add_switch()
        for name, n in NODES.items():
            lab.add_namespace(name)
            lab.connect(
                name,
                addrs=[f"{n['ipv4']}/24", f"{n['auth4']}/24", f"{n['ipv6']}/64"],
                mac=str(n["mac"]),
            )
        lab.add_namespace("fz")
        lab.connect("fz", addrs=[f"{FUZZER['ipv4']}/24", f"{FUZZER['ipv6']}/64"], mac=FUZZER["mac"])
        interval = float(self.args.bfd_interval)
        agents = {name: lab.start_vigild(name, node_config(name, interval)) for name in NODES}

        def ready() -> bool:
            st = {n: _bfd_status(a) for n, a in agents.items()}
            return (
                all(s == "Up" for x in st.values() for s in x["states"].values())
                and st["n1"]["vrrp"]["VI_4"] == "MASTER"
                and st["n2"]["vrrp"]["VI_4"] == "BACKUP"
                and lab.has_address("n1", VIP)
            )

        wait_for(ready, timeout=30, interval=0.2, what="every BFD session Up, n1 MASTER")
        return agents

    def run(self, lab: Lab) -> dict[str, Any]:
        args = self.args
        agents = self.build(lab)
        watch = AddressWatch(lab)
        for name in NODES:
            watch.watch(name)
        followers = {name: EventFollower(name, a.socket_path).start() for name, a in agents.items()}
        lab.add_cleanup(lambda: [f.close() for f in followers.values()])
        capture = Capture(
            lab,
            "sw",
            lab.link("n1").port,
            bpf=f"ether src {NODES['n1']['mac']} and (udp dst port 3784 or ip proto 112)",
        )
        wait_for(
            lambda: all(
                any(e.kind == "agent_started" for e in f.snapshot()) for f in followers.values()
            ),
            timeout=10,
            what="both event streams",
        )
        before = {name: _bfd_status(a) for name, a in agents.items()}
        plan = make_plan(args, session_infos(before))
        plan_path = self.workdir / "plan.json"
        plan_path.write_text(json.dumps(plan.to_dict(), indent=1))
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
            capture.read()
            return progress().get("phase") == "built"

        wait_for(built, timeout=120 + plan.count / 2000, interval=0.2, what="the frames built")

        pids = {name: a.pid for name, a in agents.items()}
        before = {name: _bfd_status(a) for name, a in agents.items()}
        udp_before = {name: _udp_errors(a.pid) for name, a in agents.items()}
        cpu_before = {name: _cpu_seconds(a.pid) for name, a in agents.items()}
        wait_before = {name: _run_queue_wait(a.pid) for name, a in agents.items()}
        rss_before = {name: proc_sample(a.pid) for name, a in agents.items()}
        log_size = {name: a.process.log_path.stat().st_size for name, a in agents.items()}
        t_start = time.monotonic()
        if not sender.signal(signal.SIGUSR1):
            raise RuntimeError(f"the fuzzer is gone:\n{sender.log_text(tail=30)}")
        rss_peak = {name: s.rss_kb if s else 0 for name, s in rss_before.items()}

        def sent_all() -> bool:
            for name, a in agents.items():
                s = proc_sample(a.pid)
                if s is not None:
                    rss_peak[name] = max(rss_peak[name], s.rss_kb)
            capture.read()
            return not sender.alive() or progress().get("phase") == "done"

        wait_for(sent_all, timeout=plan.max_seconds + 30, interval=0.5, what="the flood")
        t_flood_end = time.monotonic()
        with contextlib.suppress(Exception):
            sender.wait(timeout=10)
        sent = json.loads(out_path.read_text()) if out_path.exists() else {"sent": 0}
        # Settle: three more VRRP adverts from the master after the flood (3 s).
        wall_end = time.time()
        capture.wait(lambda f: f.time > wall_end and _is_vrrp(f), count=3,
                     timeout=5 * VRRP_INTERVAL + 5)  # fmt: skip
        t_end = time.monotonic()

        after = {name: _bfd_status(a) for name, a in agents.items()}
        udp_after = {name: _udp_errors(a.pid) for name, a in agents.items()}
        cpu_after = {name: _cpu_seconds(a.pid) for name, a in agents.items()}
        wait_after = {name: _run_queue_wait(a.pid) for name, a in agents.items()}
        rss_after = {name: proc_sample(a.pid) for name, a in agents.items()}
        crashes = [
            f"{name}: exited {a.process.returncode}"
            for name, a in agents.items()
            if not a.process.alive() or a.pid != pids[name]
        ]
        transitions = [
            {"node": e.node, "kind": e.kind, "instance": e.event.get("instance"),
             "message": e.event.get("message")}
            for f in followers.values()
            for e in f.snapshot()
            if t_start <= e.time <= t_end and e.kind in ("bfd_transition", "vrrp_transition")
        ]  # fmt: skip
        vip_moves = [
            {"node": c.node, "address": str(c.address), "present": c.present}
            for c in watch.changes
            if t_start <= c.time <= t_end and str(c.address) == VIP
        ]
        state_changes = [
            f"{name}/{what}/{k}: {before[name][what][k]} -> {v}"
            for name in agents
            for what in ("states", "vrrp")
            for k, v in after[name][what].items()
            if before[name][what].get(k) != v
        ]
        offset = time.time() - time.monotonic()
        frames = capture.read()
        w0, w1 = t_start + offset, t_end + offset
        vrrp_gaps = advert_gaps([f for f in frames if _is_vrrp(f)], w0, w1, VRRP_INTERVAL)
        gaps = bfd_gaps(frames, w0, w1, float(args.bfd_interval))
        worst_vrrp = max((g["worst_gap_x"] or 0.0 for g in vrrp_gaps.values()), default=0.0)
        worst_bfd = max((g["worst_gap_x"] for g in gaps.values()), default=0.0)

        agents_out: dict[str, Any] = {}
        for name, a in agents.items():
            b, c = rss_before[name], rss_after[name]
            new_log = a.process.log_path.read_bytes()[log_size[name] :].decode(errors="replace")
            ca, cb = cpu_after[name], cpu_before[name]
            rejects: dict[str, int] = defaultdict(int)
            for sess, reasons in after[name]["rejects"].items():
                for reason, n in reasons.items():
                    rejects[f"{sess}/{reason}"] += n - before[name]["rejects"][sess].get(reason, 0)
            agents_out[name] = {
                "pid": a.pid,
                "alive": a.process.alive(),
                "rss_kb_before": b.rss_kb if b else None,
                "rss_kb_after": c.rss_kb if c else None,
                "rss_kb_peak": rss_peak[name],
                "rss_drift_kb": (c.rss_kb - b.rss_kb) if b and c else None,
                "fds_before": b.fds if b else None,
                "fds_after": c.fds if c else None,
                "cpu_s": round(ca - cb, 2) if ca is not None and cb is not None else None,
                "run_queue_wait_s": round(wa - wb, 3)
                if (wa := wait_after[name]) is not None and (wb := wait_before[name]) is not None
                else None,
                "session_rejects": {k: v for k, v in sorted(rejects.items()) if v},
                "auth_failures": _delta(
                    after[name]["auth_failures"], before[name]["auth_failures"]
                ),
                "unmatched": _delta(after[name]["unmatched"], before[name]["unmatched"]),
                "packets_in": _delta(after[name]["packets_in"], before[name]["packets_in"]),
                "kernel_drops": {
                    k: v for k, v in _delta(udp_after[name], udp_before[name]).items() if v
                },
                "states": after[name]["states"],
                "vrrp": after[name]["vrrp"],
                "tracebacks": a.log(tail=None).count("Traceback"),
                "log_lines_during_run": new_log.count("\n"),
            }
        drifts = [a["rss_drift_kb"] for a in agents_out.values() if a["rss_drift_kb"] is not None]
        goals = {
            "crashes": not crashes,
            "state_changes": not (transitions or vip_moves or state_changes),
            "rss_drift_within_5MB": bool(drifts) and max(drifts) <= RSS_DRIFT_LIMIT_KB,
            "advert_gap_within_1.1x": worst_vrrp <= GAP_LIMIT,
            "internal_errors": all(a["tracebacks"] == 0 for a in agents_out.values()),
        }
        return {
            "tool": "bench.fuzz_bfd",
            "command": "python -m bench.fuzz_bfd " + " ".join(args.argv),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": plan.seed,
            "bfd": {
                "sessions": list(SESSIONS),
                "interval_s": float(args.bfd_interval),
                "multiplier": MULTIPLIER,
                "auth": "a4: meticulous keyed SHA1",
            },
            "vrrp_interval_s": VRRP_INTERVAL,
            "sender": sent,
            "flood_s": round(t_flood_end - t_start, 2),
            "observed_s": round(t_end - t_start, 2),
            "crashes": crashes,
            "transitions": transitions,
            "vip_changes": vip_moves,
            "state_changes": state_changes,
            "bfd_tx_gaps": gaps,
            "worst_bfd_tx_gap_x": worst_bfd,
            "advert_gaps": vrrp_gaps,
            "worst_advert_gap_x": worst_vrrp,
            "agents": agents_out,
            "event_stream_reconnects": {n: f.reconnects for n, f in followers.items()},
            "goals": goals,
            "ok": all(goals.values()),
        }


def summary(result: dict[str, Any]) -> str:
    s = result["sender"]
    changes = len(result["transitions"]) + len(result["vip_changes"]) + len(result["state_changes"])
    lines = [
        f"fuzz (BFD): {s.get('sent', 0):,} packets sent in {s.get('send_s', 0)} s "
        f"({s.get('rate_pps')} pps), seed {result['seed']}, {s.get('neutralized', 0):,} "
        f"neutralized (TTL 254)",
        f"crashes: {len(result['crashes'])}   state changes: {changes}   worst BFD tx gap: "
        f"{result['worst_bfd_tx_gap_x']}x of {result['bfd']['interval_s']} s   worst VRRP "
        f"advert gap: {result['worst_advert_gap_x']}x",
    ]
    for name, a in result["agents"].items():
        lines.append(
            f"{name}: RSS {a['rss_kb_before']} -> {a['rss_kb_after']} KiB (drift "
            f"{a['rss_drift_kb']} KiB, peak {a['rss_kb_peak']}), fds {a['fds_before']} -> "
            f"{a['fds_after']}, CPU {a['cpu_s']} s, waited for a CPU {a['run_queue_wait_s']} s, "
            f"tracebacks {a['tracebacks']}, log lines "
            f"{a['log_lines_during_run']}"
        )
        lines.append(f"  session rejects: {a['session_rejects'] or 'none'}")
        lines.append(f"  unmatched: {a['unmatched']}; kernel dropped: {a['kernel_drops']}")
    failed = [k for k, ok in result["goals"].items() if not ok]
    lines.append("goals: all met" if not failed else f"goals missed: {', '.join(failed)}")
    return "\n".join(lines)


def _dump_plan(args: argparse.Namespace) -> FuzzPlan:
    """A plan with made-up discriminators (the real ones exist only in a running lab)."""
    st = {
        name: {"discr": {s: (1000 + i * 10 + j, 2000 + i * 10 + j) for j, s in enumerate(SESSIONS)}}
        for i, name in enumerate(NODES)
    }
    return make_plan(args, session_infos(st))


def dump(args: argparse.Namespace, index: int) -> int:
    plan = _dump_plan(args)
    if not 0 <= index < plan.count:
        print(f"--dump {index}: the plan has packets 0..{plan.count - 1}", file=sys.stderr)
        return 2
    gens = {"bfd": family("bfd").generator(plan)}
    m = list(generate_batch(plan, gens, index // plan.batch))[index % plan.batch]
    print(f"packet {index} of seed {plan.seed} (made-up discriminators): {m.kind}: {m.note}")
    print(m.frame.hex())
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz_bfd", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=1_000_000, help="packets to send")
    p.add_argument("--rate", type=float, default=10_000, help="packets per second (0: no pacing)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=0, help="bound on sending")
    p.add_argument(
        "--bfd-interval",
        type=float,
        default=INTERVAL,
        help="the live sessions' min_tx/min_rx (x 3); 0.3 s by default so that a stall of "
        "the shared machine (not the fuzz) does not read as a state change",
    )
    p.add_argument("--json", type=Path, help="result (default bench/results/fuzz-bfd-DATE.json)")
    p.add_argument("--workdir", type=Path, help="lab logs and plan (default: a temporary dir)")
    p.add_argument("--dump", type=int, metavar="K", help="print packet K of the plan and exit")
    args = p.parse_args(argv)
    args.argv = argv
    if not 1 <= args.count <= 50_000_000:
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
        print("bench.fuzz_bfd: needs root (namespaces, raw sockets)", file=sys.stderr)
        return 2
    import tempfile

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vigil-fuzz-bfd-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with Lab(workdir / "lab") as lab:
        result = BfdFuzzRun(args, workdir).run(lab)
    result["machine"] = _machine()
    out = args.json or RESULTS / f"fuzz-bfd-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(summary(result))
    print(f"result: {out}   lab logs: {workdir}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
