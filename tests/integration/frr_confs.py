"""FRR 8.4.4 vrrpd configs and state for the vigil <-> FRR interop tests.

FRR's vrrpd differs from keepalived and vigil in ways a test has to model, so they live in
one place instead of being rediscovered in every test:

- vrrpd does not own addresses. Each virtual router needs a macvlan on the parent
  interface carrying the VRRP virtual MAC (00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID
  for IPv6) with the VIPs already on it; vrrpd finds it by MAC. While backup, vrrpd has
  zebra set the macvlan *protodown* (NO-CARRIER), which is how FRR "releases" a VIP; while
  master the macvlan is protodown off. After a SIGKILL the macvlan keeps its last state.
- ``vrrp N advertisement-interval`` is in milliseconds (multiples of 10, 10..40950), where
  vigil's ``advert_interval`` is in seconds.
- The IPv4 source of FRR's adverts is the parent's primary address; the IPv6 source is the
  link-local address of the IPv6 macvlan (``primaryAddress`` in ``show vrrp json``).
- VRRPv3 over IPv4 is always checksummed with the IPv4 pseudo-header, like vigil's
  default ``v3_checksum_pseudo_header: true``. FRR 8.4.4 has no switch for it: the
  ``checksum-with-ipv4-pseudoheader`` command of later FRR releases is "No such command"
  here (vrrpd logs that and carries on), so no config can turn it off.
- ``show vrrp N json`` gives a list of routers, each with a ``v4`` and a ``v6`` section
  (``status``: Initialize/Backup/Master, ``stats``: adverTx/adverRx, ...).

The same file is read by zebra (which warns about every vrrp line) and by vrrpd.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.lab.peers import PeerHandle

__all__ = ["FrrVrrpRouter", "frr_vrrp_router", "frr_vrrp_section", "vigil_instance"]


@dataclass(frozen=True)
class FrrVrrpRouter:
    """One FRR virtual router of one address family, rendered as vrrpd interface config.

    ``addresses`` are bare IPs (FRR takes no prefix length); the macvlan carries them
    with their prefix length.
    """

    vrid: int
    priority: int
    addresses: Sequence[str]
    interval_ms: int = 100
    version: int = 3
    interface: str = "eth0"
    preempt: bool = True

    def __post_init__(self) -> None:
        where = f"FrrVrrpRouter(vrid={self.vrid})"
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"{where}.vrid: must be 1..255")
        if not 1 <= self.priority <= 254:
            raise ValueError(f"{where}.priority: FRR accepts 1..254, got {self.priority}")
        if not self.addresses:
            raise ValueError(f"{where}.addresses: give at least one VIP")
        families = {ipaddress.ip_address(a).version for a in self.addresses}
        if len(families) != 1:
            raise ValueError(f"{where}.addresses: one address family per router")
        if self.version not in (2, 3) or (self.family == 6 and self.version != 3):
            raise ValueError(f"{where}.version: 2 or 3, and IPv6 needs 3")
        if self.interval_ms % 10 or not 10 <= self.interval_ms <= 40950:
            raise ValueError(
                f"{where}.interval_ms: a multiple of 10 in 10..40950 (FRR's unit is ms)"
            )

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.addresses[0]).version

    @property
    def vmac(self) -> str:
        return f"00:00:5e:00:0{1 if self.family == 4 else 2}:{self.vrid:02x}"

    def render(self) -> str:
        """The ``interface ... vrrp N ...`` stanza vrrpd reads at start."""
        n = self.vrid
        keyword = "ip" if self.family == 4 else "ipv6"
        lines = [
            f"interface {self.interface}",
            f" vrrp {n} version {self.version}",
            f" vrrp {n} priority {self.priority}",
            f" vrrp {n} advertisement-interval {self.interval_ms}",
        ]
        if not self.preempt:
            lines.append(f" no vrrp {n} preempt")
        lines += [f" vrrp {n} {keyword} {addr}" for addr in self.addresses]
        lines.append("!")
        return "\n".join(lines) + "\n"


def frr_vrrp_router(handle: PeerHandle, vrid: int) -> dict[str, Any]:
    """One router of ``show vrrp VRID json`` (both families); KeyError if vrrpd lacks it."""
    from tests.lab.peers import frr_vtysh

    out = frr_vtysh(handle, f"show vrrp {vrid} json")
    for router in json.loads(out or "[]"):
        if router.get("vrid") == vrid:
            return dict(router)
    raise KeyError(f"FRR has no virtual router {vrid}; show vrrp json said: {out!r}")


def frr_vrrp_section(handle: PeerHandle, vrid: int, family: int) -> dict[str, Any]:
    """The ``v4``/``v6`` section of ``show vrrp VRID json``: status, stats, source."""
    return dict(frr_vrrp_router(handle, vrid)[f"v{family}"])


def vigil_instance(
    name: str,
    vrid: int,
    priority: int,
    vip: str,
    *,
    advert_interval: float = 0.1,
    interface: str = "eth0",
    **extra: Any,
) -> dict[str, Any]:
    """A vigil ``vrrp_instances[]`` entry mirroring an FRR router (VRRPv3)."""
    inst: dict[str, Any] = {
        "name": name,
        "interface": interface,
        "vrid": vrid,
        "priority": priority,
        "version": 3,
        "advert_interval": advert_interval,
        "virtual_ipaddresses": [vip],
    }
    inst.update(extra)
    return inst
