"""The chaos soak: ``make soak`` (``python -m bench.soak``), not part of ``make test``.

A vigild pair and a three-node group (same VRIDs, separate segments), each node run as
systemd runs the unit (bench.soak.cluster), under random injections every few seconds
from a seeded schedule (bench.soak.schedule): SIGKILL with a systemd-like restart,
SIGSTOP/SIGCONT, link flaps, loss and partitions with nftables, valid and invalid
reloads, handovers, maintenance toggles, a full state dir, API connection floods, BFD
paths cut, real servers dying (bench.soak.injections, one plug-in per kind). Invariants
are checked continuously from outside the agents (bench.soak.invariants): the kernel's
addresses in every namespace, the API, a client probing every VIP, /proc. The result is
JSON and a printed table.

BFD and IPVS take part (``GroupSpec.bfd`` / ``GroupSpec.ipvs``): the pair runs a BFD
session between its nodes named in ``fast_takeover_bfd``, the trio tracks a session to an
upstream router (FRR bfdd) with ``track.bfd`` and runs an IPVS virtual server whose real
servers live in namespaces. Injections ``bfd_cut`` and ``real_server``; invariants
``bfd_stuck`` / ``ipvs_stuck`` / ``bfd_events`` / ``ipvs_events`` (bench.soak.subsystems).
This host's kernel has no IPVS: the directors run with the kernel marked unavailable (the
checkers, quorum, events and API run; nothing is programmed into a kernel table), the
closest real thing here; the soak's output says so. New kinds plug in with
``bench.soak.injections.register`` and ``Checker.extra_checks``.
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
