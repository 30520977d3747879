"""Checks across the directors of one HA pair (or more): do they serve the same thing?

After a failover the backup director must serve exactly what the master served, or
clients see other servers, another scheduler, lost persistence; and connection sync only
helps if both directors have the same services and real servers and run the sync daemon
for the same VRRP instance. Each director's config can be valid alone and the pair still
wrong: these checks run on the controller (Ansible) before anything ships. Virtual
servers are matched by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vigil.config.errors import Issue

from .model import IpvsConfig, VirtualServerConfig


class _ClusterChecker:
    def __init__(self, configs: Mapping[str, IpvsConfig]) -> None:
        self.configs = dict(configs)
        self.issues: list[Issue] = []

    def error(self, node: str, path: str, message: str) -> None:
        self.issues.append(Issue(path, message, file=node))

    def _index(self, node: str, name: str) -> int:
        return self.configs[node].names.index(name)

    def run(self) -> list[Issue]:
        if len(self.configs) < 2:
            return []
        names: dict[str, list[str]] = {}
        for node, config in self.configs.items():
            for vs in config.virtual_servers:
                names.setdefault(vs.name, []).append(node)
        for name, nodes in names.items():
            if len(nodes) < len(self.configs):
                for node in nodes:
                    missing = [n for n in self.configs if n not in nodes]
                    self.error(
                        node,
                        f"virtual_servers[{self._index(node, name)}]",
                        f"virtual server {name!r} is not on {', '.join(missing)}; after a "
                        "failover nobody would serve it: add it there or remove it here",
                    )
            else:
                self._virtual_server(name, nodes)
        self._sync_daemon()
        return self.issues

    def _virtual_server(self, name: str, nodes: list[str]) -> None:
        servers = {node: self.configs[node].virtual_server(name) for node in nodes}
        first_node = nodes[0]
        first = servers[first_node]

        def same(key: str, show: Callable[[VirtualServerConfig], Any], why: str) -> None:
            for node in nodes[1:]:
                mine, theirs = show(servers[node]), show(first)
                if mine != theirs:
                    self.error(
                        node,
                        f"virtual_servers[{self._index(node, name)}].{key}",
                        f"{name}: {key} is {_fmt(mine)} here but {_fmt(theirs)} on "
                        f"{first_node}; {why}",
                    )

        same(
            "services",
            lambda vs: sorted(str(ep) for ep in vs.services),
            "both directors must serve the same addresses, ports and marks",
        )
        same("scheduler", lambda vs: vs.scheduler, "clients would be spread differently")
        same("scheduler_flags", lambda vs: list(vs.scheduler_flags), "use the same flags")
        same(
            "persistence",
            lambda vs: None if vs.persistence is None else vs.persistence.to_dict(),
            "persistent clients would lose their server on failover",
        )
        same(
            "real_servers",
            lambda vs: sorted(rs.label for rs in vs.real_servers),
            "both directors must send to the same real servers",
        )
        same(
            "weights",
            lambda vs: {rs.label: rs.weight for rs in vs.real_servers},
            "the load would shift on failover",
        )
        same(
            "forwarding",
            lambda vs: {rs.label: str(rs.forwarding) for rs in vs.real_servers},
            "the real servers are set up for one forwarding method",
        )
        same(
            "sorry_server",
            lambda vs: None if vs.sorry_server is None else vs.sorry_server.label,
            "use the same sorry server",
        )
        same("quorum", lambda vs: (vs.quorum, vs.hysteresis), "use the same quorum")
        same("ha_suspend", lambda vs: vs.ha_suspend, "tie checks to the same VRRP instance")

    def _sync_daemon(self) -> None:
        daemons = {node: config.ipvs_sync_daemon for node, config in self.configs.items()}
        nodes = list(daemons)
        first_node = nodes[0]
        first = daemons[first_node]
        for node in nodes[1:]:
            mine = daemons[node]
            if (mine is None) != (first is None):
                on, off = (node, first_node) if mine is not None else (first_node, node)
                self.error(
                    off,
                    "ipvs_sync_daemon",
                    f"{on} runs the connection sync daemon but {off} does not; connections "
                    "survive a failover only when both do",
                )
                continue
            if mine is None or first is None:
                continue
            if mine.instance != first.instance:
                self.error(
                    node,
                    "ipvs_sync_daemon.instance",
                    f"the sync daemon follows {_fmt(mine.instance)} here but "
                    f"{_fmt(first.instance)} on {first_node}; bind it to a VRRP instance "
                    "both directors run",
                )
            if mine.syncid != first.syncid:
                self.error(
                    node,
                    "ipvs_sync_daemon.syncid",
                    f"syncid is {mine.syncid} here but {first.syncid} on {first_node}; the "
                    "backup ignores sync messages with another id",
                )
            for key in ("port", "group"):
                if getattr(mine, key) != getattr(first, key):
                    self.error(
                        node,
                        f"ipvs_sync_daemon.{key}",
                        f"{key} is {_fmt(getattr(mine, key))} here but "
                        f"{_fmt(getattr(first, key))} on {first_node}; the directors would "
                        "not hear each other",
                    )


def _fmt(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def check_ipvs_cluster(configs: Mapping[str, IpvsConfig]) -> list[Issue]:
    """Issues between the IPVS sections of the nodes of an HA group; empty if they agree."""
    return _ClusterChecker(configs).run()
