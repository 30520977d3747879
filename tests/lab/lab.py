"""The namespace lab: nodes in network namespaces joined by a bridge in a switch namespace.

Nothing is created in the root namespace: veth pairs are created directly with one end in
the switch namespace and the other in the node, so interface names only have to be unique
inside a namespace. Every namespace, process group and directory is recorded in the run
registry before it exists, and ``close()`` removes all of it; it is idempotent and also
runs from atexit and on SIGTERM (see ``lifecycle``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import lifecycle
from .procs import ProcessHandle, kill_groups, spawn_in_netns
from .registry import RunRegistry, current_run
from .waiting import wait_for

if TYPE_CHECKING:
    from .agents import AgentHandle
    from .peers import PeerHandle
    from .probe import Probe

T = TypeVar("T")

__all__ = ["Lab", "LabError", "Link", "Node"]

IFNAMSIZ = 15
BRIDGE = "br0"


class LabError(RuntimeError):
    """A lab operation failed; the message has the command and what it printed."""


@dataclass(frozen=True)
class Node:
    """A network namespace in the lab. ``name`` is the test's label, ``ns`` the real name."""

    name: str
    ns: str
    is_switch: bool = False

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Link:
    """A veth between ``node``/``ifname`` and ``port`` on the switch's bridge."""

    node: Node
    ifname: str
    switch: Node
    port: str


NodeRef = Node | str

_lab_counter = itertools.count(1)


def _check_ifname(ifname: str, what: str) -> None:
    if not ifname or len(ifname) > IFNAMSIZ or "/" in ifname or " " in ifname:
        raise ValueError(
            f"{what} {ifname!r}: interface names must be 1-{IFNAMSIZ} characters without "
            "'/' or spaces"
        )


