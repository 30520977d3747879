"""An IPVS lab for the VM: a director, real servers and a client in namespaces.

One bridge carries three IPv4 subnets, so NAT, direct routing and tunnelling all work in
the same topology without a second switch (namespaces are slow to build in the VM)::

    client     eth0  10.62.0.10/24  (NAT client: answered through the director)
                     10.62.2.10/24  (direct client: real servers answer it themselves)
    director   eth0  10.62.0.1/24, 10.62.1.1/24, VIP 10.62.0.100/24; forwarding on,
                     ICMP redirects off (real servers and clients share the bridge)
    rsN        eth0  10.62.1.1N/24, default via 10.62.1.1 (NAT replies go back through
                     the director); 10.62.2.0/24 on-link (DR/tunnel replies go straight
                     to the direct client); VIP on lo with arp_ignore=1/arp_announce=2
                     so only the director answers ARP for it; tunl0, gre0 up and a GUE
                     port for the tunnel methods.

Every real server runs busybox httpd serving a page with its own name, so a client can
see which one answered. Requests come from the test process itself, from a thread that
joined the client's namespace (``tests.lab.capture.in_netns``): no process per request,
which matters when starting a process takes a fifth of a second.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .capture import in_netns
from .lab import Lab, Node
from .procs import ProcessHandle
from .waiting import wait_for

__all__ = [
    "CLIENT",
    "CLIENT_DIRECT",
    "ECHO_PORT",
    "GUE_PORT",
    "VIP",
    "EchoServers",
    "IpvsLab",
    "Session",
    "build_ipvs_lab",
    "http_get",
    "ipvsadm",
]

VIP = "10.62.0.100"
CLIENT = "10.62.0.10"
CLIENT_DIRECT = "10.62.2.10"
DIRECTOR = "10.62.0.1"
DIRECTOR_BACK = "10.62.1.1"
GUE_PORT = 6080
#: the long-lived connections' service: a TCP echo on every real server
ECHO_PORT = 7


@dataclass
class IpvsLab:
    lab: Lab
    client: Node
    director: Node
    servers: list[Node]
    rips: list[str]
    httpd: list[ProcessHandle] = field(default_factory=list)

    def get(self, host: str = VIP, *, source: str = CLIENT, port: int = 80) -> str:
        """One HTTP GET from the client (bound to ``source``); the page's text."""
        return http_get(self.client, host, port=port, source=source)

    def ipvsadm(self, *args: str) -> str:
        return ipvsadm(self.lab, self.director, *args)


def http_get(
    node: Node, host: str, *, port: int = 80, source: str | None = None, timeout: float = 5.0
) -> str:
    """GET / from inside ``node``; returns the body (stripped). Raises OSError on failure."""

    def fetch() -> str:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            if source:
                sock.bind((source, 0))
            sock.connect((host, port))
            sock.sendall(b"GET / HTTP/1.0\r\nHost: vigil\r\n\r\n")
            chunks = []
            for _ in range(1000):  # bounded: a page is a few bytes
                data = sock.recv(4096)
                if not data:
                    break
                chunks.append(data)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise OSError(f"GET http://{host}:{port}/: unexpected reply {head[:80]!r}")
        return body.decode(errors="replace").strip()

    return in_netns(node.ns, fetch)


def ipvsadm(lab: Lab, node: Node, *args: str) -> str:
    """``ipvsadm ARGS`` in ``node``; its stdout."""
    return lab.run(node, ["ipvsadm", *args], timeout=20).stdout


def _batch(lab: Lab, node: Node, commands: list[str]) -> None:
    """Several ``ip`` commands in one process (``ip -batch``)."""
    lab.run(node, ["ip", "-batch", "-"], input="\n".join(commands) + "\n", timeout=20)


def _answers(node: Node, host: str) -> Callable[[], str]:
    return lambda: http_get(node, host, timeout=2.0)


