"""keepalived.conf text for interop tests, written the way operators write it.

The interop tests need keepalived 2.2.7 configs that mirror a vigil instance field by
field (VRID, version, interval, authentication, unicast, VIPs), so one small dataclass
renders both a keepalived ``vrrp_instance`` block and the equivalent vigil instance
mapping. Keeping both renderings in one place means a case cannot drift into testing two
differently configured routers.

Rules of keepalived 2.2.7 the renderer follows (see LAB-NOTES):

- ``vrrp_version 2`` accepts whole-second ``advert_int`` only; v3 accepts centiseconds.
- An instance whose VIPs are IPv6 is always VRRPv3; it is written with ``native_ipv6``
  and without ``vrrp_version`` (keepalived would warn about a v2 request).
- ``authentication`` exists for VRRPv2 only (keepalived drops it for v3 with a warning).
- ``state MASTER`` does not make keepalived start as master (only priority 255 does), but
  operators write it on the intended master, so the configs do too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KeepalivedConf", "VrrpSide"]


@dataclass(frozen=True)
class VrrpSide:
    """One router's view of a VRRP instance, renderable for keepalived or for vigil.

    ``unicast_src``/``unicast_peers`` switch unicast on when ``unicast_peers`` is set.
    ``vips`` carry their prefix length (``10.99.0.100/24``).
    """

    name: str
    vrid: int
    priority: int
    version: int
    advert_int: float
    vips: Sequence[str]
    interface: str = "eth0"
    auth_pass: str | None = None
    unicast_src: str | None = None
    unicast_peers: Sequence[str] = ()
    master: bool = False  # keepalived `state MASTER` (the intended master)
    use_vmac: bool = False  # a macvlan ``vrrp.VRID`` with the virtual MAC holds the VIPs

    def __post_init__(self) -> None:
        families = {ipaddress.ip_interface(v).version for v in self.vips}
        if len(families) != 1:
            raise ValueError(f"VrrpSide({self.name}).vips: one address family, got {self.vips}")
        if self.family == 6 and self.version != 3:
            raise ValueError(f"VrrpSide({self.name}).version: IPv6 VIPs need version 3")
        if self.version == 2 and self.advert_int != int(self.advert_int):
            raise ValueError(
                f"VrrpSide({self.name}).advert_int: VRRPv2 needs whole seconds, "
                f"got {self.advert_int}"
            )
        if self.auth_pass is not None and self.version != 2:
            raise ValueError(f"VrrpSide({self.name}).auth_pass: PASS auth is VRRPv2 only")

    @property
    def family(self) -> int:
        return ipaddress.ip_interface(self.vips[0]).version

    # ------------------------------------------------------------------ keepalived

    def keepalived_block(self) -> str:
        """The ``vrrp_instance NAME { ... }`` block."""
        lines = [
            f"vrrp_instance {self.name} {{",
            f"    state {'MASTER' if self.master else 'BACKUP'}",
            f"    interface {self.interface}",
            f"    virtual_router_id {self.vrid}",
            f"    priority {self.priority}",
            f"    advert_int {self.advert_int:g}",
        ]
        if self.family == 6:
            lines.append("    native_ipv6")
        else:
            lines.append(f"    version {self.version}")
        if self.auth_pass is not None:
            lines += [
                "    authentication {",
                "        auth_type PASS",
                f"        auth_pass {self.auth_pass}",
                "    }",
            ]
        if self.unicast_peers:
            if self.unicast_src is not None:
                lines.append(f"    unicast_src_ip {self.unicast_src}")
            lines.append("    unicast_peer {")
            lines += [f"        {peer}" for peer in self.unicast_peers]
            lines.append("    }")
        if self.use_vmac:
            lines.append("    use_vmac")
        lines.append("    virtual_ipaddress {")
        # With use_vmac keepalived puts VIPs without a `dev` on the VMAC interface.
        dev = "" if self.use_vmac else f" dev {self.interface}"
        lines += [f"        {vip}{dev}" for vip in self.vips]
        lines += ["    }", "}"]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ vigil

    def vigil_instance(self) -> dict[str, Any]:
        """The equivalent entry of vigil's ``vrrp_instances`` list."""
        inst: dict[str, Any] = {
            "name": self.name,
            "interface": self.interface,
            "vrid": self.vrid,
            "priority": self.priority,
            "version": self.version,
            "advert_interval": self.advert_int,
            "virtual_ipaddresses": list(self.vips),
        }
        if self.priority == 255:
            inst["address_owner"] = True  # vigil accepts 255 only from the address owner
        if self.use_vmac:
            inst["use_vmac"] = True
        if self.auth_pass is not None:
            inst["authentication"] = {"type": "pass", "password": self.auth_pass}
        if self.unicast_peers:
            uni: dict[str, Any] = {"peers": list(self.unicast_peers)}
            if self.unicast_src is not None:
                uni["source"] = self.unicast_src
            inst["unicast"] = uni
        return inst


@dataclass(frozen=True)
class KeepalivedConf:
    """A whole keepalived.conf: ``global_defs`` plus instances."""

    router_id: str
    instances: Sequence[VrrpSide] = field(default_factory=tuple)
    garp_master_delay: int = 5

    def render(self) -> str:
        head = [
            "! keepalived.conf generated for a vigil interop test",
            "global_defs {",
            f"    router_id {self.router_id}",
            "    enable_script_security",
            f"    vrrp_garp_master_delay {self.garp_master_delay}",
            "}",
            "",
        ]
        return "\n".join(head) + "\n".join(i.keepalived_block() for i in self.instances)


def vigil_config(router_id: str, instances: Sequence[VrrpSide]) -> dict[str, Any]:
    """A whole vigil config mapping for ``lab.start_vigild``."""
    return {
        "global": {"router_id": router_id},
        "vrrp_instances": [i.vigil_instance() for i in instances],
    }
