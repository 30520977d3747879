"""vigil: an on-host HA agent (VRRP, IPVS, BFD) with a local state/control API."""

from vigil.lean import lean_packages as _lean_packages

__version__ = "0.1.0"

_lean_packages()  # load only the parts of pyroute2 and aiohttp in use (see vigil.lean)