@dataclass
class Lab:
    """One test's set of namespaces, links and processes.

    ``workdir`` (the test's tmp_path) keeps logs and configs after the test for reading;
    ``shortdir`` (under /tmp, short enough for Unix socket paths) holds sockets and state
    and is removed on close.
    """

    workdir: Path
    registry: RunRegistry = field(default_factory=current_run)
    lab_id: str = ""
    nodes: dict[str, Node] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    processes: list[ProcessHandle] = field(default_factory=list)
    shortdir: Path = field(init=False)
    _closed: bool = field(default=False, init=False)
    _port_counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _cleanups: list[Callable[[], None]] = field(default_factory=list)
    _late_cleanups: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.lab_id:
            self.lab_id = f"{self.registry.prefix}-{next(_lab_counter)}"
        self.registry.create()
        prefix = f"{self.lab_id}-"
        self.shortdir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.registry.record("dir", str(self.shortdir))
        lifecycle.register(self)

    # ------------------------------------------------------------------ commands

    def _cmd(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 10.0,
        input: str = "",
    ) -> subprocess.CompletedProcess[str]:
        try:
            res = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"`{' '.join(argv)}` did not finish within {timeout}s") from exc
        if check and res.returncode != 0:
            raise LabError(
                f"`{' '.join(argv)}` failed with exit {res.returncode}: "
                f"{(res.stderr or res.stdout).strip()}"
            )
        return res

    def node(self, ref: NodeRef) -> Node:
        if isinstance(ref, Node):
            return ref
        try:
            return self.nodes[ref]
        except KeyError:
            raise KeyError(
                f"no lab node {ref!r}; this lab has: {', '.join(self.nodes) or 'none'}"
            ) from None

    def ip(self, node: NodeRef, *args: str, check: bool = True) -> str:
        """Run ``ip -n NS ARGS`` and return its stdout."""
        return self._cmd(["ip", "-n", self.node(node).ns, *args], check=check).stdout

    def ip_json(self, node: NodeRef, *args: str) -> Any:
        out = self._cmd(["ip", "-j", "-n", self.node(node).ns, *args]).stdout
        return json.loads(out) if out.strip() else []

    def sysctl(self, node: NodeRef, **settings: str | int) -> None:
        """Set sysctls inside the node: ``sysctl(n, **{"net.ipv4.ip_forward": 1})``."""
        pairs = [f"{k}={v}" for k, v in settings.items()]
        self._cmd(["ip", "netns", "exec", self.node(node).ns, "sysctl", "-q", "-w", *pairs])

    def run(
        self,
        node: NodeRef,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 10.0,
        input: str = "",
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the node and wait for it (bounded by ``timeout``).

        It gets its own session; on timeout the whole group is killed, not just ``ip``.
        """
        full = ["ip", "netns", "exec", self.node(node).ns, *argv]
        proc = subprocess.Popen(
            full,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise LabError(f"`{' '.join(full)}` did not finish within {timeout}s") from None
        res = subprocess.CompletedProcess(full, proc.returncode, out, err)
        if check and res.returncode != 0:
            raise LabError(
                f"`{' '.join(full)}` failed with exit {res.returncode}: {(err or out).strip()}"
            )
        return res

    def spawn(
        self,
        node: NodeRef | None,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> ProcessHandle:
        """Start a long-running process in the node (None: the test's own namespace).

        Its output goes to ``workdir/logs/<node>.<name>.log``; it is stopped on close.
        """
        self._check_open()
        ns = self.node(node).ns if node is not None else None
        label = name or Path(argv[0]).name
        where = self.node(node).name if node is not None else "host"
        log = self.unique_path(self.workdir / "logs", f"{where}.{label}", ".log")
        handle = spawn_in_netns(
            f"{where}/{label}",
            ns,
            argv,
            log,
            env=env,
            cwd=cwd,
            registry=self.registry,
            pass_fds=pass_fds,
        )
        self.processes.append(handle)
        return handle

    @staticmethod
    def unique_path(directory: Path, stem: str, suffix: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{stem}{suffix}"
        for n in range(2, 1000):
            if not path.exists():
                return path
            path = directory / f"{stem}.{n}{suffix}"
        raise LabError(f"too many files named {stem}{suffix} in {directory}")

    def node_dir(self, node: NodeRef, *, short: bool = False) -> Path:
        """A per-node directory: in ``workdir`` (kept) or ``shortdir`` (sockets, state)."""
        base = self.shortdir if short else self.workdir
        path = base / self.node(node).name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ topology

    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.lab_id} is closed")

    def add_namespace(self, name: str, *, forwarding: bool = False) -> Node:
        """Create a namespace with lo up and IPv6 DAD off (VRRPv6 needs its link-local now).

        ``name`` is the test's label (``n1``); the namespace is ``<lab id>-<name>``.
        """
        self._check_open()
        if name in self.nodes:
            raise LabError(f"lab node {name!r} exists already")
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"node name {name!r}: use letters, digits, '-' and '_'")
        node = Node(name, f"{self.lab_id}-{name}")
        self.registry.record("netns", node.ns)
        self._cmd(["ip", "netns", "add", node.ns])
        self.nodes[name] = node
        self.ip(node, "link", "set", "lo", "up")
        fwd = 1 if forwarding else 0
        self.sysctl(
            node,
            **{
                "net.ipv6.conf.all.accept_dad": 0,
                "net.ipv6.conf.default.accept_dad": 0,
                "net.ipv4.ip_forward": fwd,
                "net.ipv6.conf.all.forwarding": fwd,
            },
        )
        return node

    def add_switch(self, name: str = "sw") -> Node:
        """A namespace holding bridge ``br0``: no STP, no forward delay, no snooping.

        IPv6 is off in the switch so it never sends anything of its own on the segment.
        """
        node = self.add_namespace(name)
        self.sysctl(
            node,
            **{
                "net.ipv6.conf.all.disable_ipv6": 1,
                "net.ipv6.conf.default.disable_ipv6": 1,
            },
        )
        self.registry.record("bridge", f"{node.ns}/{BRIDGE}")
        self.ip(
            node,
            "link", "add", BRIDGE, "type", "bridge",
            "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0",
        )  # fmt: skip
        self.ip(node, "link", "set", BRIDGE, "up")
        sw = Node(node.name, node.ns, is_switch=True)
        self.nodes[name] = sw
        return sw

    def _default_switch(self) -> Node:
        switches = [n for n in self.nodes.values() if n.is_switch]
        if len(switches) == 1:
            return switches[0]
        if not switches:
            return self.add_switch()
        raise LabError("this lab has several switches: pass switch=")

    def connect(
        self,
        node: NodeRef,
        ifname: str = "eth0",
        addrs: Sequence[str] = (),
        *,
        switch: NodeRef | None = None,
        mac: str | None = None,
    ) -> Link:
        """Plug ``node`` into the switch with a veth named ``ifname`` on the node side.

        Addresses are added with ``nodad`` (IPv6). The bridge port is named
        ``<node>-<ifname>`` when that fits in 15 characters, else ``p<N>``.
        """
        self._check_open()
        n = self.node(node)
        sw = self.node(switch) if switch is not None else self._default_switch()
        _check_ifname(ifname, "interface")
        if any(ln.node == n and ln.ifname == ifname for ln in self.links):
            raise LabError(f"{n.name} already has an interface {ifname}")
        port = f"{n.name}-{ifname}"
        taken = {ln.port for ln in self.links if ln.switch == sw}
        if len(port) > IFNAMSIZ or port in taken or port == BRIDGE:
            port = f"p{next(self._port_counter)}"
        self.ip(
            sw,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            n.ns,
        )
        if mac:
            self.ip(n, "link", "set", ifname, "address", mac)
        self.ip(sw, "link", "set", port, "master", BRIDGE, "up")
        self.ip(n, "link", "set", ifname, "up")
        for addr in addrs:
            self.add_addr(n, ifname, addr)
        link = Link(n, ifname, sw, port)
        self.links.append(link)
        return link

    def link(self, node: NodeRef, ifname: str = "eth0") -> Link:
        n = self.node(node)
        for ln in self.links:
            if ln.node == n and ln.ifname == ifname:
                return ln
        raise KeyError(f"{n.name} has no lab link {ifname}")

    def add_macvlan(
        self,
        node: NodeRef,
        parent: str,
        vrid: int,
        *,
        family: int = 4,
        addrs: Sequence[str] = (),
        name: str | None = None,
    ) -> str:
        """A macvlan with the VRRP virtual MAC of ``vrid`` on ``parent`` (FRR vrrpd's VMAC).

        The parent gets ``arp_ignore=1`` and ``arp_filter=1`` so only the macvlan answers
        ARP for the VIPs (else the parent answers too, with its own MAC). Returns the
        interface name (default ``vrrp<F>-<vrid>``).
        """
        if not 1 <= vrid <= 255 or family not in (4, 6):
            raise ValueError(f"add_macvlan: vrid {vrid} must be 1..255 and family 4 or 6")
        ifname = name or f"vrrp{family}-{vrid}"
        _check_ifname(ifname, "macvlan")
        mac = f"00:00:5e:00:0{1 if family == 4 else 2}:{vrid:02x}"
        self.ip(
            node, "link", "add", ifname, "link", parent, "address", mac,
            "type", "macvlan", "mode", "bridge",
        )  # fmt: skip
        self.sysctl(
            node,
            **{
                f"net.ipv4.conf.{parent}.arp_ignore": 1,
                f"net.ipv4.conf.{parent}.arp_filter": 1,
                f"net.ipv4.conf.{ifname}.arp_ignore": 1,
            },
        )
        self.ip(node, "link", "set", ifname, "up")
        for addr in addrs:
            self.add_addr(node, ifname, addr)
        return ifname

    # ------------------------------------------------------------------ failure injection

    def kill_group(self, handle: Any, sig: int = signal.SIGKILL) -> None:
        """Signal a process group (a ProcessHandle or anything with ``.process``).

        With SIGKILL it waits until every member is gone: a crash of the whole daemon.
        """
        proc: ProcessHandle = getattr(handle, "process", handle)
        if sig == signal.SIGKILL:
            proc.kill()
        else:
            proc.signal_group(sig)

    def link_down(self, node: NodeRef, ifname: str = "eth0") -> None:
        """Administrative down inside the node (the node sees its own link go down)."""
        self.ip(node, "link", "set", ifname, "down")

    def link_up(self, node: NodeRef, ifname: str = "eth0") -> None:
        self.ip(node, "link", "set", ifname, "up")

    def cable_pull(self, node: NodeRef, ifname: str = "eth0") -> None:
        """Down the switch side of the veth: the node sees NO-CARRIER, its link stays up."""
        ln = self.link(node, ifname)
        self.ip(ln.switch, "link", "set", ln.port, "down")

    def cable_plug(self, node: NodeRef, ifname: str = "eth0") -> None:
        ln = self.link(node, ifname)
        self.ip(ln.switch, "link", "set", ln.port, "up")

    def mount_tmpfs(self, path: Path, size: str = "256k") -> Path:
        """A small tmpfs at ``path`` (inside the lab's short directory): a disk that fills.

        Recorded in the run registry before it is mounted, unmounted at close after the
        processes are gone (so nothing keeps it busy), and by ``tests.lab.cleanup`` after a
        killed run.
        """
        self._check_open()
        path = Path(path)
        if self.shortdir not in path.parents:
            raise LabError(f"mount_tmpfs: {path} is not inside the lab directory {self.shortdir}")
        path.mkdir(parents=True, exist_ok=True)
        self.registry.record("mount", str(path))
        self._cmd(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)])

        def unmount() -> None:
            if os.path.ismount(path):
                self._cmd(["umount", "-l", str(path)], check=False)
            if not os.path.ismount(path):
                self.registry.forget("mount", str(path))

        self.add_cleanup(unmount, after_processes=True)
        return path

    def add_addr(self, node: NodeRef, ifname: str, addr: str) -> None:
        iface = ipaddress.ip_interface(addr)
        extra = ["nodad"] if iface.version == 6 else []
        self.ip(node, "addr", "add", str(iface), "dev", ifname, *extra)

    def del_addr(self, node: NodeRef, ifname: str, addr: str) -> None:
        """Remove an address (as another program or an operator would)."""
        iface = ipaddress.ip_interface(addr)
        if "/" not in addr:
            # Find the prefix length it was added with: ip needs it to match.
            for have in self.addresses(node, ifname):
                if ipaddress.ip_interface(have).ip == iface.ip:
                    iface = ipaddress.ip_interface(have)
                    break
        self.ip(node, "addr", "del", str(iface), "dev", ifname)

    # ------------------------------------------------------------------ observations

    def addresses(self, node: NodeRef, ifname: str | None = None) -> list[str]:
        """Addresses as ``ADDR/PLEN`` (from ``ip -j addr``), one interface or all."""
        args = ["addr", "show"] + (["dev", ifname] if ifname else [])
        out = []
        for link in self.ip_json(node, *args):
            for info in link.get("addr_info", []):
                out.append(f"{info['local']}/{info['prefixlen']}")
        return out

    def has_address(self, node: NodeRef, addr: str, ifname: str | None = None) -> bool:
        """Whether the node has ``addr`` (with or without a prefix length)."""
        want = ipaddress.ip_interface(addr)
        for have in self.addresses(node, ifname):
            h = ipaddress.ip_interface(have)
            if h.ip == want.ip and (
                "/" not in addr or h.network.prefixlen == want.network.prefixlen
            ):
                return True
        return False

    def link_info(self, node: NodeRef, ifname: str = "eth0") -> dict[str, Any]:
        """``ip -j link show`` of one interface: operstate, flags, address, ..."""
        info = self.ip_json(node, "link", "show", "dev", ifname)
        if not info:
            raise LabError(f"{self.node(node).name} has no interface {ifname}")
        return dict(info[0])

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,
        interval: float = 0.02,
        what: str = "condition",
    ) -> T:
        return wait_for(predicate, timeout=timeout, interval=interval, what=what)

    def wait_address(
        self, node: NodeRef, addr: str, present: bool = True, timeout: float = 5.0
    ) -> None:
        """Wait until ``addr`` is (or is no longer) on the node; report what it has."""
        wait_for(
            lambda: self.has_address(node, addr) == present,
            timeout=timeout,
            what=f"{addr} {'on' if present else 'gone from'} {self.node(node).name}",
            observe=lambda: self.addresses(node),
        )

    # ------------------------------------------------------------------ agents and peers

    def start_vigild(
        self,
        node: NodeRef,
        config: dict[str, Any] | str | os.PathLike[str],
        extra_args: Sequence[str] = (),
        **kwargs: Any,
    ) -> AgentHandle:
        """vigild in ``node``; see ``tests.lab.agents.start_vigild``."""
        from .agents import start_vigild

        return start_vigild(self, node, config, extra_args, **kwargs)

    def start_keepalived(self, node: NodeRef, conf_text: str, **kwargs: Any) -> PeerHandle:
        from .peers import start_keepalived

        return start_keepalived(self, node, conf_text, **kwargs)

    def start_frr(self, node: NodeRef, conf_text: str, **kwargs: Any) -> PeerHandle:
        from .peers import start_frr

        return start_frr(self, node, conf_text, **kwargs)

    def start_bird(self, node: NodeRef, conf_text: str, **kwargs: Any) -> PeerHandle:
        from .peers import start_bird

        return start_bird(self, node, conf_text, **kwargs)

    def probe(self, node: NodeRef, target: str, **kwargs: Any) -> Probe:
        """Start a ``Probe`` of ``target`` from ``node`` (see ``tests.lab.probe``)."""
        from .probe import Probe

        return Probe(self, node, target, **kwargs).start()

    def add_cleanup(self, fn: Callable[[], None], *, after_processes: bool = False) -> None:
        """Run ``fn`` at close (LIFO): before processes are stopped, or after."""
        (self._late_cleanups if after_processes else self._cleanups).append(fn)

    # ------------------------------------------------------------------ teardown

    def logs(self, tail: int = 60) -> dict[str, str]:
        """Last lines of every process log, for failure reports."""
        return {p.name: p.log_text(tail=tail) for p in self.processes}

    def close(self) -> None:
        """Remove everything: processes (TERM, then KILL), namespaces, the short dir.

        Idempotent. Keeps going after an error and raises the first one at the end, so a
        stuck process never leaves a namespace behind.
        """
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception as exc:
                errors.append(exc)
        try:
            kill_groups(self.processes, timeout=5.0)
        except Exception as exc:
            errors.append(exc)
        for fn in reversed(self._late_cleanups):
            try:
                fn()
            except Exception as exc:
                errors.append(exc)
        for node in reversed(list(self.nodes.values())):
            try:
                delete_netns(node.ns)
                self.registry.forget("netns", node.ns)
                if node.is_switch:
                    self.registry.forget("bridge", f"{node.ns}/{BRIDGE}")
            except Exception as exc:
                errors.append(exc)
        shutil.rmtree(self.shortdir, ignore_errors=True)
        if not self.shortdir.exists():
            self.registry.forget("dir", str(self.shortdir))
        lifecycle.unregister(self)
        if errors:
            raise LabError(f"lab {self.lab_id} teardown: {errors[0]}") from errors[0]

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def netns_pids(ns: str) -> list[int]:
    res = subprocess.run(
        ["ip", "netns", "pids", ns],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def netns_exists(ns: str) -> bool:
    return Path("/run/netns", ns).exists()


def delete_netns(ns: str, timeout: float = 5.0) -> None:
    """Kill whatever still runs in ``ns`` (a backstop for escaped processes), delete it."""
    if not netns_exists(ns):
        return
    for _ in range(3):
        pids = netns_pids(ns)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not netns_pids(ns), timeout=timeout, what=f"processes in {ns}")
    res = subprocess.run(
        ["ip", "netns", "del", ns],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if res.returncode != 0 and netns_exists(ns):
        raise LabError(f"cannot delete namespace {ns}: {res.stderr.strip()}")
