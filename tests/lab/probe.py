"""A client that probes an address at a fixed rate and measures outages.

Run inside the client namespace::

    python -m tests.lab.probe --target 10.99.0.100 --interval 0.01 --proto icmp \\
        --max-duration 30 --output result.json

It sends one probe every ``--interval`` seconds (ICMP echo over a raw socket, IPv4 or
IPv6, or a UDP datagram to ``tests.lab.udp_echo``), each carrying a sequence number and a
per-run token, and matches replies to probes. A probe without a reply within ``--timeout``
is lost. On SIGTERM/SIGINT, at ``--max-duration`` or after ``--count`` probes it stops
sending, waits for replies still in flight, and writes one JSON object: sent, received,
lost, the outage windows (runs of consecutive lost probes: start and end in seconds since
the first probe, probes lost, duration) and the longest outage in ms.

With ``--anchor-file``, SIGUSR1 moves the send schedule onto a grid through the instant
(CLOCK_MONOTONIC seconds, the clock every namespace shares) written in that file: the next
probe goes out at the first point of that grid not yet past. A benchmark anchors the grid
to a failure it is about to inject, so every round measures its outage from the same
offset to the probes; otherwise where the 10 ms grid falls relative to the failure is
random, and adds up to one interval of noise to every outage.

With ``--realtime`` it sends at SCHED_FIFO priority: in a lab the client shares the CPUs
with the daemons under test, and a probe they delay moves the start or end of an outage
by that delay (a client on its own machine would not see it).

``Probe`` wraps it for tests: ``Probe(lab, "client", "10.99.0.100").start()`` ...
``.stop() -> ProbeResult``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import secrets
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .waiting import wait_for

if TYPE_CHECKING:
    from .lab import Lab, NodeRef
    from .procs import ProcessHandle

__all__ = ["Outage", "Probe", "ProbeResult", "compute_outages", "main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
MAGIC = b"VGLP"
# magic, 8-byte run token, 8-byte sequence number
PAYLOAD = struct.Struct("!4s8sQ")
ICMP_HDR = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
MAX_PROBES = 10_000_000
#: --realtime: a low real-time priority, enough to run before every normal process. The
#: probe sleeps between sends, so it takes the CPU for microseconds every interval.
REALTIME_PRIORITY = 10


def icmp_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class Outage:
    """Consecutive lost probes: from the first lost send to the next answered send."""

    start: float
    end: float
    lost: int

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 6),
            "end": round(self.end, 6),
            "lost": self.lost,
            "duration_ms": round(self.duration_ms, 3),
        }


def compute_outages(sent_at: list[float], answered: list[bool], interval: float) -> list[Outage]:
    """Group lost probes into windows. A window still open at the end closes one interval
    after its last lost probe (nothing later shows when it would have ended)."""
    outages: list[Outage] = []
    first: int | None = None
    for i, ok in enumerate(answered):
        if not ok and first is None:
            first = i
        elif ok and first is not None:
            outages.append(Outage(sent_at[first], sent_at[i], i - first))
            first = None
    if first is not None:
        last = len(answered) - 1
        outages.append(Outage(sent_at[first], sent_at[last] + interval, last - first + 1))
    return outages


class _Transport:
    """Sends probe ``seq`` and decodes replies into sequence numbers (None: not ours)."""

    def __init__(self, proto: str, target: str, port: int | None, token: bytes) -> None:
        self.addr = ipaddress.ip_address(target)
        self.proto = proto
        self.token = token
        self.ident = secrets.randbits(16)
        family = socket.AF_INET if self.addr.version == 4 else socket.AF_INET6
        if proto == "icmp":
            ipproto = socket.IPPROTO_ICMP if self.addr.version == 4 else socket.IPPROTO_ICMPV6
            self.sock = socket.socket(family, socket.SOCK_RAW, ipproto)
            self.dest: tuple[Any, ...] = (target, 0)
        else:
            if port is None:
                raise ValueError("--port: required with --proto udp")
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.connect((target, port))
            self.dest = (target, port)
        self.sock.setblocking(False)

    def send(self, seq: int) -> None:
        payload = PAYLOAD.pack(MAGIC, self.token, seq)
        if self.proto == "udp":
            with contextlib.suppress(ConnectionRefusedError, BlockingIOError):
                self.sock.send(payload)
            return
        if self.addr.version == 4:
            hdr = ICMP_HDR.pack(ICMP_ECHO_REQUEST, 0, 0, self.ident, seq & 0xFFFF)
            csum = icmp_checksum(hdr + payload)
            hdr = ICMP_HDR.pack(ICMP_ECHO_REQUEST, 0, csum, self.ident, seq & 0xFFFF)
        else:
            # The kernel fills in the ICMPv6 checksum (it needs the pseudo-header).
            hdr = ICMP_HDR.pack(ICMP6_ECHO_REQUEST, 0, 0, self.ident, seq & 0xFFFF)
        # Unreachable networks and full buffers mean this probe is lost, nothing more.
        with contextlib.suppress(OSError):
            self.sock.sendto(hdr + payload, self.dest)

    def _payload_seq(self, payload: bytes) -> int | None:
        if len(payload) < PAYLOAD.size:
            return None
        magic, token, seq = PAYLOAD.unpack_from(payload)
        return seq if magic == MAGIC and token == self.token else None

    def receive(self) -> list[int]:
        """Drain the socket; return the sequence numbers of our replies."""
        seqs = []
        for _ in range(1000):  # bounded: at most this many datagrams per wake-up
            try:
                data, src = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                continue  # ICMP port unreachable for an earlier UDP probe
            if ipaddress.ip_address(src[0].split("%")[0]) != self.addr:
                continue
            if self.proto == "udp":
                seq = self._payload_seq(data)
            else:
                if self.addr.version == 4:
                    data = data[(data[0] & 0x0F) * 4 :]  # raw IPv4 sockets include the header
                    want = ICMP_ECHO_REPLY
                else:
                    want = ICMP6_ECHO_REPLY
                if len(data) < ICMP_HDR.size:
                    continue
                typ, _code, _csum, ident, _seq = ICMP_HDR.unpack_from(data)
                if typ != want or ident != self.ident:
                    continue
                seq = self._payload_seq(data[ICMP_HDR.size :])
            if seq is not None:
                seqs.append(seq)
        return seqs


def next_on_grid(grid: float, now: float, interval: float) -> float:
    """The first instant ``grid + k * interval`` (k any integer) that is not before ``now``."""
    # The nanosecond of slack keeps a point that float division puts a hair later than
    # ``now`` (9.97 for now=9.97 and grid=10.0) from being skipped.
    return grid + math.ceil((now - grid) / interval - 1e-9) * interval


def run_probe(args: argparse.Namespace) -> dict[str, Any]:
    stop_reason: list[str] = []
    anchor_requests: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_reason.append(signal.Signals(signum).name)

    def on_anchor(_signum: int, _frame: object) -> None:
        anchor_requests.append(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A signal must end the select at once, not at the next scheduled probe.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    if args.anchor_file:
        signal.signal(signal.SIGUSR1, on_anchor)
    anchors: list[dict[str, float]] = []

    realtime = None
    if args.realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
            realtime = "SCHED_FIFO"
        except OSError as exc:
            realtime = f"not available: {exc.strerror or exc}"
            print(f"probe: --realtime {realtime}; sending at normal priority", file=sys.stderr)

    token = secrets.token_bytes(8)
    tr = _Transport(args.proto, args.target, args.port, token)
    interval, timeout = args.interval, args.timeout
    max_count = min(args.count or MAX_PROBES, MAX_PROBES)
    sent_at: list[float] = []  # seconds since t0, by sequence number
    reply_at: dict[int, float] = {}
    t0 = time.monotonic()
    wall0 = time.time()
    deadline = t0 + args.max_duration
    next_progress = t0

    def collect() -> None:
        now = time.monotonic() - t0
        for seq in tr.receive():
            if seq < len(sent_at) and seq not in reply_at:
                reply_at[seq] = now - sent_at[seq]

    def write_progress(final: bool = False) -> None:
        if not args.progress:
            return
        tmp = f"{args.progress}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"sent": len(sent_at), "received": len(reply_at), "final": final}, fh)
        os.replace(tmp, args.progress)

    next_send = t0
    while not stop_reason and len(sent_at) < max_count:
        now = time.monotonic()
        if now >= deadline:
            stop_reason.append("max-duration")
            break
        if anchor_requests:
            anchor_requests.clear()
            try:
                grid = float(Path(args.anchor_file).read_text())
            except (OSError, ValueError) as exc:
                print(f"probe: --anchor-file {args.anchor_file}: {exc}; not moved", file=sys.stderr)
            else:
                next_send = next_on_grid(grid, now, interval)
                anchors.append({"grid": round(grid - t0, 6), "next_send": round(next_send - t0, 6)})
        if now >= next_send:
            sent_at.append(now - t0)
            tr.send(len(sent_at) - 1)
            # Keep the schedule, but never send a burst to catch up after a stall.
            next_send = max(next_send + interval, now)
            continue
        if now >= next_progress:
            write_progress()
            next_progress = now + 0.1
        ready, _, _ = select.select([tr.sock, wake_r], [], [], max(0.0, next_send - now))
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                wake_r.recv(64)
        if tr.sock in ready:
            collect()
    signal.set_wakeup_fd(-1)
    wake_r.close()
    wake_w.close()
    if not stop_reason:
        stop_reason.append("count")
    # Grace period for replies in flight: every probe gets its full timeout.
    end = time.monotonic() + timeout
    while len(reply_at) < len(sent_at) and time.monotonic() < end:
        ready, _, _ = select.select([tr.sock], [], [], max(0.0, end - time.monotonic()))
        if ready:
            collect()
    tr.sock.close()
    answered = [reply_at.get(i, timeout + 1) <= timeout for i in range(len(sent_at))]
    late = sum(1 for i in range(len(sent_at)) if i in reply_at and not answered[i])
    outages = compute_outages(sent_at, answered, interval)
    received = sum(answered)
    write_progress(final=True)
    rtts = sorted(v for v in reply_at.values() if v <= timeout)
    return {
        "target": args.target,
        "proto": args.proto,
        "port": args.port,
        "interval": interval,
        "timeout": timeout,
        "started_at": wall0,
        "t0_monotonic": t0,
        "realtime": realtime,
        "duration": round(sent_at[-1] if sent_at else 0.0, 6),
        "stopped_by": stop_reason[0],
        "sent": len(sent_at),
        "received": received,
        "lost": len(sent_at) - received,
        "late": late,
        "rtt_ms_median": round(rtts[len(rtts) // 2] * 1000, 3) if rtts else None,
        "outages": [o.to_dict() for o in outages],
        "anchors": anchors,
        "longest_outage_ms": round(max((o.duration_ms for o in outages), default=0.0), 3),
    }


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.lab.probe", description=__doc__.split("\n")[0]
    )
    p.add_argument("--target", required=True, help="IPv4 or IPv6 address to probe")
    p.add_argument("--proto", choices=("icmp", "udp"), default="icmp")
    p.add_argument("--port", type=int, help="UDP port of tests.lab.udp_echo (udp only)")
    p.add_argument("--interval", type=_positive, default=0.01, help="seconds between probes")
    p.add_argument("--timeout", type=_positive, default=0.5, help="seconds to wait for a reply")
    p.add_argument(
        "--max-duration", type=_positive, required=True, help="stop after this many seconds"
    )
    p.add_argument("--count", type=int, default=0, help="stop after this many probes")
    p.add_argument("--output", help="write the JSON result here (default: stdout)")
    p.add_argument("--progress", help="file rewritten every 0.1 s with {sent, received}")
    p.add_argument(
        "--realtime",
        action="store_true",
        help=f"send at real-time priority (SCHED_FIFO {REALTIME_PRIORITY}): the daemons "
        "under test share this machine's CPUs, and a client on its own machine is never "
        "delayed by them",
    )
    p.add_argument(
        "--anchor-file",
        help="on SIGUSR1, read a CLOCK_MONOTONIC instant from this file and move the send "
        "schedule onto the grid through it",
    )
    args = p.parse_args(argv)
    try:
        ipaddress.ip_address(args.target)
    except ValueError:
        p.error(f"--target {args.target!r}: not an IP address")
    if args.proto == "udp" and not args.port:
        p.error("--port: required with --proto udp (the port tests.lab.udp_echo listens on)")
    if args.port is not None and not 0 < args.port < 65536:
        p.error(f"--port {args.port}: must be 1..65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_probe(args)
    text = json.dumps(result, indent=1)
    if args.output:
        tmp = f"{args.output}.tmp"
        Path(tmp).write_text(text + "\n")
        os.replace(tmp, args.output)
    else:
        print(text, flush=True)
    return 0


# ---------------------------------------------------------------------- test wrapper


@dataclass
class ProbeResult:
    sent: int
    received: int
    lost: int
    outages: list[Outage]
    longest_outage_ms: float
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeResult:
        outages = [Outage(o["start"], o["end"], o["lost"]) for o in data["outages"]]
        return cls(
            sent=data["sent"],
            received=data["received"],
            lost=data["lost"],
            outages=outages,
            longest_outage_ms=data["longest_outage_ms"],
            raw=data,
        )


@dataclass
class Probe:
    """Runs ``tests.lab.probe`` in a lab node; ``stop()`` returns the measured result."""

    lab: Lab
    node: NodeRef
    target: str
    proto: str = "icmp"
    port: int | None = None
    interval: float = 0.01
    timeout: float = 0.5
    max_duration: float = 60.0
    realtime: bool = False
    process: ProcessHandle | None = field(default=None, init=False)
    output: Path = field(init=False)
    progress_file: Path = field(init=False)
    anchor_file: Path = field(init=False)

    def start(self) -> Probe:
        """Start probing; returns once the probe has sent its first probe."""
        out_dir = self.lab.node_dir(self.node)
        stem = f"probe-{self.target.replace(':', '_')}"
        self.output = self.lab.unique_path(out_dir, stem, ".json")
        self.progress_file = self.output.with_suffix(".progress")
        self.anchor_file = self.output.with_suffix(".anchor")
        argv = [
            sys.executable, "-m", "tests.lab.probe",
            "--target", self.target, "--proto", self.proto,
            "--interval", str(self.interval), "--timeout", str(self.timeout),
            "--max-duration", str(self.max_duration),
            "--output", str(self.output), "--progress", str(self.progress_file),
            "--anchor-file", str(self.anchor_file),
        ]  # fmt: skip
        if self.port is not None:
            argv += ["--port", str(self.port)]
        if self.realtime:
            argv.append("--realtime")
        self.process = self.lab.spawn(
            self.node, argv, name="probe", cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT)}
        )
        wait_for(
            lambda: self.progress().get("sent", 0) > 0 or not self.process_alive(),
            timeout=10,
            what="the probe to start sending",
        )
        if not self.process_alive():
            raise RuntimeError(f"probe exited at start:\n{self.process.log_text(tail=30)}")
        return self

    def anchor(self, grid: float) -> None:
        """Move the probe's schedule onto the grid through ``grid`` (time.monotonic()).

        The probe applies it within a fraction of a millisecond: its next probe goes out
        at the first grid point not yet past.
        """
        if self.process is None:
            raise RuntimeError("probe was not started")
        tmp = self.anchor_file.with_suffix(".anchor-tmp")
        tmp.write_text(repr(grid))
        os.replace(tmp, self.anchor_file)
        if not self.process.signal(signal.SIGUSR1):
            raise RuntimeError(f"probe is not running:\n{self.process.log_text(tail=30)}")

    def process_alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def progress(self) -> dict[str, Any]:
        """{sent, received} so far (empty before the first report)."""
        try:
            return dict(json.loads(self.progress_file.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def wait_received(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` more replies have arrived than when called."""
        base = self.progress().get("received", 0)
        wait_for(
            lambda: self.progress().get("received", 0) >= base + count,
            timeout=timeout,
            what=f"{count} probe replies from {self.target}",
            observe=self.progress,
        )

    def stop(self, timeout: float = 10.0) -> ProbeResult:
        """SIGTERM the probe, wait for its JSON and return it as a ProbeResult."""
        if self.process is None:
            raise RuntimeError("probe was not started")
        self.process.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except Exception as exc:
            raise RuntimeError(
                f"probe did not exit within {timeout}s:\n{self.process.log_text(tail=30)}"
            ) from exc
        try:
            data = json.loads(self.output.read_text())
        except (FileNotFoundError, ValueError) as exc:
            raise RuntimeError(
                f"probe wrote no result (exit {self.process.returncode}):\n"
                f"{self.process.log_text(tail=30)}"
            ) from exc
        return ProbeResult.from_json(data)


if __name__ == "__main__":
    sys.exit(main())
