"""Checks across the configs of the nodes that share VRRP instances (an HA pair or more).

Each node's config can be valid on its own and the pair still broken: VRIDs that differ,
an advert interval one node thinks is 1 s and the other 0.1 s, passwords that do not match
(both nodes become master), unicast peers that point nowhere. The Ansible collection runs
these checks on the controller before anything ships. Instances are matched by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vigil.config.cluster import ClusterContext
from vigil.config.errors import Issue

from .model import VrrpConfig, VrrpInstanceConfig


def _index(config: VrrpConfig, name: str) -> int:
    return config.instance_names.index(name)


class _ClusterChecker:
    def __init__(self, configs: Mapping[str, VrrpConfig], context: ClusterContext) -> None:
        self.configs = dict(configs)
        self.context = context
        self.issues: list[Issue] = []

    def error(self, node: str, path: str, message: str) -> None:
        self.issues.append(Issue(path, message, file=node))

    def run(self) -> list[Issue]:
        names: dict[str, list[str]] = {}
        for node, config in self.configs.items():
            for inst in config.vrrp_instances:
                names.setdefault(inst.name, []).append(node)
        for name, nodes in names.items():
            if len(nodes) == 1 and len(self.configs) > 1:
                node = nodes[0]
                self.error(
                    node,
                    f"vrrp_instances[{_index(self.configs[node], name)}]",
                    f"instance {name!r} exists only on {node}; add it to the other nodes "
                    "or remove it",
                )
            else:
                self._instance(name, nodes)
        self._sync_groups()
        if self.context.distinct_priorities:
            self._priorities()
        if self.context.networks is not None:
            # Segments and subnets need to know the nodes' interfaces (facts).
            self._vrids_per_segment()
            self._vips_in_subnet()
        return self.issues

    def _instance(self, name: str, nodes: list[str]) -> None:
        insts = {node: self.configs[node].instance(name) for node in nodes}
        first_node = nodes[0]
        first = insts[first_node]

        def same(field: str, show: Callable[[VrrpInstanceConfig], Any], why: str) -> None:
            for node in nodes[1:]:
                mine, theirs = show(insts[node]), show(first)
                if mine != theirs:
                    self.error(
                        node,
                        f"vrrp_instances[{_index(self.configs[node], name)}].{field}",
                        f"{name}: {field} is {_fmt(mine)} here but {_fmt(theirs)} on "
                        f"{first_node}; {why}",
                    )

        same("vrid", lambda i: i.vrid, "all nodes of an instance must use one VRID")
        same("version", lambda i: i.version, "both sides must speak the same VRRP version")
        same(
            "advert_interval",
            lambda i: i.advert_interval,
            "a mismatch makes backups misjudge the master as dead or alive",
        )
        same(
            "virtual_ipaddresses",
            lambda i: sorted(str(v.address) for v in i.vips),
            "the nodes must advertise the same VIPs",
        )
        for node in nodes[1:]:
            if insts[node].authentication != first.authentication:
                self.error(
                    node,
                    f"vrrp_instances[{_index(self.configs[node], name)}].authentication",
                    f"{name}: authentication differs from {first_node}'s; use the same "
                    "password on every node (a mismatch makes every node master)",
                )
        if first.version == 3 and first.family == 4:
            same(
                "v3_checksum_pseudo_header",
                lambda i: i.v3_checksum_pseudo_header,
                "the nodes would drop each other's adverts as bad checksums",
            )
        same(
            "unicast",
            lambda i: i.unicast is not None,
            "either all nodes use unicast or none does",
        )
        owners = [node for node in nodes if insts[node].address_owner]
        for node in owners[1:]:
            self.error(
                node,
                f"vrrp_instances[{_index(self.configs[node], name)}].address_owner",
                f"{name}: {owners[0]} is already the address owner; only one node may be",
            )
        self._unicast(name, insts)

    def _unicast(self, name: str, insts: dict[str, VrrpInstanceConfig]) -> None:
        sources = {
            node: inst.unicast.source
            for node, inst in insts.items()
            if inst.unicast is not None and inst.unicast.source is not None
        }
        for node, inst in insts.items():
            if inst.unicast is None:
                continue
            path = f"vrrp_instances[{_index(self.configs[node], name)}].unicast.peers"
            for other, source in sources.items():
                if other != node and source not in inst.unicast.peers:
                    self.error(
                        node,
                        path,
                        f"{name}: {other}'s unicast source {source} is not among the peers; "
                        f"add it or {other} will never hear this node",
                    )

    def _sync_groups(self) -> None:
        groups: dict[str, dict[str, tuple[str, ...]]] = {}
        for node, config in self.configs.items():
            for group in config.vrrp_sync_groups:
                groups.setdefault(group.name, {})[node] = tuple(sorted(group.members))
        for group_name, by_node in groups.items():
            nodes = list(by_node)
            for node in nodes[1:]:
                if by_node[node] != by_node[nodes[0]]:
                    config = self.configs[node]
                    index = [g.name for g in config.vrrp_sync_groups].index(group_name)
                    self.error(
                        node,
                        f"vrrp_sync_groups[{index}].members",
                        f"sync group {group_name!r} has members {list(by_node[node])} here but "
                        f"{list(by_node[nodes[0]])} on {nodes[0]}; use the same members",
                    )

    # -- what needs more than the configs: every node's priority, the segments ------------

    def _priorities(self) -> None:
        """Per instance, every node has its own priority, so exactly one is the highest."""
        fix = self.context.fix(
            "priority", "give each node of the instance its own priority in its config"
        )
        seen: dict[str, dict[int, str]] = {}
        for node, config in self.configs.items():
            for index, inst in enumerate(config.vrrp_instances):
                by_prio = seen.setdefault(inst.name, {})
                other = by_prio.get(inst.priority)
                if other is not None:
                    self.error(
                        node,
                        f"vrrp_instances[{index}].priority",
                        f"{inst.name} (VRID {inst.vrid}): priority {inst.priority} here "
                        f"and on {other}; every node of a VRID needs its own priority so "
                        f"that exactly one is the highest ({fix})",
                    )
                else:
                    by_prio[inst.priority] = node

    def _segment(self, node: str, interface: str, family: int) -> str:
        """The subnet the interface is on (when known); its name otherwise."""
        nets = self.context.nets(node, interface, family)
        if nets:
            return str(nets[0].network)
        return f"interface {interface}"

    def _vrids_per_segment(self) -> None:
        """A VRID (per family) belongs to one instance on a segment, across all nodes."""
        owners: dict[tuple[str, int, int], tuple[str, str]] = {}
        for node, config in self.configs.items():
            for index, inst in enumerate(config.vrrp_instances):
                segment = self._segment(node, inst.interface, inst.family)
                key = (segment, inst.family, inst.vrid)
                first = owners.setdefault(key, (inst.name, node))
                if first[0] != inst.name:
                    self.error(
                        node,
                        f"vrrp_instances[{index}].vrid",
                        f"{inst.name}: VRID {inst.vrid} (IPv{inst.family}) is already used "
                        f"by {first[0]} on {first[1]} on the same segment ({segment}); "
                        "VRIDs must be unique per segment, pick another",
                    )

    def _vips_in_subnet(self) -> None:
        """Each advertised VIP on the instance's interface lies in that interface's subnet."""
        for node, config in self.configs.items():
            for index, inst in enumerate(config.vrrp_instances):
                nets = self.context.nets(node, inst.interface, inst.family)
                if not nets:
                    continue  # nothing known about it: nothing to compare with
                for vindex, vip in enumerate(inst.vips):
                    if vip.dev not in (None, inst.interface):
                        continue
                    if any(vip.address.ip in net.network for net in nets):
                        continue
                    subnets = ", ".join(str(n.network) for n in nets)
                    self.error(
                        node,
                        f"vrrp_instances[{index}].virtual_ipaddresses[{vindex}]",
                        f"{inst.name}: VIP {vip.address} is outside {inst.interface}'s "
                        f"subnet ({subnets}, from facts); clients on that link could not "
                        "reach it: use an address of the subnet or give the VIP its own dev",
                    )


def _fmt(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def check_vrrp_cluster(
    configs: Mapping[str, VrrpConfig], context: ClusterContext | None = None
) -> list[Issue]:
    """Issues between the VRRP sections of nodes (``{node: VrrpConfig}``); empty if they agree.

    Each issue's ``file`` is the node it should be fixed on and its ``path`` points into
    that node's config. Passwords are never shown.
    """
    return _ClusterChecker(configs, context or ClusterContext()).run()
