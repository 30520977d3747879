"""vigil.track: named things that can fail, and the registry that shares them.

Interfaces, check scripts, files and processes are run by the core's
:class:`~vigil.track.service.TrackerService` while something tracks them; other parts
publish their own (BFD sessions) in the :class:`~vigil.track.registry.TrackerRegistry`.
What a tracker does to a VRRP instance is VRRP's business (``vigil.vrrp.tracking``).
"""

from vigil.track.base import Effect, RiseFall, Tracker, TrackerState, file_effect, weight_effect
from vigil.track.registry import TrackerRegistry

__all__ = [
    "Effect",
    "RiseFall",
    "Tracker",
    "TrackerRegistry",
    "TrackerState",
    "file_effect",
    "weight_effect",
]
