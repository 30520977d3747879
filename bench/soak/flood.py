"""An API connection flood: ``python -m bench.soak.flood --socket S --count N --hold T``.

Opens up to N connections to the agent's Unix socket and leaves them idle (no request),
as a misbehaving client would, until SIGTERM or ``--hold`` seconds; then closes them and
writes what happened (connected, refused, errors) as JSON. It raises its own open-files
limit to fit N; the agent keeps the one the unit gives it. ``OUT.opened`` appears once
every connection was tried, so the caller knows the flood is in place.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak.flood", description=__doc__)
    p.add_argument("--socket", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--hold", type=float, default=10.0, help="seconds at most (SIGTERM ends it)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if not 0 < args.count <= 100_000:
        p.error("--count: 1..100000")
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.count + 64)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    # Room for the interpreter's own files and the result: past this the flood stops, and
    # says so, instead of dying on EMFILE without a result.
    budget = max(0, min(want, resource.getrlimit(resource.RLIMIT_NOFILE)[0]) - 64)
    socks: list[socket.socket] = []
    errors: Counter[str] = Counter()
    t0 = time.monotonic()
    for _ in range(min(args.count, budget)):
        if stop:
            break
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            # EMFILE: this process's own open-files hard limit is below --count.
            errors[errno.errorcode.get(exc.errno or 0, str(exc.errno))] += 1
            break
        s.setblocking(False)
        try:
            s.connect(args.socket)
        except OSError as exc:
            # EAGAIN: the listen backlog is full (the agent is not accepting).
            errors[errno.errorcode.get(exc.errno or 0, str(exc.errno))] += 1
            s.close()
            continue
        socks.append(s)
    opened_s = time.monotonic() - t0
    Path(str(args.out) + ".opened").write_text(str(len(socks)))
    deadline = time.monotonic() + args.hold
    # Hold: wait for SIGTERM or the end of --hold. sigtimedwait takes a pending SIGTERM
    # itself (the handler never runs for it), so its answer is what says "stop".
    while not stop and time.monotonic() < deadline:
        if signal.sigtimedwait({signal.SIGTERM}, 0.2) is not None:
            stop.append(signal.SIGTERM)
    # Count connections the agent closed on its own (an idle timeout would do that).
    closed_by_agent = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed_by_agent += 1
        except BlockingIOError:
            pass
        except OSError:
            closed_by_agent += 1
        s.close()
    result = {
        "requested": args.count,
        "capped_at": budget if budget < args.count else None,
        "connected": len(socks),
        "refused": dict(errors),
        "closed_by_agent": closed_by_agent,
        "open_s": round(opened_s, 3),
        "held_s": round(time.monotonic() - t0, 3),
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
