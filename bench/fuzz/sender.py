"""The fuzzer's sending process: ``python -m bench.fuzz.sender --plan P --out R``.

Runs inside the fuzzer namespace (the lab spawns it there), in two phases:

1. **build**: every frame of the plan is generated (deterministically, see
   :mod:`bench.fuzz.engine`) into one buffer before anything is sent, so sending costs a
   syscall per frame and the agents under test do not share the CPU with the generator
   while they are flooded. Progress says ``{"phase": "built", "built": N}`` when done.
2. **send**: on SIGUSR1 (or at once with ``--start-now``) the frames go out on an
   AF_PACKET socket bound to the plan's interface, paced to ``plan.rate`` packets per
   second (0: as fast as the socket takes them). It stops after the last frame, after
   ``plan.max_seconds`` of sending, or on SIGTERM.

The result (JSON) has packets sent, per kind and family, send errors, how many mutants
had their priority neutralized, the build and send times. Progress (``{"sent": N}``) is
rewritten every 0.2 s.
"""

from __future__ import annotations

import argparse
import array
import errno
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.fuzz.engine import FrameGenerator, FuzzPlan, family, generate_batch

#: a paced sender sends this many frames between two looks at the clock
BURST = 64
#: the longest a built sender waits for the signal to start sending
START_TIMEOUT = 600.0


def _write(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


class Frames:
    """Every frame of a plan in one buffer (bytes + offsets + kind numbers)."""

    def __init__(self, plan: FuzzPlan, stop: list[str], progress: Path | None) -> None:
        generators: dict[str, FrameGenerator] = {
            name: family(name).generator(plan) for name, _w in plan.families
        }
        self.blob = bytearray()
        self.offsets = array.array("Q", [0])
        self.kind_of = array.array("H")
        self.kinds: list[str] = []
        self.families: list[str] = []
        index: dict[tuple[str, str], int] = {}
        t0 = time.monotonic()
        for b in range((plan.count + plan.batch - 1) // plan.batch):
            if stop:
                break
            for mutant in generate_batch(plan, generators, b):
                key = (mutant.family, mutant.kind)
                if key not in index:
                    index[key] = len(self.kinds)
                    self.kinds.append(mutant.kind)
                    self.families.append(mutant.family)
                self.blob += mutant.frame
                self.offsets.append(len(self.blob))
                self.kind_of.append(index[key])
            if b % 20 == 0:
                _write(progress, {"phase": "building", "built": len(self), "sent": 0})
        self.build_s = time.monotonic() - t0
        self.neutralized = sum(int(getattr(g, "neutralized", 0)) for g in generators.values())

    def __len__(self) -> int:
        return len(self.kind_of)


def send(plan: FuzzPlan, frames: Frames, stop: list[str], progress: Path | None) -> dict[str, Any]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((plan.ifname, 0))
    view = memoryview(frames.blob)
    per_kind = [0] * len(frames.kinds)
    errors: Counter[str] = Counter()
    sent = 0
    t0 = time.monotonic()
    deadline = t0 + plan.max_seconds
    next_progress = t0
    offsets, kind_of = frames.offsets, frames.kind_of
    for i in range(len(frames)):
        if i % BURST == 0:
            if stop:
                break
            now = time.monotonic()
            if now >= deadline:
                stop.append("max-seconds")
                break
            if plan.rate > 0:
                due = t0 + i / plan.rate
                if due > now:
                    time.sleep(due - now)  # pacing: the send schedule, not a wait
            if now >= next_progress:
                _write(progress, {"phase": "sending", "built": len(frames), "sent": sent})
                next_progress = now + 0.2
        frame = view[offsets[i] : offsets[i + 1]]
        for _attempt in range(100):
            try:
                sock.send(frame)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the device queue is full: let it drain
                    time.sleep(0.0005)
                    continue
                errors[exc.strerror or str(exc)] += 1
                break
            sent += 1
            per_kind[kind_of[i]] += 1
            break
        else:
            errors["ENOBUFS 100 times"] += 1
    elapsed = time.monotonic() - t0
    sock.close()
    kinds: Counter[str] = Counter()
    families: Counter[str] = Counter()
    for k, n in enumerate(per_kind):
        kinds[frames.kinds[k]] += n
        families[frames.families[k]] += n
    return {
        "sent": sent,
        "planned": plan.count,
        "built": len(frames),
        "build_s": round(frames.build_s, 3),
        "send_s": round(elapsed, 3),
        "rate_pps": round(sent / elapsed, 1) if elapsed > 0 else None,
        "stopped_by": stop[0] if stop else "count",
        "kinds": dict(sorted(kinds.items())),
        "families": dict(families),
        "send_errors": dict(errors),
        "neutralized": frames.neutralized,
        "seed": plan.seed,
    }


def run(plan: FuzzPlan, out: Path, progress: Path | None, *, start_now: bool) -> dict[str, Any]:
    stop: list[str] = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append("SIGTERM"))
    signal.signal(signal.SIGINT, lambda s, f: stop.append("SIGINT"))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    frames = Frames(plan, stop, progress)
    _write(progress, {"phase": "built", "built": len(frames), "sent": 0})
    if not start_now and not stop:
        ends = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, ends)
        got = signal.sigtimedwait({signal.SIGUSR1, *ends}, START_TIMEOUT)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, ends)
        if got is None:
            stop.append("no start signal")
        elif got.si_signo != signal.SIGUSR1:
            stop.append(signal.Signals(got.si_signo).name)
    result = send(plan, frames, stop, progress)
    _write(out, result)
    _write(progress, {"phase": "done", "built": len(frames), "sent": result["sent"]})
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz.sender", description=__doc__)
    p.add_argument("--plan", required=True, type=Path, help="the plan (JSON, FuzzPlan)")
    p.add_argument("--out", required=True, type=Path, help="where the result JSON goes")
    p.add_argument("--progress", type=Path, help="progress file, rewritten every 0.2 s")
    p.add_argument("--start-now", action="store_true", help="send once built (no SIGUSR1)")
    args = p.parse_args(argv)
    plan = FuzzPlan.from_dict(json.loads(args.plan.read_text()))
    result = run(plan, args.out, args.progress, start_now=args.start_now)
    print(json.dumps({k: result[k] for k in ("sent", "send_s", "rate_pps", "stopped_by")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
