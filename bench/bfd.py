"""BFD benchmarks: vigil, BIRD and FRR side by side in one run (docs/benchmarks.md, BFD).

    python -m bench.bfd [--parts detection,cpu,stability,failover] [--rounds N]
                        [--stability-minutes 10] [--cpu-seconds 60] [--json FILE] [--plot PNG]

Every BFD measurement runs an implementation *against itself* in a fresh lab: node ``a``
(the one measured) and node ``b`` on one switch, N single-hop sessions between them (a
holds 10.63.1.i, b 10.63.2.i, session i between the two), so CPU, detection and false
Downs are that implementation's alone and nobody else's packets are in the way.

Parts:

(a) **detection**: one session at 50 ms x 3. ``b`` is cut off at the switch (its bridge
    port taken down with one ioctl: a cable pulled at ``b``, nothing changes on a's own
    link); ``a`` notices the silence and goes Down, and like every implementation here
    sends a packet saying so at once. A packet socket on a's interface sees both sides:
    the cut-to-Down time is from the cut (the bench's clock just before the ioctl) to a's
    first Down packet; the last-packet-to-Down time is from b's last packet a received.
    ``--rounds`` cuts each.
(b) **cpu**: 10 and 100 sessions at 50 ms x 3, all Up; the CPU time of a's process
    group over ``--cpu-seconds`` (bench.cpu's method: the scheduler's nanosecond count
    of every thread); 100 % = one core.
(c) **stability**: 20 sessions at 20 ms x 3 for ``--stability-minutes`` with
    ``--hogs`` CPU-bound processes (a busy loop each; default one, as the issue asks)
    competing for the cores; the three implementations run at the same time (three
    labs), and each
    one's session Downs in that window are counted from its own records (vigil: the
    sessions' down_transitions; FRR: ``show bfd peers counters``; BIRD: its debug log's
    "changed state" lines). ``--stability-vigil-rt N`` adds a fourth lab at the same
    time: vigil with ``global.realtime_priority: N`` (SCHED_RR), row ``vigil-rtN``.
(d) **failover**: the crash of bench.failover (SIGKILL of the master's daemon, then its
    cable pulled) with a client probing the VIP every 10 ms: vigil at advert 1 s with
    fast peer detection (a BFD session between the nodes at 20 ms x 3,
    ``fast_takeover_bfd``), against keepalived at advert 1 s (VRRPv2) and 0.1 s (VRRPv3).

Results: a table per part on stdout, JSON (default bench/results/bfd-<UTC date>.json) and
with ``--plot`` one figure of all four parts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.lab.agents import AgentHandle
from tests.lab.bfd import FrrBfdPeer, frr_bfd_conf
from tests.lab.lab import Lab
from tests.lab.peers import PeerHandle, bird_cli, frr_vtysh
from tests.lab.procs import ProcessHandle

from .cpu import sample_group
from .failover import RESULTS, load_average, machine
from .pair import BenchError, use_vigil_revision

__all__ = ["BFD_IMPLS", "BfdBench", "main"]

BFD_IMPLS = ("vigil", "bird", "frr")
PARTS = ("detection", "cpu", "stability", "failover")
SIDE = {"a": 1, "b": 2}
MAX_SESSIONS = 200
UP_TIMEOUT = 60.0


def address(side: str, i: int) -> str:
    """Session i's address on a side: 10.63.<1|2>.<i> (i from 1)."""
    return f"10.63.{SIDE[side]}.{i}"


# ---------------------------------------------------------------------- one lab


