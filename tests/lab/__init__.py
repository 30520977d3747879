"""vigil's namespace test lab: nodes in network namespaces joined by a bridge, real agents
and peers in them, failure injection and outage measurement. See docs/testing.md."""

from .lab import Lab, LabError, Link, Node
from .probe import Outage, Probe, ProbeResult
from .waiting import WaitTimeout, wait_for, wait_for_async

__all__ = [
    "Lab",
    "LabError",
    "Link",
    "Node",
    "Outage",
    "Probe",
    "ProbeResult",
    "WaitTimeout",
    "wait_for",
    "wait_for_async",
]
