"""UDP echo responder for ``tests.lab.probe --proto udp``: ``python -m tests.lab.udp_echo``.

Listens on IPv4 and IPv6 and answers every datagram with the same bytes, *from the address
it was sent to* (IP_PKTINFO / IPV6_PKTINFO): a reply to a probe of a VIP must come from the
VIP, or the client's connected socket drops it. Bounded by ``--max-duration`` and
``--max-packets``; exits on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import signal
import socket
import struct
import sys
import time

# Python 3.11 lacks IP_PKTINFO; Linux values.
IP_PKTINFO = 8
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IN_PKTINFO = struct.Struct("=i4s4s")  # ifindex, spec_dst, addr
IN6_PKTINFO = struct.Struct("=16si")  # addr, ifindex


def _sockets(port: int) -> list[socket.socket]:
    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s4.bind(("0.0.0.0", port))
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s6.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    s6.bind(("::", port))
    return [s4, s6]


def _echo(sock: socket.socket) -> int:
    """Answer what is queued on ``sock``; return how many datagrams were answered."""
    answered = 0
    for _ in range(1000):
        try:
            data, ancdata, _flags, src = sock.recvmsg(65535, 256)
        except (BlockingIOError, InterruptedError):
            break
        reply_cmsg = []
        for level, typ, cdata in ancdata:
            if level == socket.IPPROTO_IP and typ == IP_PKTINFO:
                _ifindex, _spec, dst = IN_PKTINFO.unpack_from(cdata)
                reply_cmsg = [(level, typ, IN_PKTINFO.pack(0, dst, b"\0" * 4))]
            elif level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO:
                dst6, ifindex = IN6_PKTINFO.unpack_from(cdata)
                reply_cmsg = [(level, typ, IN6_PKTINFO.pack(dst6, ifindex))]
        with contextlib.suppress(OSError):
            sock.sendmsg([data], reply_cmsg, 0, src)
            answered += 1
    return answered


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.udp_echo", description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-duration", type=float, default=600.0)
    p.add_argument("--max-packets", type=int, default=10_000_000)
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        p.error(f"--port {args.port}: must be 1..65535")
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    signal.signal(signal.SIGINT, lambda s, f: stop.append(s))
    socks = _sockets(args.port)
    for s in socks:
        s.setblocking(False)
    print(f"udp_echo: listening on port {args.port}", flush=True)
    deadline = time.monotonic() + args.max_duration
    total = 0
    while not stop and total < args.max_packets:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select(socks, [], [], min(remaining, 0.5))
        for s in ready:
            total += _echo(s)
    print(f"udp_echo: answered {total} datagrams", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
