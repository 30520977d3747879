"""Checks across the configs of the nodes of one HA group (a pair or more).

Each node's config can be valid on its own and the group still broken (VRIDs that differ,
passwords that do not match, a virtual server on one director only). The core checks what
is agent-wide (router ids); each section checks its own part. The Ansible collection runs
these on the controller before anything ships.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import Issue
from .model import Config
from .section import ConfigSection

__all__ = ["ClusterContext", "check_cluster"]

#: (node, interface, family) -> the interface's addresses on that node (as ip_interface),
#: without the VIPs it may hold; empty when nothing is known about it
Networks = Callable[[str, str, int], Sequence[Any]]
#: node -> every address the node has (ip_address objects), for checks that need to know
#: which node an address belongs to (a BFD peer that is another node of the group)
Addresses = Callable[[str], Iterable[Any]]


@dataclass(frozen=True)
class ClusterContext:
    """What a caller knows beyond the configs, for the checks that need it.

    ``networks`` tells each node's interface addresses (the Ansible collection reads them
    from facts): with it, VRIDs are checked per segment and VIPs against their subnet.
    ``fixes`` words a fix in the caller's terms (``{"priority": "set vigil_node.priority
    ..."}``) where the default would name a config key the caller does not write.
    ``addresses`` tells every address of a node (the collection: host variables and facts),
    so a BFD session to another node of the group is recognised even without ``local``.
    ``distinct_priorities`` makes equal priorities of one instance on two nodes an error:
    legal VRRP (the higher address wins), but a caller that assigns priorities itself (the
    collection does, from host order) wants exactly one highest.
    """

    networks: Networks | None = None
    addresses: Addresses | None = None
    fixes: Mapping[str, str] = field(default_factory=dict)
    distinct_priorities: bool = False

    def fix(self, key: str, default: str) -> str:
        return self.fixes.get(key, default)

    def nets(self, node: str, interface: str, family: int) -> list[Any]:
        if self.networks is None:
            return []
        return list(self.networks(node, interface, family))

    def node_addresses(self, node: str) -> list[Any]:
        if self.addresses is None:
            return []
        return list(self.addresses(node))


def _router_ids(configs: Mapping[str, Config]) -> list[Issue]:
    issues: list[Issue] = []
    seen: dict[str, str] = {}
    for node, config in configs.items():
        rid = config.globals.router_id
        if rid in seen:
            issues.append(
                Issue(
                    "global.router_id",
                    f"router_id {rid!r} is also used by {seen[rid]}; give each node its own",
                    file=node,
                )
            )
        seen.setdefault(rid, node)
    return issues


def check_cluster(
    configs: Mapping[str, Config],
    sections: Sequence[ConfigSection],
    context: ClusterContext | None = None,
) -> list[Issue]:
    """Issues between the configs of nodes (``{node name: Config}``); empty when they agree.

    Each issue's ``file`` is the node it should be fixed on and its ``path`` points into
    that node's config. Secrets are never shown.
    """
    issues = _router_ids(configs)
    context = context or ClusterContext()
    for section in sections:
        models = {
            node: config.sections[section.name]
            for node, config in configs.items()
            if section.name in config.sections
        }
        issues.extend(section.check_cluster(models, context))
    return issues
