"""VRRP virtual MAC interfaces (keepalived ``use_vmac``): a macvlan per instance.

With ``use_vmac`` the VIPs live on a macvlan whose MAC is the RFC 5798 virtual router
MAC (00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for IPv6), so switches and
neighbours never need a gratuitous ARP to learn a new MAC on failover. The macvlan is in
``private`` mode: it receives only frames addressed to its own MAC, and frames between
sibling macvlans are not bridged.

A macvlan shares the parent's IPv4 stack, so without care the *backup* node, whose parent
sees the same broadcast, would answer ARP for the VIP or drop the master's adverts as
martians. keepalived sets these sysctls for the same reasons, and so do we:

- on the macvlan: ``arp_ignore=1`` (answer ARP only for addresses on this interface),
  ``accept_local=1`` (accept packets whose source is one of our own addresses: another
  instance's adverts), ``rp_filter=0`` (receive on an interface that may have no
  address), ``promote_secondaries=1`` (removing one VIP must not drop the others);
- on the parent: ``arp_ignore=1`` and ``arp_filter=1``, so the parent never answers for
  a VIP that lives on the macvlan. The parent's old values are restored when its last
  VMAC is removed.

An IPv4 VMAC gets IPv6 disabled unless asked otherwise (no stray link-local address from
the virtual MAC). An IPv6 VMAC gets ``addr_gen_mode=1`` (none: the kernel must not derive a
link-local address from the shared virtual MAC, RFC 5798 section 7.4) and the parent's
link-local address instead, which is the source of its adverts.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from ipaddress import IPv6Interface
from typing import Literal

from vigil.net import sysctl
from vigil.net.netlink import IFNAMSIZ, LinkState, Netlink, NetlinkFailure

__all__ = [
    "PARENT_SYSCTLS",
    "VMAC_SYSCTLS",
    "VmacManager",
    "VmacSpec",
    "default_vmac_name",
    "eui64_link_local",
    "vmac_address",
]

log = logging.getLogger(__name__)

#: IPv4 sysctls on the macvlan (name, value).
VMAC_SYSCTLS: tuple[tuple[str, int], ...] = (
    ("arp_ignore", 1),
    ("accept_local", 1),
    ("rp_filter", 0),
    ("promote_secondaries", 1),
)
#: IPv4 sysctls on the parent while it carries at least one VMAC.
# arp_announce=2 on the parent as well: with the default (0) a master answering a client
# through the parent ARPs for it from the VIP with the parent's MAC, and the client's entry
# for the VIP flips from the virtual MAC to the parent's (keepalived leaves this to the
# operator; vigil sets it, and restores it with the others when the last VMAC goes).
PARENT_SYSCTLS: tuple[tuple[str, int], ...] = (
    ("arp_ignore", 1),
    ("arp_filter", 1),
    ("arp_announce", 2),
)

_ADDR_GEN_MODE_NONE = 1


def vmac_address(vrid: int, family: Literal[4, 6]) -> str:
    """The RFC 5798 virtual router MAC for a VRID, lower-case and colon-separated."""
    _check_vrid(vrid)
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family!r}")
    return f"00:00:5e:00:{1 if family == 4 else 2:02x}:{vrid:02x}"


def default_vmac_name(vrid: int) -> str:
    """keepalived's default VMAC interface name: ``vrrp.VRID``."""
    _check_vrid(vrid)
    return f"vrrp.{vrid}"


def eui64_link_local(mac: str) -> IPv6Interface:
    """fe80::/64 address derived from a MAC (modified EUI-64), for a parent without one."""
    octets = [int(part, 16) for part in mac.split(":")]
    if len(octets) != 6:
        raise ValueError(f"not a 48-bit MAC address: {mac!r}")
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    groups = [f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2)]
    return IPv6Interface(f"fe80::{':'.join(groups)}/64")


def _check_vrid(vrid: int) -> None:
    if not 1 <= vrid <= 255:
        raise ValueError(f"vrid {vrid} out of range: use 1..255")


@dataclass(frozen=True)
class VmacSpec:
    """What one instance's VMAC should look like.

    ``link_local`` (IPv6 only) overrides the source address put on the macvlan;
    ``keep_ipv6`` leaves IPv6 enabled on an IPv4 VMAC (for IPv6 excluded VIPs on it).
    """

    name: str
    parent: str
    vrid: int
    family: Literal[4, 6] = 4
    link_local: IPv6Interface | None = None
    keep_ipv6: bool = False
    mac: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) >= IFNAMSIZ or "/" in self.name or " " in self.name:
            raise ValueError(
                f"use_vmac name {self.name!r}: interface names are 1..15 characters "
                "without '/' or spaces; pick a shorter name"
            )
        if self.name == self.parent:
            raise ValueError(f"use_vmac name {self.name!r} is the parent interface itself")
        object.__setattr__(self, "mac", vmac_address(self.vrid, self.family))


