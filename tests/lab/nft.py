"""Packet loss and partitions inside lab namespaces, with nftables.

The kernel here has no netem, so loss is ``numgen random`` in an nftables rule and a
partition is a drop rule on the peers' MAC addresses. Every rule lives in one table per
purpose (``inet vigil_lab_<purpose>``) inside a node's namespace, so healing is deleting
that table, and nothing outlives the namespace (the lab deletes it at close).

    loss(lab, "n1", 30)                      # 30 % of VRRP in and out of n1 dropped
    partition(lab, "n1", ["02:..:01"])       # n1 hears nothing from those MACs (VRRP)
    heal(lab, "n1", "loss"); heal(lab, "n1", "partition")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lab import Lab, NodeRef

__all__ = ["VRRP", "heal", "heal_all", "isolate", "loss", "partition", "tables"]

#: IP protocol number of VRRP (IPv4 protocol / IPv6 next header)
VRRP = 112
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,20}$")


def _table(purpose: str) -> str:
    if not _PURPOSE.match(purpose):
        raise ValueError(f"nft purpose {purpose!r}: lowercase letters, digits and '_'")
    return f"vigil_lab_{purpose}"


def _apply(lab: Lab, node: NodeRef, purpose: str, body: str) -> None:
    table = _table(purpose)
    # "add table" + "delete table" first makes the script idempotent: the rules replace
    # whatever this purpose had before, in one transaction.
    script = f"add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n{body}}}\n"
    lab.run(node, ["nft", "-f", "-"], input=script, timeout=10)


def _match(protocols: Sequence[int] | None) -> str:
    if not protocols:
        return ""
    return f"meta l4proto {{ {', '.join(str(p) for p in protocols)} }} "


def loss(
    lab: Lab,
    node: NodeRef,
    percent: int,
    *,
    protocols: Sequence[int] | None = (VRRP,),
    purpose: str = "loss",
) -> None:
    """Drop ``percent`` % of the node's packets (in and out) at random; only VRRP unless
    ``protocols`` says otherwise (None: every IPv4/IPv6 packet)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"loss: percent must be 0..100, got {percent}")
    rule = f"{_match(protocols)}numgen random mod 100 < {percent} counter drop\n"
    body = (
        "  chain input { type filter hook input priority -300; policy accept;\n"
        f"    {rule}  }}\n"
        "  chain output { type filter hook output priority -300; policy accept;\n"
        f"    {rule}  }}\n"
    )
    _apply(lab, node, purpose, body)


def partition(
    lab: Lab,
    node: NodeRef,
    peer_macs: Sequence[str],
    *,
    protocols: Sequence[int] | None = (VRRP,),
    purpose: str = "partition",
) -> None:
    """The node stops hearing the peers with these MACs (only VRRP unless ``protocols``
    says otherwise). Call it on both sides for a symmetric partition."""
    macs = [m.lower() for m in peer_macs]
    for mac in macs:
        if not _MAC.match(mac):
            raise ValueError(f"partition: {mac!r} is not a MAC address")
    if not macs:
        raise ValueError("partition: no peer MAC given")
    rule = f"ether saddr {{ {', '.join(macs)} }} {_match(protocols)}counter drop\n"
    body = (
        f"  chain input {{ type filter hook input priority -300; policy accept;\n    {rule}  }}\n"
    )
    _apply(lab, node, purpose, body)


def isolate(lab: Lab, node: NodeRef, *, purpose: str = "isolate") -> None:
    """Nothing in or out of the node over IP (loopback excepted): a node cut off."""
    body = (
        "  chain input { type filter hook input priority -300; policy accept;\n"
        '    iifname != "lo" counter drop\n  }\n'
        "  chain output { type filter hook output priority -300; policy accept;\n"
        '    oifname != "lo" counter drop\n  }\n'
    )
    _apply(lab, node, purpose, body)


def heal(lab: Lab, node: NodeRef, purpose: str) -> None:
    """Remove the rules of one purpose (nothing to do if there are none)."""
    table = _table(purpose)
    lab.run(node, ["nft", "-f", "-"], input=f"add table inet {table}\ndelete table inet {table}\n")


def tables(lab: Lab, node: NodeRef) -> list[str]:
    """The lab's tables in the node (``vigil_lab_*``), e.g. to check that all are healed."""
    out = lab.run(node, ["nft", "list", "tables"], timeout=10).stdout
    return [
        line.split()[-1]
        for line in out.splitlines()
        if line.strip().startswith("table inet vigil_lab_")
    ]


def heal_all(lab: Lab, node: NodeRef) -> None:
    for table in tables(lab, node):
        heal(lab, node, table.removeprefix("vigil_lab_"))