@dataclass
class BfdBench:
    """A lab running ``impl`` on nodes a and b with ``count`` sessions between them."""

    workdir: Path
    impl: str
    count: int
    interval_ms: int = 50
    multiplier: int = 3
    rt_priority: int = 0  # vigil only: global.realtime_priority
    lab: Lab = field(init=False)
    handles: dict[str, AgentHandle | PeerHandle] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.impl not in BFD_IMPLS:
            raise ValueError(f"implementation {self.impl!r}: one of {', '.join(BFD_IMPLS)}")
        if not 1 <= self.count <= MAX_SESSIONS:
            raise ValueError(f"{self.count} sessions: must be 1..{MAX_SESSIONS}")
        self.lab = Lab(self.workdir)
        try:
            self.lab.add_switch()
            for side in SIDE:
                self.lab.add_namespace(side)
                addrs = [f"{address(side, i)}/16" for i in range(1, self.count + 1)]
                self.lab.connect(side, "eth0", addrs)
            for side in SIDE:
                self.handles[side] = self._start(side)
        except BaseException:
            self.lab.close()
            raise

    def _start(self, side: str) -> AgentHandle | PeerHandle:
        other = "b" if side == "a" else "a"
        pairs = [(address(side, i), address(other, i)) for i in range(1, self.count + 1)]
        ms, mult = self.interval_ms, self.multiplier
        if self.impl == "vigil":
            sessions = [
                {
                    "name": f"s{i}",
                    "peer": peer,
                    "local": local,
                    "interface": "eth0",
                    "min_tx": ms / 1000,
                    "min_rx": ms / 1000,
                    "multiplier": mult,
                }
                for i, (local, peer) in enumerate(pairs, start=1)
            ]
            glob: dict[str, Any] = {"router_id": side}
            if self.rt_priority:
                glob["realtime_priority"] = self.rt_priority
            config = {"global": glob, "bfd": {"sessions": sessions}}
            return self.lab.start_vigild(side, config, log_level="info", timeout=30.0)
        if self.impl == "frr":
            peers = [FrrBfdPeer(peer, local, rx_ms=ms, tx_ms=ms, multiplier=mult)
                     for local, peer in pairs]  # fmt: skip
            return self.lab.start_frr(side, frr_bfd_conf(peers))
        return self.lab.start_bird(side, bird_conf(side, pairs, ms, mult))

    # -- observation ----------------------------------------------------------------------

    def process(self, side: str = "a") -> ProcessHandle:
        return self.handles[side].process

    def up_count(self, side: str = "a") -> int:
        handle = self.handles[side]
        if isinstance(handle, AgentHandle):
            status, body = handle.client.get("/v1/bfd/sessions")
            if status != 200:
                return 0
            return sum(1 for s in body["sessions"] if s["state"] == "Up")
        if self.impl == "frr":
            peers = json.loads(frr_vtysh(handle, "show bfd peers json") or "[]")
            return sum(1 for p in peers if p.get("status") == "up")
        return sum(1 for state in bird_sessions(handle).values() if state == "Up")

    def wait_all_up(self, timeout: float = UP_TIMEOUT) -> None:
        try:
            self.lab.wait_for(
                lambda: self.up_count("a") == self.count and self.up_count("b") == self.count,
                timeout=timeout,
                interval=0.2,
                what=f"{self.count} {self.impl} sessions Up on both sides",
            )
        except AssertionError as exc:
            raise BenchError(f"{exc}\n{self.logs()}") from exc

    def downs(self, side: str = "a") -> int:
        """Transitions from Up to Down so far, as the implementation records them."""
        handle = self.handles[side]
        if isinstance(handle, AgentHandle):
            status, body = handle.client.get("/v1/bfd/sessions")
            if status != 200:
                raise BenchError(f"vigil on {side}: {status} {body}")
            return sum(s["counters"].get("down_transitions", 0) for s in body["sessions"])
        if self.impl == "frr":
            peers = json.loads(frr_vtysh(handle, "show bfd peers counters json") or "[]")
            return sum(int(p.get("session-down-events", 0)) for p in peers)
        return handle.log(tail=None).count("changed state from Up to Down")

    def logs(self, tail: int = 15) -> str:
        return "\n".join(
            f"--- {side} {self.impl} (last {tail} lines):\n{h.log(tail)}"
            for side, h in self.handles.items()
        )

    def close(self) -> None:
        try:
            self.lab.close()
        except Exception as exc:  # the lab's registry keeps what was left for cleanup
            print(f"bench.bfd: teardown: {exc}", file=sys.stderr)


