"""vigil: an on-host HA agent (VRRP, IPVS, BFD) with a local state/control API."""

__version__ = "0.1.0"
