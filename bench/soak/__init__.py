"""The chaos soak: ``make soak`` (``python -m bench.soak``), not part of ``make test``.

A vigild pair and a three-node group (same VRIDs, separate segments), each node run as
systemd runs the unit (bench.soak.cluster), under random injections every few seconds
from a seeded schedule (bench.soak.schedule): SIGKILL with a systemd-like restart,
SIGSTOP/SIGCONT, link flaps, loss and partitions with nftables, valid and invalid
reloads, handovers, maintenance toggles, a full state dir, API connection floods
(bench.soak.injections, one plug-in per kind). Invariants are checked continuously from
outside the agents (bench.soak.invariants): the kernel's addresses in every namespace,
the API, a client probing every VIP, /proc. The result is JSON and a printed table.

IPVS (real servers dying) and BFD (paths cut) join as injection plug-ins
(``bench.soak.injections.register``) and invariant checks (``Checker.extra_checks``),
with groups that run them (``GroupSpec``).
"""

from bench.soak.injections import INJECTIONS, Injection, register
from bench.soak.model import GroupSpec, InstanceSpec, NodeSpec, default_groups
from bench.soak.schedule import Step, make_schedule

__all__ = [
    "INJECTIONS",
    "GroupSpec",
    "Injection",
    "InstanceSpec",
    "NodeSpec",
    "Step",
    "default_groups",
    "make_schedule",
    "register",
]
