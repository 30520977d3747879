"""vigil.track: trackers that move a VRRP instance's priority or hold it in FAULT.

Interfaces, check scripts, files and processes today; BFD sessions implement the same
:class:`Tracker` interface later. :class:`TrackerManager` (owned by the VRRP subsystem)
maps tracker states onto instances.
"""

from vigil.track.base import Effect, RiseFall, Tracker, TrackerState, file_effect, weight_effect
from vigil.track.manager import TrackerManager

__all__ = [
    "Effect",
    "RiseFall",
    "Tracker",
    "TrackerManager",
    "TrackerState",
    "file_effect",
    "weight_effect",
]