def bird_conf(side: str, pairs: Sequence[tuple[str, str]], ms: int, mult: int) -> str:
    """BIRD with one BFD session per (local, peer), logging every state change."""
    neighbors = "\n".join(f"  neighbor {peer} local {local};" for local, peer in pairs)
    return (
        f"router id {pairs[0][0]};\n"
        "log stderr all;\n"
        "protocol device {\n  scan time 10;\n}\n"
        "protocol bfd {\n"
        "  debug { states, events };\n"
        f'  interface "*" {{\n    interval {ms} ms;\n    multiplier {mult};\n  }};\n'
        f"{neighbors}\n"
        "}\n"
    )


def bird_sessions(handle: PeerHandle) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in bird_cli(handle, "show bfd sessions").splitlines():
        words = line.split()
        if len(words) >= 3 and words[0][:1].isdigit() and "." in words[0]:
            out[words[0]] = words[2]
    return out


# ---------------------------------------------------------------------- (b) cpu


def measure_cpu(workdir: Path, impl: str, count: int, seconds: float) -> dict[str, Any]:
    bench = BfdBench(workdir, impl, count)
    try:
        bench.wait_all_up(timeout=UP_TIMEOUT + count * 0.3)
        # Let the Poll sequences of coming Up settle before the window opens.
        downs0 = bench.downs("a")
        pgid = bench.process("a").pgid
        before = sample_group(pgid)
        t0 = time.monotonic()
        deadline = t0 + seconds
        for _ in range(int(seconds) + 2):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(1.0, left))
            if not bench.process("a").alive():
                raise BenchError(f"{impl} on a exited during the window\n{bench.logs()}")
        window = time.monotonic() - t0
        after = sample_group(pgid)
        used = after.cpu_s - before.cpu_s
        return {
            "impl": impl,
            "sessions": count,
            "window_s": round(window, 2),
            "cpu_s": round(used, 4),
            "cpu_percent": round(100.0 * used / window, 3),
            "peak_rss_mb": round(after.hwm_kb / 1024, 1),
            "processes": after.members,
            "downs_in_window": bench.downs("a") - downs0,
            "up_at_end": bench.up_count("a"),
            "loadavg_1m": load_average(),
        }
    finally:
        bench.close()


# ---------------------------------------------------------------------- (a) detection


SO_TIMESTAMPNS = 35
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = struct.Struct("16sH14x")
_TIMESPEC = struct.Struct("=qq")


