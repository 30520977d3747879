"""Fuzz at the socket: malformed packets at running agents, from seeded mutation engines.

``python -m bench.fuzz_vrrp`` (see its docstring) runs a real vigild pair in namespaces and
a fuzzer namespace on the same bridge. The packets come from *packet families*, plug-ins
that build valid frames from templates and mutate them:

- :class:`PacketFamily` (a name, ``kinds``, ``generator(plan)``) and
  :class:`FrameGenerator` (``frame(rng) -> Mutant``) are the plug-in contract;
- :data:`FAMILIES` is the registration point: ``"vrrp"`` (:mod:`bench.fuzz.vrrp`) and
  ``"bfd"`` (:mod:`bench.fuzz.bfd`: control packets over UDP 3784/4784 from templates of
  the agents' live BFD sessions, run by ``python -m bench.fuzz_bfd``);
- :mod:`bench.fuzz.engine` is the family-neutral part: the plan, deterministic batches
  (packet ``k`` of seed ``s`` is the same on every run), Ethernet/IP framing and
  checksums written independently of the agent's codec;
- :mod:`bench.fuzz.sender` runs in the fuzzer namespace and sends the frames on an
  AF_PACKET socket, paced, bounded in count and time.
"""

from __future__ import annotations

from bench.fuzz.engine import (
    FAMILIES,
    FrameGenerator,
    FuzzPlan,
    InstanceInfo,
    Mutant,
    PacketFamily,
    TargetInfo,
    family,
    generate_batch,
    register_family,
)

__all__ = [
    "FAMILIES",
    "FrameGenerator",
    "FuzzPlan",
    "InstanceInfo",
    "Mutant",
    "PacketFamily",
    "TargetInfo",
    "family",
    "generate_batch",
    "register_family",
]
