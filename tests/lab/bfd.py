"""BFD in the lab: vigild running BFD in a node, peer configs, and reading the peers' state.

- :class:`VigilBfd` starts vigild in a node with a ``bfd`` section and reads it through
  its API (sessions, ``bfd_transition`` events with their CLOCK_MONOTONIC time, comparable
  with ``time.monotonic()`` here); config changes go through a real reload.
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

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .peers import PeerHandle, bird_cli, frr_vtysh
from .waiting import wait_for

if TYPE_CHECKING:
    from .agents import AgentHandle
    from .lab import Lab, NodeRef

__all__ = [
    "BfdAgentError",
    "BirdBfd",
    "FrrBfdPeer",
    "KeepalivedBfd",
    "VigilBfd",
    "bird_bfd_conf",
    "bird_bfd_sessions",
    "cut_bfd",
    "frr_bfd_conf",
    "frr_bfd_peer",
    "heal_bfd",
    "keepalived_bfd_conf",
    "keepalived_bfd_state",
]

CUT_TABLE = "vigil_bfd_cut"


class BfdAgentError(RuntimeError):
    """vigild's BFD did not answer as expected; the message carries its log."""


# ---------------------------------------------------------------------- vigil


class VigilBfd:
    """vigild in a lab node running a ``bfd`` section, seen through its real API.

    Sessions are dicts in vigil.yml's format (``{name, peer, local, ...}``); ``update``
    rewrites the config and reloads (the path an operator takes). ``transitions(since)``
    are the ``bfd_transition`` events whose ``monotonic`` time (the agent's
    CLOCK_MONOTONIC, the test's ``time.monotonic()``) is at or after ``since``.
    """

    def __init__(
        self,
        lab: Lab,
        node: NodeRef,
        sessions: Sequence[dict[str, Any]],
        *,
        extra: dict[str, Any] | None = None,
        name: str = "vigild",
    ) -> None:
        self.lab = lab
        self.node = lab.node(node)
        self.extra = dict(extra or {})
        self.config = self._config(sessions)
        self.agent: AgentHandle = lab.start_vigild(self.node, self.config, name=name)

    def _config(self, sessions: Sequence[dict[str, Any]]) -> dict[str, Any]:
        glob: dict[str, Any] = {"router_id": self.node.name}
        if not sessions:  # a node left with nothing to run says so (issue 15, defect 4)
            glob["allow_empty_config"] = True
        return {
            "global": glob,
            "bfd": {"sessions": [dict(s) for s in sessions]},
            **self.extra,
        }

    def log(self, tail: int | None = 60) -> str:
        return self.agent.log(tail=tail)

    # -- config -------------------------------------------------------------------------

    def update(self, sessions: Sequence[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """Rewrite vigil.yml with these sessions and reload; returns the reload's diff."""
        self.extra.update(extra)
        self.config = self._config(sessions)
        self.agent.write_config(self.config)
        if sessions:
            status, body = self.agent.reload()
        else:  # stopping everything must be confirmed
            status, body = self.agent.client.post("/v1/reload", {"confirm_stop_all": True})
        if status != 200:
            raise BfdAgentError(f"reload failed ({status}): {body}\n{self.log()}")
        return dict(body.get("diff") or {})

    # -- state --------------------------------------------------------------------------

    def session(self, name: str) -> dict[str, Any]:
        status, body = self.agent.client.get(f"/v1/bfd/sessions/{name}")
        if status != 200:
            raise BfdAgentError(f"GET session {name}: {status} {body}")
        return dict(body)

    def sessions(self) -> list[dict[str, Any]]:
        status, body = self.agent.client.get("/v1/bfd/sessions")
        if status != 200:
            raise BfdAgentError(f"GET sessions: {status} {body}")
        return list(body["sessions"])

    def state(self, name: str) -> str:
        return str(self.session(name)["state"])

    def wait_state(self, name: str, state: str, timeout: float = 10.0) -> None:
        wait_for(
            lambda: self.state(name) == state,
            timeout=timeout,
            interval=0.02,
            what=f"vigil's session {name} to be {state}",
            observe=lambda: self.session(name),
        )

    def unmatched(self) -> dict[str, int]:
        status, body = self.agent.client.get("/v1/status")
        if status != 200:
            raise BfdAgentError(f"GET status: {status} {body}")
        return dict(body["bfd"]["unmatched"])

    def transitions(self, since: float = 0.0, name: str | None = None) -> list[dict[str, Any]]:
        status, events = self.agent.client.get("/v1/events")
        if status != 200:
            raise BfdAgentError(f"GET events: {status} {events}")
        out = []
        for event in events:
            if event.get("kind") != "bfd_transition":
                continue
            data = event["data"]
            if data["monotonic"] < since or (name is not None and event["instance"] != name):
                continue
            out.append({**data, "session": event["instance"], "message": event["message"]})
        return out

    def down_event(self, since: float, timeout: float, name: str | None = None) -> dict[str, Any]:
        """The first transition to Down at or after ``since`` (waits for it)."""

        def found() -> dict[str, Any] | None:
            downs = [e for e in self.transitions(since, name) if e["new"] == "Down"]
            return downs[0] if downs else None

        return wait_for(found, timeout=timeout, interval=0.01, what="vigil's session to go Down")

    # -- control ------------------------------------------------------------------------

    def shutdown(self, name: str, **body: Any) -> dict[str, Any]:
        status, answer = self.agent.client.post(f"/v1/bfd/sessions/{name}/shutdown", body)
        if status != 200:
            raise BfdAgentError(f"shutdown {name}: {status} {answer}")
        return dict(answer)

    def enable(self, name: str, **body: Any) -> dict[str, Any]:
        status, answer = self.agent.client.post(f"/v1/bfd/sessions/{name}/enable", body)
        if status != 200:
            raise BfdAgentError(f"enable {name}: {status} {answer}")
        return dict(answer)


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