def _socket_in(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket made inside namespace ``ns`` (the thread switches there and back)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{ns}", "rb") as there:
        if libc.setns(there.fileno(), 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns}")
        try:
            return socket.socket(family, kind, proto)
        finally:
            if libc.setns(home.fileno(), 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns back")


class PortSwitch:
    """Takes one bridge port down and up with one ioctl (the cut, to the microsecond).

    Downing the switch side of b's veth is a cable pulled at b: a sees its peer fall
    silent and nothing on its own link, so it can only notice by BFD's detection time.
    """

    def __init__(self, lab: Lab, node: str) -> None:
        link = lab.link(node)
        self.port = link.port.encode()
        self.sock = _socket_in(link.switch.ns, socket.AF_INET, socket.SOCK_DGRAM)

    def _flags(self) -> int:
        import fcntl

        got = fcntl.ioctl(self.sock, SIOCGIFFLAGS, _IFREQ.pack(self.port, 0))
        return int(_IFREQ.unpack(got)[1])

    def set(self, up: bool) -> float:
        """Set the port's state; returns time.time() just before the system call."""
        import fcntl

        flags = self._flags()
        flags = flags | IFF_UP if up else flags & ~IFF_UP
        request = _IFREQ.pack(self.port, flags)
        at = time.time()
        fcntl.ioctl(self.sock, SIOCSIFFLAGS, request)
        return at

    def close(self) -> None:
        self.sock.close()


def _bfd_frames(sock: socket.socket, until: float) -> list[tuple[float, str, int, int]]:
    """(kernel time, IPv4 source, BFD state, diag) of the BFD frames read before ``until``
    (time.time()); stops early after a Down packet from ``a``."""
    import select as _select

    out: list[tuple[float, str, int, int]] = []
    for _ in range(100_000):
        left = until - time.time()
        if left <= 0:
            break
        ready, _, _ = _select.select([sock], [], [], left)
        if not ready:
            continue
        for _ in range(1000):
            try:
                frame, anc, _flags, _addr = sock.recvmsg(2048, 256)
            except BlockingIOError:
                break
            if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            ihl = (frame[14] & 0x0F) * 4
            udp = 14 + ihl
            if int.from_bytes(frame[udp + 2 : udp + 4], "big") != 3784 or len(frame) < udp + 10:
                continue
            stamp = next((a[2] for a in anc if a[1] == SO_TIMESTAMPNS), None)
            if stamp is None:
                continue
            sec, nsec = _TIMESPEC.unpack_from(stamp)
            src = socket.inet_ntoa(frame[26:30])
            bfd = frame[udp + 8 :]
            out.append((sec + nsec * 1e-9, src, bfd[1] >> 6, bfd[0] & 0x1F))
            if src == address("a", 1) and bfd[1] >> 6 == 1:
                return out
    return out


def measure_detection(workdir: Path, impl: str, rounds: int, seed: int) -> dict[str, Any]:
    """(a): ``rounds`` cuts of one 50 ms x 3 session; cut-to-Down and last-packet-to-Down."""
    import random as _random

    rng = _random.Random(seed)
    bench = BfdBench(workdir, impl, 1)
    switch = PortSwitch(bench.lab, "b")
    samples: list[dict[str, Any]] = []
    try:
        bench.wait_all_up()
        for rnd in range(rounds):
            # both ends on 50 ms (a Poll after coming Up), then a random phase
            time.sleep(1.0 + rng.uniform(0.0, 0.05))
            sock = _socket_in(bench.lab.node("a").ns, socket.AF_PACKET, socket.SOCK_RAW, 0x0300)
            try:
                sock.bind(("eth0", 0))
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.setblocking(False)
                time.sleep(0.2)  # frames before the cut, to find b's last one
                cut = switch.set(False)
                frames = _bfd_frames(sock, cut + 3.0)
            finally:
                sock.close()
                switch.set(True)
            last_b = max((t for t, src, _s, _d in frames if src == address("b", 1) and t <= cut),
                         default=None)  # fmt: skip
            down = next(
                (t for t, src, state, _d in frames if src == address("a", 1) and state == 1),
                None,
            )
            sample: dict[str, Any] = {"round": rnd + 1}
            if down is None or last_b is None:
                sample["error"] = "no Down packet from a within 3 s" if down is None else "no b"
            else:
                sample["cut_to_down_ms"] = round((down - cut) * 1000, 2)
                sample["last_packet_to_down_ms"] = round((down - last_b) * 1000, 2)
            samples.append(sample)
            print(f"  detection {impl} r{rnd + 1}: {sample}", flush=True)
            bench.wait_all_up(timeout=30.0)
    finally:
        switch.close()
        bench.close()
    return {"impl": impl, "rounds": samples, **_stats(samples, "cut_to_down_ms"),
            "last_packet": _stats(samples, "last_packet_to_down_ms")}  # fmt: skip


def _stats(samples: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    values = sorted(s[key] for s in samples if key in s)
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=20) if len(values) >= 2 else [values[0]] * 19
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 2),
        "p5_ms": round(q[0], 2),
        "p95_ms": round(q[-1], 2),
        "min_ms": values[0],
        "max_ms": values[-1],
        "samples_ms": values,
    }


# ---------------------------------------------------------------------- (c) stability


