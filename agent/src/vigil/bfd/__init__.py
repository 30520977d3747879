"""vigil.bfd: BFD sessions (RFC 5880/5881/5883) for fast failure detection.

:data:`SPEC` is how the agent core knows this subsystem (listed in vigil.subsystems). It
starts before VRRP, whose instances track its sessions (``track: {bfd: [...]}``) and may
take over fast when a session to their master goes Down.
"""

from vigil.subsystem import SubsystemSpec

SPEC = SubsystemSpec(
    name="bfd",
    section="vigil.bfd.config:SECTION",
    factory="vigil.bfd.subsystem:factory",
    cli="vigil.bfd.cli:GROUP",
    keepalived="vigil.bfd.keepalived:BfdImporter",
)

__all__ = ["SPEC"]
