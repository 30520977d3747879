"""Checks across the configs of the nodes of one HA group (a pair or more).

Each node's config can be valid on its own and the group still broken (VRIDs that differ,
passwords that do not match, a virtual server on one director only). The core checks what
is agent-wide (router ids); each section checks its own part. The Ansible collection runs
these on the controller before anything ships.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import Issue
from .model import Config
from .section import ConfigSection

__all__ = ["check_cluster"]


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


def check_cluster(configs: Mapping[str, Config], sections: Sequence[ConfigSection]) -> list[Issue]:
    """Issues between the configs of nodes (``{node name: Config}``); empty when they agree.

    Each issue's ``file`` is the node it should be fixed on and its ``path`` points into
    that node's config. Secrets are never shown.
    """
    issues = _router_ids(configs)
    for section in sections:
        models = {
            node: config.sections[section.name]
            for node, config in configs.items()
            if section.name in config.sections
        }
        issues.extend(section.check_cluster(models))
    return issues
