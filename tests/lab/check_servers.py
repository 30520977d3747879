"""Backends for the IPVS checker tests: ``python -m tests.lab.check_servers``.

One asyncio process serves HTTP (or HTTPS with ``--tls CERT KEY``) on many ports of one
address, so a scale test needs a handful of processes for a thousand real servers.

* Status: ``<control>/status-<port>`` or else ``<control>/status`` holds the code to
  answer (default 200); the test flips a server by writing the file. A missing or bad
  file means 200.
* ``GET /slow`` answers after ``--slow`` seconds (a read timeout for the checker).
* ``--sni-log FILE``: every TLS handshake appends the server name the client sent (or
  ``-`` for none), one per line.
* Body: ``vigil check server <port>\\n`` (the tests compute its MD5).
* ``--count-file FILE``: the number of connections accepted so far, rewritten every
  second (a benchmark counts the checks each implementation made, failed ones included).

Bounded by ``--max-duration``; exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from pathlib import Path

MAX_REQUEST = 8192


def body_for(port: int) -> bytes:
    return f"vigil check server {port}\n".encode()


class Server:
    def __init__(self, control: Path | None, slow: float, sni_log: Path | None) -> None:
        self.control = control
        self.slow = slow
        self.sni_log = sni_log
        self.requests = 0
        self.connections = 0

    def status(self, port: int) -> int:
        if self.control is None:
            return 200
        for name in (f"status-{port}", "status"):
            try:
                text = (self.control / name).read_text().strip()
            except OSError:
                continue
            return int(text) if text.isdigit() else 200
        return 200

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        self.connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            self.requests += 1
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            if path == b"/slow":
                await asyncio.sleep(self.slow)
            code = self.status(port)
            body = body_for(port)
            writer.write(
                f"HTTP/1.0 {code} X\r\nContent-Length: {len(body)}\r\n"
                f"Content-Type: text/plain\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()

    def tls_context(self, cert: str, key: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        log = self.sni_log

        def on_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if log is not None:
                with open(log, "a") as fh:
                    fh.write(f"{name or '-'}\n")

        ctx.sni_callback = on_sni  # type: ignore[assignment]
        return ctx


async def serve(args: argparse.Namespace) -> int:
    server = Server(args.control, args.slow, args.sni_log)
    ctx = server.tls_context(*args.tls) if args.tls else None
    listeners = []
    for port in args.ports:
        listeners.append(
            await asyncio.start_server(
                server.handle, args.listen, port, ssl=ctx, backlog=1024, reuse_address=True
            )
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"check_servers: listening on {args.listen} ports {len(args.ports)}", flush=True)
    counter = (
        asyncio.create_task(write_counts(server, args.count_file)) if args.count_file else None
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_duration)
    if counter is not None:
        counter.cancel()
    for srv in listeners:
        srv.close()
    print(f"check_servers: answered {server.requests} requests", flush=True)
    return 0


async def write_counts(server: Server, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    while True:
        tmp.write_text(f"{server.connections}\n")
        tmp.replace(path)
        await asyncio.sleep(1.0)


def ports(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    if not out or not all(0 < p < 65536 for p in out):
        raise argparse.ArgumentTypeError(f"bad port list {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.check_servers", description=__doc__)
    p.add_argument("--listen", required=True)
    p.add_argument("--ports", type=ports, required=True, help="8080,8090-8099")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--control", type=Path)
    p.add_argument("--slow", type=float, default=30.0)
    p.add_argument("--sni-log", type=Path)
    p.add_argument("--count-file", type=Path)
    p.add_argument("--max-duration", type=float, default=600.0)
    return asyncio.run(serve(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
