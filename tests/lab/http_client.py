"""A client that keeps sending HTTP requests and records every one of them.

``python -m tests.lab.http_client --target ADDR --port 80 --interval 0.05 --out FILE``
runs in a client namespace (``lab.spawn``): one ``GET /`` at a time on a new TCP
connection, one every ``--interval`` seconds (or at once after a slow one), each appended
to ``FILE`` as a JSON line as soon as it ends::

    {"t": <CLOCK_MONOTONIC at the start>, "ok": true, "ms": 3.1, "body": "web1"}
    {"t": ..., "ok": false, "ms": 2000.4, "error": "timed out"}

A request is ok when the reply is ``HTTP/1.x 200`` within ``--timeout``; no retries, so
every refused, reset or late request is a failure. ``t`` is the shared CLOCK_MONOTONIC
(``time.monotonic()`` of the test), so a test cuts the record into phases by its own clock.
It stops on SIGTERM/SIGINT or after ``--max-duration`` seconds (bounded in any case).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from typing import Any

__all__ = ["get", "main", "read_records"]


def get(host: str, port: int, timeout: float) -> str:
    """One ``GET /`` on a new connection; the body (stripped). Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(b"GET / HTTP/1.0\r\nHost: vigil\r\n\r\n")
        chunks = []
        for _ in range(1000):  # bounded: the pages are a few bytes
            data = sock.recv(4096)
            if not data:
                break
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.") or b" 200 " not in status + b" ":
        raise OSError(f"unexpected reply {head[:60]!r}")
    return body.decode(errors="replace").strip()


def read_records(path: str) -> list[dict[str, Any]]:
    """The complete lines of a client's record (a line being written is left out)."""
    out = []
    try:
        with open(path) as fh:
            for line in fh:
                if line.endswith("\n"):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.http_client")
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--max-duration", type=float, default=3600.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    end = time.monotonic() + args.max_duration
    limit = int(args.max_duration / max(args.interval, 0.001)) + 1
    with open(args.out, "a") as out:
        for _ in range(limit):
            start = time.monotonic()
            if stop or start >= end:
                break
            rec: dict[str, Any] = {"t": start}
            try:
                rec["body"] = get(args.target, args.port, args.timeout)
                rec["ok"] = True
            except OSError as exc:
                rec["ok"] = False
                rec["error"] = str(exc) or type(exc).__name__
            rec["ms"] = round((time.monotonic() - start) * 1000, 2)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            pause = args.interval - (time.monotonic() - start)
            if pause > 0 and not stop:
                time.sleep(pause)  # the request rate, not a wait for a condition
    return 0


if __name__ == "__main__":
    sys.exit(main())
