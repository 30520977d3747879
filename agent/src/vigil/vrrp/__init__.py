"""vigil.vrrp: VRRP v2/v3 virtual-IP failover for IPv4 and IPv6.

:data:`SPEC` is how the agent core knows this subsystem (listed in vigil.subsystems).
"""

from vigil.subsystem import SubsystemSpec

SPEC = SubsystemSpec(
    name="vrrp",
    section="vigil.vrrp.config:SECTION",
    factory="vigil.vrrp.runtime:factory",
    cli="vigil.vrrp.cli:GROUP",
    cleanup="vigil.vrrp.journal:cleanup",
    keepalived="vigil.vrrp.keepalived:VrrpImporter",
    warning_kinds=frozenset(
        {
            "fault",
            "vip_restored",
            "vip_error",
            "route_error",
            "vip_cleanup",
            "vrrp_rejected",
            "cleanup_failed",
            "vrrp_tx_failed",
            "vrrp_stalled",
            "vrrp_reannounce",
            "journal_failed",
        }
    ),
)

__all__ = ["SPEC"]
