"""BFD in the lab: vigil's BFD engine in a node, peer configs, and reading the peers' state.

- :class:`BfdAgent` runs ``tests.lab.bfd_driver`` (a ``vigil.bfd.runtime.BfdEngine`` over
  real UDP sockets) inside a node and talks JSON lines to it; every state change arrives
  as an event with its CLOCK_MONOTONIC time, comparable with ``time.monotonic()`` here.
- Config renderers for FRR bfdd (:func:`frr_bfd_conf`), BIRD (:func:`bird_bfd_conf`) and
  keepalived (:func:`keepalived_bfd_conf`), and their state as each reports it:
  :func:`frr_bfd_peer` (``show bfd peers json``), :func:`bird_bfd_sessions` (``birdc show
  bfd sessions``), :func:`keepalived_bfd_state` (its log: keepalived has no BFD status
  command).
- :func:`cut_bfd` / :func:`heal_bfd`: an nftables table inside a node that drops BFD both
  ways (UDP 3784 and 4784), the path failure the tests inject.

Facts these follow (LAB-NOTES): bfdd runs alone (without zebra it knows no interfaces, so
FRR sessions here name no ``interface``); keepalived's IPv6 BFD needs ``hoplimit 255``;
BIRD reports ``Up``/``Down``/``Init``/``AdminDown`` per neighbor.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vigil

from .peers import PeerHandle, bird_cli, frr_vtysh
from .procs import ProcessHandle
from .registry import proc_start_time
from .waiting import wait_for

if TYPE_CHECKING:
    from .lab import Lab, NodeRef

__all__ = [
    "BfdAgent",
    "BfdAgentError",
    "BirdBfd",
    "FrrBfdPeer",
    "KeepalivedBfd",
    "bird_bfd_conf",
    "bird_bfd_sessions",
    "cut_bfd",
    "frr_bfd_conf",
    "frr_bfd_peer",
    "heal_bfd",
    "keepalived_bfd_conf",
    "keepalived_bfd_state",
]

REPO = Path(__file__).resolve().parents[2]
CUT_TABLE = "vigil_bfd_cut"


class BfdAgentError(RuntimeError):
    """The BFD driver failed or did not answer; the message carries its log."""


# ---------------------------------------------------------------------- vigil's engine


class BfdAgent:
    """A BfdEngine in a lab node, driven over stdin/stdout (see ``tests.lab.bfd_driver``).

    It is one of the lab's processes (stopped and checked at close) and its log (stderr,
    the engine's log lines) is ``workdir/logs/<node>.bfd.log``.
    """

    def __init__(self, lab: Lab, node: NodeRef, *, max_seconds: float = 600.0) -> None:
        self.lab = lab
        self.node = lab.node(node)
        self.log_path = lab.unique_path(lab.workdir / "logs", f"{self.node.name}.bfd", ".log")
        # The child imports the same vigil and tests.lab as this process.
        paths = [str(Path(vigil.__file__).resolve().parents[1]), str(REPO)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        argv = [
            "ip", "netns", "exec", self.node.ns, sys.executable, "-m", "tests.lab.bfd_driver",
            "--max-seconds", str(max_seconds),
        ]  # fmt: skip
        stderr = open(self.log_path, "ab")  # noqa: SIM115 (owned by the child from here)
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=REPO,
                env=env,
                start_new_session=True,
            )
        finally:
            stderr.close()
        lab.registry.record(
            "pgid",
            str(popen.pid),
            start=proc_start_time(popen.pid),
            name=f"{self.node.name}/bfd",
            netns=self.node.ns,
        )
        self.process = ProcessHandle(
            name=f"{self.node.name}/bfd",
            argv=argv,
            netns=self.node.ns,
            log_path=self.log_path,
            popen=popen,
            start_time=proc_start_time(popen.pid),
            registry=lab.registry,
        )
        lab.processes.append(self.process)
        lab.add_cleanup(self.close)
        self.events: list[dict[str, Any]] = []
        self._event_lock = threading.Lock()
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ids = iter(range(1, 10_000_000))
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name="bfd-driver")
        self._reader.start()
        if not self._ready.wait(timeout=20):
            raise BfdAgentError(f"BFD driver in {self.node.name} did not start: {self.log()}")

    def _read(self) -> None:
        assert self.process.popen.stdout is not None
        for line in self.process.popen.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "reply" in message:
                self._replies.put(message)
            elif message.get("event") == "ready":
                self._ready.set()
            else:
                with self._event_lock:
                    self.events.append(message)

    def log(self, tail: int | None = 60) -> str:
        return self.process.log_text(tail=tail)

    def __call__(self, op: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        """Send a command and return the reply; raise BfdAgentError if it failed."""
        stdin = self.process.popen.stdin
        if stdin is None or self.process.popen.poll() is not None:
            raise BfdAgentError(f"BFD driver in {self.node.name} is gone: {self.log()}")
        ident = next(self._ids)
        stdin.write((json.dumps({"op": op, "id": ident, **args}) + "\n").encode())
        stdin.flush()
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise BfdAgentError(f"no reply to {op} within {timeout}s: {self.log()}") from None
        if reply.get("reply") != ident:
            raise BfdAgentError(f"reply out of order: sent {ident}, got {reply}")
        if not reply["ok"]:
            raise BfdAgentError(f"{op} {args} failed: {reply['error']}")
        return reply

    # -- sessions -------------------------------------------------------------------------

    def add(self, **spec: Any) -> str:
        return str(self("add", spec=spec)["key"])

    def update(self, **spec: Any) -> None:
        self("update", spec=spec)

    def remove(self, admin_down: bool = True, **spec: Any) -> None:
        self("remove", spec=spec, admin_down=admin_down)

    def admin_down(self, reason: str = "test", **spec: Any) -> None:
        self("admin_down", spec=spec, reason=reason)

    def admin_up(self, **spec: Any) -> None:
        self("admin_up", spec=spec)

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self("snapshot")["sessions"])

    def stats(self) -> dict[str, Any]:
        return dict(self("stats")["stats"])

    def session(self, peer: str, **match: Any) -> dict[str, Any]:
        """The snapshot of the one session to ``peer`` (matching ``match`` fields too)."""
        found = [
            s
            for s in self.snapshot()
            if s["peer"] == peer and all(s.get(k) == v for k, v in match.items())
        ]
        if len(found) != 1:
            raise BfdAgentError(f"{len(found)} sessions to {peer} {match}: {self.snapshot()}")
        return found[0]

    def state(self, peer: str, **match: Any) -> str:
        return str(self.session(peer, **match)["state"])

    def wait_state(self, peer: str, state: str, timeout: float = 10.0, **match: Any) -> None:
        wait_for(
            lambda: self.state(peer, **match) == state,
            timeout=timeout,
            interval=0.02,
            what=f"vigil's session to {peer} to be {state}",
            observe=lambda: self.session(peer, **match),
        )

    def transitions(self, since: float = 0.0) -> list[dict[str, Any]]:
        with self._event_lock:
            return [e for e in self.events if e["time"] >= since]

    def close(self) -> None:
        popen = self.process.popen
        if popen.poll() is None and popen.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                popen.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
        if popen.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                popen.stdout.close()


# ---------------------------------------------------------------------- FRR


@dataclass(frozen=True)
class FrrBfdPeer:
    """One ``peer`` block of FRR bfdd (intervals in milliseconds, as FRR takes them)."""

    peer: str
    local: str | None = None
    multihop: bool = False
    rx_ms: int = 50
    tx_ms: int = 50
    multiplier: int = 3
    passive: bool = False
    minimum_ttl: int | None = None
    shutdown: bool = False

    def render(self) -> str:
        head = f" peer {self.peer}"
        if self.multihop:
            head += " multihop"
        if self.local:
            head += f" local-address {self.local}"
        lines = [
            head,
            f"  receive-interval {self.rx_ms}",
            f"  transmit-interval {self.tx_ms}",
            f"  detect-multiplier {self.multiplier}",
        ]
        if self.passive:
            lines.append("  passive-mode")
        if self.minimum_ttl is not None:
            lines.append(f"  minimum-ttl {self.minimum_ttl}")
        lines.append("  shutdown" if self.shutdown else "  no shutdown")
        lines.append(" !")
        return "\n".join(lines)


def frr_bfd_conf(peers: Sequence[FrrBfdPeer]) -> str:
    body = "\n".join(p.render() for p in peers)
    return f"frr defaults traditional\nlog stdout informational\n!\nbfd\n{body}\n!\n"


def frr_bfd_peer(handle: PeerHandle, peer: str, *, multihop: bool = False) -> dict[str, Any]:
    """FRR's JSON for one peer (``status`` up/down/init/shutdown, timers, ids...)."""
    peers = json.loads(frr_vtysh(handle, "show bfd peers json") or "[]")
    for entry in peers:
        if entry.get("peer") == peer and bool(entry.get("multihop")) == multihop:
            return dict(entry)
    raise LookupError(f"FRR has no BFD peer {peer}: {peers}")