def build_ipvs_lab(lab: Lab, servers: int = 2) -> IpvsLab:
    """Build the topology above and start an httpd per real server (waits until each
    answers from the director)."""
    if not 1 <= servers <= 8:
        raise ValueError("build_ipvs_lab: 1..8 real servers")
    lab.add_switch()
    client = lab.add_namespace("client")
    lab.connect(client, "eth0")
    _batch(lab, client, [f"addr add {CLIENT}/24 dev eth0", f"addr add {CLIENT_DIRECT}/24 dev eth0"])
    director = lab.add_namespace("director", forwarding=True)
    lab.connect(director, "eth0")
    lab.sysctl(
        director,
        **{"net.ipv4.conf.all.send_redirects": 0, "net.ipv4.conf.eth0.send_redirects": 0},
    )
    _batch(
        lab,
        director,
        [
            f"addr add {DIRECTOR}/24 dev eth0",
            f"addr add {DIRECTOR_BACK}/24 dev eth0",
            f"addr add {VIP}/24 dev eth0",
        ],
    )
    nodes, rips = [], []
    for n in range(1, servers + 1):
        rip = f"10.62.1.{10 + n}"
        rs = lab.add_namespace(f"rs{n}")
        lab.connect(rs, "eth0")
        lab.sysctl(
            rs,
            **{
                "net.ipv4.conf.all.arp_ignore": 1,
                "net.ipv4.conf.all.arp_announce": 2,
                "net.ipv4.conf.eth0.arp_ignore": 1,
                "net.ipv4.conf.eth0.arp_announce": 2,
                "net.ipv4.conf.all.accept_redirects": 0,
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0,
            },
        )
        _batch(
            lab,
            rs,
            [
                f"addr add {rip}/24 dev eth0",
                f"route add default via {DIRECTOR_BACK}",
                "route add 10.62.2.0/24 dev eth0",
                f"addr add {VIP}/32 dev lo",
                "link set tunl0 up",
                "link set gre0 up",
                f"fou add port {GUE_PORT} gue",
            ],
        )
        www = lab.node_dir(rs) / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(f"{rs.name}\n")
        nodes.append(rs)
        rips.append(rip)
    ipl = IpvsLab(lab, client, director, nodes, rips)
    for rs in nodes:
        www = lab.node_dir(rs) / "www"
        ipl.httpd.append(
            lab.spawn(rs, ["busybox", "httpd", "-f", "-p", "80", "-h", str(www)], name="httpd")
        )
    for rs, rip in zip(nodes, rips, strict=True):
        wait_for(
            _answers(director, rip),
            timeout=30,
            interval=0.2,
            what=f"httpd on {rs.name} ({rip}) answering the director",
        )
    return ipl


# ---------------------------------------------------------------------------- HA pair

#: the HA lab's VIPs: one per forwarding method, plus the real servers' gateway
HA_VIPS = {"nat": "10.62.0.100", "dr": "10.62.0.101", "tun": "10.62.0.102"}
HA_GATEWAY = "10.62.1.254"
SORRY = "10.62.1.99"


@dataclass
class HaLab:
    """Two directors (VRRP + IPVS by vigild, started by the test), real servers, a sorry
    server and a client, on one bridge (see :func:`build_ha_lab`)."""

    lab: Lab
    client: Node
    directors: list[Node]
    servers: list[Node]
    rips: list[str]
    sorry: Node
    httpd: dict[str, ProcessHandle] = field(default_factory=dict)

    def get(self, host: str, *, source: str = CLIENT, timeout: float = 5.0) -> str:
        return http_get(self.client, host, source=source, timeout=timeout)

    def ipvsadm(self, director: int, *args: str) -> str:
        return ipvsadm(self.lab, self.directors[director], *args)

    def start_httpd(self, node: Node) -> ProcessHandle:
        www = self.lab.node_dir(node) / "www"
        handle = self.lab.spawn(
            node, ["busybox", "httpd", "-f", "-p", "80", "-h", str(www)], name="httpd"
        )
        self.httpd[node.name] = handle
        return handle

    def kill_httpd(self, node: Node) -> None:
        import signal

        handle = self.httpd.pop(node.name)
        self.lab.kill_group(handle, signal.SIGKILL)


def build_ha_lab(lab: Lab, servers: int = 3) -> HaLab:
    """An LVS director pair on one bridge, every address in 10.62.0.0/16::

        client     10.62.0.10/24 (NAT client), 10.62.2.10/24 (direct client: DR, tunnel)
        dN         10.62.0.N/24, 10.62.1.N/24; forwarding on, redirects off; the VIPs
                   (10.62.0.100-102 and the real servers' gateway 10.62.1.254) are
                   VRRP's to add
        rsN        10.62.1.1N/24, default via the gateway VIP (NAT replies go back through
                   the master director), 10.62.2.0/24 on-link; VIPs on lo with
                   arp_ignore/arp_announce (DR), tunl0 up (ipip); busybox httpd
        sorry      10.62.1.99/24, the sorry server (httpd), default via the gateway VIP

    Each web server's page is its node name ("rs1", "sorry")."""
    lab.add_switch()
    client = lab.add_namespace("client")
    lab.connect(client, "eth0")
    _batch(lab, client, [f"addr add {CLIENT}/24 dev eth0", f"addr add {CLIENT_DIRECT}/24 dev eth0"])
    directors = []
    for n in (1, 2):
        d = lab.add_namespace(f"d{n}", forwarding=True)
        lab.connect(d, "eth0")
        lab.sysctl(
            d, **{"net.ipv4.conf.all.send_redirects": 0, "net.ipv4.conf.eth0.send_redirects": 0}
        )
        _batch(lab, d, [f"addr add 10.62.0.{n}/24 dev eth0", f"addr add 10.62.1.{n}/24 dev eth0"])
        directors.append(d)
    nodes, rips = [], []
    for n in range(1, servers + 2):
        last = n == servers + 1
        name = "sorry" if last else f"rs{n}"
        rip = SORRY if last else f"10.62.1.{10 + n}"
        rs = lab.add_namespace(name)
        lab.connect(rs, "eth0")
        lab.sysctl(
            rs,
            **{
                "net.ipv4.conf.all.arp_ignore": 1,
                "net.ipv4.conf.all.arp_announce": 2,
                "net.ipv4.conf.eth0.arp_ignore": 1,
                "net.ipv4.conf.eth0.arp_announce": 2,
                "net.ipv4.conf.all.accept_redirects": 0,
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0,
            },
        )
        _batch(
            lab,
            rs,
            [
                f"addr add {rip}/24 dev eth0",
                f"route add default via {HA_GATEWAY}",
                "route add 10.62.2.0/24 dev eth0",
                *(f"addr add {vip}/32 dev lo" for vip in HA_VIPS.values()),
                "link set tunl0 up",
            ],
        )
        www = lab.node_dir(rs) / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(f"{name}\n")
        nodes.append(rs)
        rips.append(rip)
    ha = HaLab(lab, client, directors, nodes[:-1], rips[:-1], nodes[-1])
    for node in nodes:
        ha.start_httpd(node)
    for node, rip in zip(nodes, [*rips], strict=True):
        wait_for(
            _answers(directors[0], rip),
            timeout=30,
            interval=0.2,
            what=f"httpd on {node.name} ({rip}) answering d1",
        )
    return ha


