"""Values an instance inherits or derives, computed in one place.

Both the semantic checks and the model builder need an instance's effective version,
family and priority; computing them here keeps the two from disagreeing.
"""

from __future__ import annotations

from typing import Any


def vip_family(inst: dict[str, Any]) -> int:
    """The family of the first advertised VIP (4 if there is none)."""
    vips = inst.get("virtual_ipaddresses") or []
    return int(vips[0]["address"].version) if vips else 4


def version(inst: dict[str, Any], glob: dict[str, Any]) -> int:
    """Explicit version, else 3 for IPv6 instances, else ``global.vrrp_version``."""
    if inst.get("version") is not None:
        return int(inst["version"])
    if vip_family(inst) == 6:
        return 3
    return int(glob.get("vrrp_version", 2))


def priority(inst: dict[str, Any]) -> int:
    """Explicit priority, else 255 for an address owner, else 100."""
    if inst.get("priority") is not None:
        return int(inst["priority"])
    return 255 if inst.get("address_owner") else 100


def vmac_name(inst: dict[str, Any]) -> str | None:
    """The macvlan name for ``use_vmac``: given, or ``vrrp.VRID``; None when off."""
    value = inst.get("use_vmac", False)
    if value is True:
        return f"vrrp.{inst['vrid']}"
    if isinstance(value, str):
        return value
    return None