# ---------------------------------------------------------------------- BIRD


@dataclass(frozen=True)
class BirdBfd:
    """A BIRD ``protocol bfd`` with one options block for direct and one for multihop.

    ``neighbors``: (address, local, interface or None, multihop). ``auth``: a BIRD
    authentication keyword (``simple``, ``keyed md5``, ``meticulous keyed sha1``...) and
    ``passwords`` its (id, secret) pairs.
    """

    router_id: str
    neighbors: Sequence[tuple[str, str | None, str | None, bool]]
    interval_ms: int = 50
    multiplier: int = 3
    passive: bool = False
    auth: str | None = None
    passwords: Sequence[tuple[int, str]] = field(default_factory=tuple)

    def options(self) -> str:
        lines = [
            f"    interval {self.interval_ms} ms;",
            f"    multiplier {self.multiplier};",
            f"    passive {'on' if self.passive else 'off'};",
        ]
        if self.auth:
            lines.append(f"    authentication {self.auth};")
            for kid, secret in self.passwords:
                lines.append(f'    password "{secret}" {{ id {kid}; }};')
        return "\n".join(lines)

    def render(self) -> str:
        neighbors = []
        for address, local, iface, multihop in self.neighbors:
            line = f"  neighbor {address}"
            if iface:
                line += f' dev "{iface}"'
            if local:
                line += f" local {local}"
            if multihop:
                line += " multihop yes"
            neighbors.append(line + ";")
        return (
            f"router id {self.router_id};\n"
            "log stderr all;\n"
            "protocol device {\n  scan time 10;\n}\n"
            "protocol bfd {\n"
            f'  interface "*" {{\n{self.options()}\n  }};\n'
            f"  multihop {{\n{self.options()}\n  }};\n" + "\n".join(neighbors) + "\n}\n"
        )


