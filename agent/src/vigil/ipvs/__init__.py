"""vigil.ipvs: IPVS virtual servers whose real servers vigil health-checks.

:data:`SPEC` is how the agent core knows this subsystem (listed in vigil.subsystems).
Its parts: ``config/`` (the ``virtual_servers`` section), ``planner`` (pure: desired
table vs kernel table -> netlink operations), ``quorum`` (pure: quorum with hysteresis),
``kernel`` (the generic-netlink adapter), ``checkers/`` (the health-check engine),
``runtime`` (the Subsystem), ``journal`` (crash clean-up), ``control`` (drain/enable),
``api``, ``cli`` and ``keepalived`` (its part of the importer).
"""

from vigil.subsystem import SubsystemSpec

SPEC = SubsystemSpec(
    name="ipvs",
    section="vigil.ipvs.config:SECTION",
    factory="vigil.ipvs.runtime:factory",
    cli="vigil.ipvs.cli:GROUP",
    cleanup="vigil.ipvs.journal:cleanup",
    keepalived="vigil.ipvs.keepalived:IpvsImporter",
    prepare="vigil.ipvs.startplan:prepare",
    after=("vrrp",),
    warning_kinds=frozenset(
        {
            "real_server_down",
            "quorum_lost",
            "drift_corrected",
            "ipvs_error",
            "ipvs_unavailable",
            "cleanup_failed",
        }
    ),
)

__all__ = ["SPEC"]