# ---------------------------------------------------------------------------- long-lived TCP


class EchoServers:
    """A TCP echo service on ``port`` in each of ``nodes``, served by one thread of the test
    process (its listening sockets were made in the nodes' namespaces).

    No process per connection: a checker's connect-and-close every delay_loop and the long
    connections a failover test holds cost a few syscalls, not a process start in the VM.
    ``accepted`` counts connections per node; ``stop`` (also a lab clean-up) closes all.
    """

    def __init__(self, lab: Lab, nodes: Sequence[Node], port: int = ECHO_PORT) -> None:
        self.port = port
        self.accepted: dict[str, int] = {n.name: 0 for n in nodes}
        self._sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        for node in nodes:
            listener = in_netns(node.ns, lambda: _listen(port))
            self._sel.register(listener, selectors.EVENT_READ, ("listen", node.name))
        self._thread = threading.Thread(target=self._serve, name="echo-servers", daemon=True)
        self._thread.start()
        lab.add_cleanup(self.stop)

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.2):
                kind, name = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if kind == "listen":
                    with contextlib.suppress(OSError):
                        conn, _peer = sock.accept()
                        conn.setblocking(False)
                        self.accepted[name] += 1
                        self._sel.register(conn, selectors.EVENT_READ, ("conn", name))
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        sock.sendall(data)  # small payloads: the send buffer takes them
                        continue
                except OSError:
                    pass
                self._sel.unregister(sock)
                sock.close()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        for key in list(self._sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self._sel.close()


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(64)
    sock.setblocking(False)
    return sock


class Session:
    """One long-lived TCP connection from the client to ``vip``:``port`` (an echo service):
    open it, then :meth:`exchange` a line as often as wanted, each bounded in time.

    An exchange's outcome is ``ok`` (the line came back), ``reset`` (ECONNRESET: a director
    that does not know the connection answered for the VIP itself), ``closed`` (EOF),
    ``stalled`` (nothing within the timeout) or ``error: ...``. After anything but ``ok``
    the session is dead and every later exchange says so.
    """

    def __init__(self, client: Node, vip: str, *, source: str, port: int = ECHO_PORT) -> None:
        self.vip, self.source, self.port = vip, source, port
        self.count = 0
        self.dead: str | None = None

        def connect() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
            sock.bind((source, 0))
            sock.settimeout(10)
            sock.connect((vip, port))
            return sock

        self.sock = in_netns(client.ns, connect)
        host, port_ = self.sock.getsockname()[:2]
        self.local = f"{host}:{port_}"

    def __str__(self) -> str:
        return f"{self.local} -> {self.vip}:{self.port}"

    def exchange(self, timeout: float = 20.0) -> str:
        """Send one line and read it back; the outcome (see the class)."""
        if self.dead is not None:
            return self.dead
        self.count += 1
        line = f"vigil {self.local} #{self.count}\n".encode()
        outcome = "ok"
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(line)
            got = b""
            deadline = time.monotonic() + timeout
            while len(got) < len(line):  # bounded: the socket timeout and the deadline
                if time.monotonic() >= deadline:
                    raise TimeoutError
                chunk = self.sock.recv(len(line) - len(got))
                if not chunk:
                    outcome = "closed"
                    break
                got += chunk
            if outcome == "ok" and got != line:
                outcome = f"error: sent {line!r}, got back {got!r}"
        except TimeoutError:
            outcome = "stalled"
        except ConnectionResetError:
            outcome = "reset"
        except OSError as exc:
            outcome = "reset" if exc.errno == errno.ECONNRESET else f"error: {exc}"
        if outcome != "ok":
            self.dead = outcome
            self.close()
        return outcome

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
