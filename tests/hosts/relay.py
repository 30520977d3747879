"""SSH ProxyCommand for the host lab: join stdin/stdout to a TCP connection.

    nsenter --net=/run/netns/CTL python3 -m tests.hosts.relay HOST PORT

Why: Ansible runs in the root namespace, where the controller reaches the outside world
(the ha_pair role builds its wheelhouse there with pip), while the lab hosts are only
reachable on the lab bridge. ssh starts this relay inside the lab's controller namespace,
so no address is ever added to the root namespace. The relay ends when either side closes,
and after ``MAX_SECONDS`` at the latest.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time

MAX_SECONDS = 4 * 3600.0
CHUNK = 65536


def relay(host: str, port: int) -> int:
    try:
        sock = socket.create_connection((host, port), timeout=5.0)
    except OSError as exc:
        print(f"relay: cannot connect to {host}:{port}: {exc}", file=sys.stderr)
        return 255
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "stdin")
    sel.register(sock, selectors.EVENT_READ, "sock")
    deadline = time.monotonic() + MAX_SECONDS
    stdin_open = True
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=5.0):
            if key.data == "stdin":
                data = os.read(0, CHUNK)
                if not data:
                    sel.unregister(0)
                    stdin_open = False
                    sock.shutdown(socket.SHUT_WR)
                    continue
                sock.setblocking(True)
                sock.sendall(data)
                sock.setblocking(False)
            else:
                try:
                    data = sock.recv(CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view) :]
        if not stdin_open and not sel.get_map():
            return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: python -m tests.hosts.relay HOST PORT", file=sys.stderr)
        return 2
    return relay(args[0], int(args[1]))


if __name__ == "__main__":
    raise SystemExit(main())