class VmacManager:
    """Creates, reuses and removes VMAC macvlans in the namespace of ``nl``.

    Keeps, per parent, which VMACs use it and the parent's sysctl values from before
    the first one, so the last removal can put them back.
    """

    def __init__(self, nl: Netlink) -> None:
        self._nl = nl
        self._users: dict[str, set[str]] = {}
        self._saved: dict[str, dict[str, int]] = {}

    async def ensure(self, spec: VmacSpec) -> LinkState:
        """Make the VMAC exist, configured and up; reuse a matching one left behind."""
        parent = await self._nl.link_state(spec.parent)
        current = await self._nl.find_link(spec.name)
        if current is not None and not self._matches(current, spec, parent):
            if current.kind != "macvlan":
                raise NetlinkFailure(
                    "create VMAC",
                    spec.name,
                    errno.EEXIST,
                    f"an interface named {spec.name!r} exists and is not a macvlan; "
                    "choose another use_vmac name",
                )
            log.info(
                "removing stale VMAC %s (mac %s, parent %s) to recreate it",
                spec.name,
                current.mac,
                current.parent,
            )
            await self._nl.del_link(spec.name)
            current = None
        if current is None:
            await self._nl.add_macvlan(spec.name, spec.parent, spec.mac, mode="private")
            log.info("created VMAC %s on %s with %s", spec.name, spec.parent, spec.mac)
        self._configure_sysctls(spec)
        await self._nl.set_link_up(spec.name)
        if spec.family == 6:
            await self._add_link_local(spec, parent)
        return await self._nl.link_state(spec.name)

    @staticmethod
    def _matches(current: LinkState, spec: VmacSpec, parent: LinkState) -> bool:
        return (
            current.kind == "macvlan"
            and current.parent == parent.index
            and current.mac.lower() == spec.mac
            and current.macvlan_mode in (None, "private")
        )

    def _configure_sysctls(self, spec: VmacSpec) -> None:
        netns = self._nl.netns
        if spec.family == 4:
            for name, value in VMAC_SYSCTLS:
                sysctl.write_conf(4, spec.name, name, value, netns=netns)
            if not spec.keep_ipv6:
                sysctl.write_conf(6, spec.name, "disable_ipv6", 1, netns=netns)
            self._claim_parent(spec)
        if spec.family == 6 or spec.keep_ipv6:
            sysctl.write_conf(6, spec.name, "addr_gen_mode", _ADDR_GEN_MODE_NONE, netns=netns)

    def _claim_parent(self, spec: VmacSpec) -> None:
        users = self._users.setdefault(spec.parent, set())
        if not users and spec.parent not in self._saved:
            netns = self._nl.netns
            self._saved[spec.parent] = {
                name: sysctl.read_conf(4, spec.parent, name, netns=netns)
                for name, _ in PARENT_SYSCTLS
            }
            for name, value in PARENT_SYSCTLS:
                sysctl.write_conf(4, spec.parent, name, value, netns=netns)
        users.add(spec.name)

    async def _add_link_local(self, spec: VmacSpec, parent: LinkState) -> None:
        address = spec.link_local or await self._nl.link_local_ipv6(spec.parent)
        if address is None:
            address = eui64_link_local(parent.mac)
        await self._nl.add_address(spec.name, address, scope="link", nodad=True)

    async def remove(self, spec: VmacSpec) -> bool:
        """Delete the VMAC (True if it existed) and restore the parent when unused."""
        removed = await self._nl.del_link(spec.name)
        users = self._users.get(spec.parent)
        if users is not None:
            users.discard(spec.name)
            if not users:
                del self._users[spec.parent]
                self._restore_parent(spec.parent)
        if removed:
            log.info("removed VMAC %s from %s", spec.name, spec.parent)
        return removed

    def _restore_parent(self, parent: str) -> None:
        saved = self._saved.pop(parent, None)
        if not saved:
            return
        for name, value in saved.items():
            try:
                sysctl.write_conf(4, parent, name, value, netns=self._nl.netns)
            except sysctl.SysctlError as exc:  # parent gone: nothing left to restore
                log.warning("could not restore %s on %s: %s", name, parent, exc)