def start_hogs(count: int, seconds: float) -> list[subprocess.Popen[bytes]]:
    """``count`` CPU-bound processes (busy loops), each ended by ``timeout`` at the latest."""
    argv = ["timeout", f"{int(seconds) + 5}", sys.executable, "-c", "while True: pass"]
    return [subprocess.Popen(argv, start_new_session=True) for _ in range(count)]


def stop_hogs(hogs: Sequence[subprocess.Popen[bytes]]) -> None:
    for hog in hogs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hog.pid, signal.SIGKILL)
    for hog in hogs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            hog.wait(timeout=5)


def measure_stability(
    workdir: Path,
    impls: Sequence[str],
    minutes: float,
    hogs: int,
    count: int = 20,
    vigil_rt: int = 0,
) -> list[dict[str, Any]]:
    """(c): every implementation at once, ``count`` sessions at 20 ms x 3, for ``minutes``
    with ``hogs`` busy loops competing; Downs counted on both sides of each. With
    ``vigil_rt`` a second vigil lab runs alongside with ``realtime_priority: vigil_rt``."""
    benches: dict[str, BfdBench] = {}
    hog_procs: list[subprocess.Popen[bytes]] = []
    try:
        for impl in impls:
            benches[impl] = BfdBench(workdir / f"stability-{impl}", impl, count, 20, 3)
        if vigil_rt:
            benches[f"vigil-rt{vigil_rt}"] = BfdBench(
                workdir / "stability-vigil-rt", "vigil", count, 20, 3, rt_priority=vigil_rt
            )
        for bench in benches.values():
            bench.wait_all_up(timeout=UP_TIMEOUT + count)
        time.sleep(3.0)  # the Polls of coming Up are over
        start = {impl: (b.downs("a"), b.downs("b")) for impl, b in benches.items()}
        seconds = minutes * 60
        hog_procs = start_hogs(hogs, seconds)
        t0 = time.monotonic()
        for _ in range(int(seconds) + 2):
            left = t0 + seconds - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(5.0, left))
            for impl, bench in benches.items():
                if not (bench.process("a").alive() and bench.process("b").alive()):
                    raise BenchError(f"{impl} exited during the stability window")
        window = time.monotonic() - t0
        stop_hogs(hog_procs)
        out = []
        for impl, bench in benches.items():
            a0, b0 = start[impl]
            out.append(
                {
                    "impl": impl,
                    "sessions": count,
                    "interval_ms": 20,
                    "multiplier": 3,
                    "window_s": round(window, 1),
                    "hogs": hogs,
                    "realtime_priority": bench.rt_priority,
                    "false_downs_a": bench.downs("a") - a0,
                    "false_downs_b": bench.downs("b") - b0,
                    "up_at_end": bench.up_count("a"),
                }
            )
        return out
    finally:
        stop_hogs(hog_procs)
        for bench in benches.values():
            bench.close()


# ---------------------------------------------------------------------- (d) failover


FAST_TAKEOVER = {"min_tx": 0.02, "min_rx": 0.02, "multiplier": 3}


def fast_takeover_pair(workdir: Path, impl: str, instances: Any, **kw: Any) -> Any:
    """bench.pair.Pair, and for vigil a BFD session between n1 and n2 at 20 ms x 3 that
    every instance uses for fast peer detection (``fast_takeover_bfd``)."""
    import yaml

    from .pair import NODE_ADDRS, Pair

    pair = Pair(workdir, impl, instances, **kw)
    if impl != "vigil":
        return pair
    for name, other in (("n1", "n2"), ("n2", "n1")):
        path = pair.vigil_conf[name]
        config = yaml.safe_load(path.read_text())
        config["bfd"] = {
            "sessions": [
                {
                    "name": "peer",
                    "peer": NODE_ADDRS[other][0].split("/")[0],
                    "local": NODE_ADDRS[name][0].split("/")[0],
                    "interface": "eth0",
                    **FAST_TAKEOVER,
                }
            ]
        }
        for inst in config.get("vrrp_instances") or []:
            inst["fast_takeover_bfd"] = "peer"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return pair