def bird_bfd_conf(bfd: BirdBfd) -> str:
    return bfd.render()


_BIRD_ROW = re.compile(r"^(?P<addr>[0-9a-fA-F:.]+)\s+(?P<iface>\S+)\s+(?P<state>\S+)\s")


def bird_bfd_sessions(handle: PeerHandle) -> dict[str, str]:
    """``{address: state}`` from ``birdc show bfd sessions`` (Up, Down, Init, AdminDown)."""
    out: dict[str, str] = {}
    for line in bird_cli(handle, "show bfd sessions").splitlines():
        match = _BIRD_ROW.match(line.strip())
        if match:
            out[match["addr"]] = match["state"]
    return out


# ---------------------------------------------------------------------- keepalived


@dataclass(frozen=True)
class KeepalivedBfd:
    """One keepalived ``bfd_instance`` (intervals in milliseconds)."""

    name: str
    neighbor: str
    source: str
    rx_ms: int = 50
    tx_ms: int = 50
    multiplier: int = 3
    passive: bool = False

    def render(self) -> str:
        hops = "hoplimit" if ":" in self.neighbor else "ttl"
        lines = [
            f"bfd_instance {self.name} {{",
            f"    neighbor_ip {self.neighbor}",
            f"    source_ip {self.source}",
            f"    min_rx {self.rx_ms}",
            f"    min_tx {self.tx_ms}",
            f"    multiplier {self.multiplier}",
            f"    {hops} 255",
        ]
        if self.passive:
            lines.append("    passive")
        return "\n".join([*lines, "}"])


def keepalived_bfd_conf(instances: Sequence[KeepalivedBfd]) -> str:
    body = "\n".join(i.render() for i in instances)
    return f"global_defs {{\n    router_id ka_bfd\n}}\n{body}\n"


_KA_STATE = re.compile(r"\((?P<name>[^)]+)\) Entering (?P<state>\w+) state")


def keepalived_bfd_state(handle: PeerHandle, name: str) -> str:
    """The last state keepalived logged for ``bfd_instance name`` (Down until it logs one).

    keepalived has no status command for BFD; it logs ``(NAME) Entering Up state`` and
    ``Entering Down state (<diagnostic>)``, and nothing at start, where sessions are Down.
    """
    state = "Down"
    for match in _KA_STATE.finditer(handle.log(tail=None)):
        if match["name"] == name:
            state = match["state"]
    return state


# ---------------------------------------------------------------------- failures


def cut_bfd(lab: Lab, node: NodeRef) -> None:
    """Drop every BFD packet in and out of ``node`` (nftables inside the namespace)."""
    rules = (
        f"table inet {CUT_TABLE} {{\n"
        "  chain input { type filter hook input priority -300; policy accept;\n"
        "    udp dport { 3784, 4784 } drop\n  }\n"
        "  chain output { type filter hook output priority -300; policy accept;\n"
        "    udp dport { 3784, 4784 } drop\n  }\n"
        "}\n"
    )
    lab.run(node, ["nft", "-f", "-"], input=rules)


def heal_bfd(lab: Lab, node: NodeRef) -> None:
    lab.run(node, ["nft", "delete", "table", "inet", CUT_TABLE])