#: (label, implementation, VRRP version, advert interval, fast peer detection)
FAILOVER_ROWS = (
    ("vigil, advert 1 s + BFD 20 ms x 3", "vigil", 2, 1.0, True),
    ("keepalived, advert 1 s", "keepalived", 2, 1.0, False),
    ("keepalived, advert 0.1 s", "keepalived", 3, 0.1, False),
)


def measure_failover(workdir: Path, rounds: int, seed: int) -> list[dict[str, Any]]:
    """(d): the crash of bench.failover, each row ``rounds`` times, rows interleaved."""
    import random as _random

    from .failover import Row, run_round

    rng = _random.Random(seed)
    samples: list[dict[str, Any]] = []
    for rnd in range(rounds):
        for label, impl, version, interval, fast in FAILOVER_ROWS:
            row = Row("crash", version, interval, 4)
            try:
                sample = run_round(
                    row,
                    impl,
                    workdir / f"failover-r{rnd + 1}-{impl}-{interval:g}",
                    rng,
                    log_level="warning",
                    pair_factory=fast_takeover_pair if fast else _plain_pair,
                )
            except Exception as exc:  # one bad round must not lose the others
                sample = {"impl": impl, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            sample.update(label=label, round=rnd + 1)
            samples.append(sample)
            shown = sample.get("outage_ms", sample.get("error", "")[:80])
            print(f"  failover r{rnd + 1} {label}: {shown}", flush=True)
    out = []
    for label, impl, version, interval, fast in FAILOVER_ROWS:
        mine = [s for s in samples if s["label"] == label]
        out.append(
            {
                "label": label,
                "impl": impl,
                "version": version,
                "advert_interval": interval,
                "fast_takeover_bfd": fast,
                **_stats(mine, "outage_ms"),
                "errors": [s["error"] for s in mine if "error" in s],
            }
        )
    return out


def _plain_pair(workdir: Path, impl: str, instances: Any, **kw: Any) -> Any:
    from .pair import Pair

    return Pair(workdir, impl, instances, **kw)


# ---------------------------------------------------------------------- report


def tables(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    if doc.get("detection"):
        lines += [
            "(a) detection, 50 ms x 3: cut -> Down (ms)",
            "| implementation | n | median | p5 | p95 | last packet -> Down, median |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for d in doc["detection"]:
            lp = d.get("last_packet", {})
            lines.append(
                f"| {d['impl']} | {d.get('n', 0)} | {d.get('median_ms')} | {d.get('p5_ms')} "
                f"| {d.get('p95_ms')} | {lp.get('median_ms')} |"
            )
    if doc.get("cpu"):
        lines += [
            "",
            "(b) CPU, 50 ms x 3, % of one core",
            "| implementation | sessions | CPU % | peak RSS MB | Downs in window |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in doc["cpu"]:
            lines.append(
                f"| {c['impl']} | {c['sessions']} | {c['cpu_percent']:.2f} | "
                f"{c['peak_rss_mb']} | {c['downs_in_window']} |"
            )
    if doc.get("stability"):
        lines += [
            "",
            "(c) stability, 20 sessions at 20 ms x 3, CPU hogs competing",
            "| implementation | window s | hogs | false Downs (a) | false Downs (b) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for st in doc["stability"]:
            lines.append(
                f"| {st['impl']} | {st['window_s']} | {st['hogs']} | {st['false_downs_a']} "
                f"| {st['false_downs_b']} |"
            )
    if doc.get("failover"):
        lines += [
            "",
            "(d) crash failover, client outage (ms)",
            "| pair | n | median | p5 | p95 | max |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for f in doc["failover"]:
            lines.append(
                f"| {f['label']} | {f.get('n', 0)} | {f.get('median_ms')} | {f.get('p5_ms')} "
                f"| {f.get('p95_ms')} | {f.get('max_ms')} |"
            )
    return "\n".join(lines)


COLORS = {"vigil": "#1f77b4", "bird": "#2ca02c", "frr": "#d62728", "keepalived": "#7f7f7f"}


def plot(doc: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8.5))
    (det, cpu), (stab, fail) = axes
    entries = doc.get("detection") or []
    for i, d in enumerate(entries):
        values = d.get("samples_ms") or []
        det.scatter([i] * len(values), values, s=10, color=COLORS.get(d["impl"]), alpha=0.6)
        if d.get("median_ms") is not None:
            det.plot([i - 0.3, i + 0.3], [d["median_ms"]] * 2, color="black")
    det.axhline(150, color="grey", linestyle=":", linewidth=1)
    det.set_xticks(range(len(entries)), [d["impl"] for d in entries])
    det.set_ylabel("cut -> Down (ms)")
    det.set_title("(a) detection, 50 ms x 3 (line: median; dotted: 3 x 50 ms)")
    runs = doc.get("cpu") or []
    counts = sorted({c["sessions"] for c in runs})
    impls = [i for i in BFD_IMPLS if any(c["impl"] == i for c in runs)]
    width = 0.8 / max(1, len(impls))
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for k, n in enumerate(counts):
            got = [c["cpu_percent"] for c in runs if c["impl"] == impl and c["sessions"] == n]
            if got:
                xs.append(k + (j - (len(impls) - 1) / 2) * width)
                ys.append(statistics.median(got))
        cpu.bar(xs, ys, width, label=impl, color=COLORS[impl])
        for x, y in zip(xs, ys, strict=True):
            cpu.text(x, y, f"{y:.1f}", ha="center", va="bottom", fontsize=8)
    cpu.set_xticks(range(len(counts)), [f"{n} sessions" for n in counts])
    cpu.set_ylabel("CPU, % of one core")
    cpu.set_title("(b) CPU at 50 ms x 3")
    if impls:
        cpu.legend()
    st = doc.get("stability") or []
    names = [s["impl"] for s in st]
    downs = [s["false_downs_a"] + s["false_downs_b"] for s in st]
    stab.bar(range(len(st)), downs, color=[COLORS.get(n.split("-")[0], "grey") for n in names])
    for i, v in enumerate(downs):
        stab.text(i, v, str(v), ha="center", va="bottom")
    stab.set_xticks(range(len(st)), names)
    stab.set_ylim(0, max([1, *downs]) * 1.3)
    minutes = st[0]["window_s"] / 60 if st else 0
    stab.set_title(f"(c) false Downs, 20 x 20 ms x 3, {minutes:.1f} min, CPU hogs")
    stab.set_ylabel("session Downs (both ends)")
    fo = doc.get("failover") or []
    for i, f in enumerate(fo):
        values = f.get("samples_ms") or []
        color = COLORS.get(f["impl"], "grey")
        fail.bar(i, f.get("median_ms") or 0, 0.6, color=color, alpha=0.8)
        fail.scatter([i] * len(values), values, s=10, color="black", zorder=3)
    fail.set_yscale("log")
    fail.set_xticks(range(len(fo)), [f["label"].replace(", ", "\n", 1) for f in fo], fontsize=8)
    fail.set_ylabel("client outage (ms, log)")
    fail.axhline(100, color="grey", linestyle=":", linewidth=1)
    fail.set_title("(d) master crash: client outage (dotted: 100 ms)")
    fig.suptitle(f"BFD: vigil, BIRD, FRR side by side ({doc.get('date', '')})")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bfd", description=__doc__.splitlines()[0])
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    p.add_argument("--impl", action="append", choices=BFD_IMPLS, help="only these (repeat)")
    p.add_argument("--rounds", type=int, default=20, help="(a) cuts and (d) crashes per row")
    p.add_argument("--failover-rounds", type=int, help="(d) rounds (default: --rounds // 2)")
    p.add_argument("--cpu-seconds", type=float, default=60.0)
    p.add_argument("--cpu-sessions", default="10,100", help="(b) session counts")
    p.add_argument("--cpu-repeats", type=int, default=2, help="(b) runs per implementation")
    p.add_argument("--stability-minutes", type=float, default=10.0)
    p.add_argument("--hogs", type=int, default=1, help="(c) CPU-bound processes competing")
    p.add_argument(
        "--stability-vigil-rt",
        type=int,
        default=0,
        metavar="N",
        help="(c) also run vigil with global.realtime_priority N (1-99) alongside",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path, help="write the figure here (PNG)")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--vigil-rev", default="HEAD", help="git revision of agent/src ('worktree')")
    p.add_argument("--from-json", type=Path, help="measure nothing: tables (and --plot) of a run")
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        p.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    args.parts = parts
    if not 1 <= args.rounds <= 1000 or not 1 <= args.cpu_seconds <= 3600:
        p.error("--rounds must be 1..1000 and --cpu-seconds 1..3600")
    if not 0.1 <= args.stability_minutes <= 240 or not 0 <= args.hogs <= 64:
        p.error("--stability-minutes must be 0.1..240 and --hogs 0..64")
    if not 0 <= args.stability_vigil_rt <= 99:
        p.error("--stability-vigil-rt must be 0..99 (0: not run)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        doc = json.loads(args.from_json.read_text())
        print(tables(doc))
        if args.plot:
            print(f"plot: {plot(doc, args.plot)}")
        return 0
    if os.geteuid() != 0:
        print("bench.bfd: needs root (network namespaces)", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = args.workdir or RESULTS / f"bfd-{stamp}"
    out = args.json or RESULTS / f"bfd-{stamp}.json"
    source = use_vigil_revision(args.vigil_rev, workdir / "vigil-src")
    impls = args.impl or list(BFD_IMPLS)
    command = "python -m bench.bfd " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    doc: dict[str, Any] = {
        "benchmark": "bfd",
        "command": command.strip(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "vigil_source": source,
        "loadavg_1m_start": load_average(),
    }

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")

    try:
        if "detection" in args.parts:
            print(f"(a) detection: {args.rounds} cuts each", flush=True)
            doc["detection"] = [
                measure_detection(workdir / f"detection-{i}", i, args.rounds, args.seed)
                for i in impls
            ]
            save()
        if "cpu" in args.parts:
            doc["cpu"] = []
            for count in (int(x) for x in args.cpu_sessions.split(",")):
                for rep in range(args.cpu_repeats):
                    # alternate the order: a drift in the machine's load favours nobody
                    for impl in impls if rep % 2 == 0 else list(reversed(impls)):
                        print(f"(b) cpu: {impl} {count} sessions, run {rep + 1}", flush=True)
                        run = measure_cpu(
                            workdir / f"cpu-{impl}-{count}-{rep}", impl, count, args.cpu_seconds
                        )
                        print(f"  {run['cpu_percent']:.2f} %", flush=True)
                        doc["cpu"].append({**run, "run": rep + 1})
            save()
        if "stability" in args.parts:
            print(f"(c) stability: {args.stability_minutes:g} min, {args.hogs} hogs", flush=True)
            doc["stability"] = measure_stability(
                workdir,
                impls,
                args.stability_minutes,
                args.hogs,
                vigil_rt=args.stability_vigil_rt if "vigil" in impls else 0,
            )
            save()
        if "failover" in args.parts:
            rounds = args.failover_rounds or max(1, args.rounds // 2)
            print(f"(d) failover: {rounds} crashes per row", flush=True)
            doc["failover"] = measure_failover(workdir, rounds, args.seed)
            save()
    except KeyboardInterrupt:
        print("bench.bfd: interrupted; writing what was measured", file=sys.stderr)
    doc["loadavg_1m_end"] = load_average()
    save()
    print(tables(doc))
    if args.plot:
        print(f"plot: {plot(doc, args.plot)}")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
