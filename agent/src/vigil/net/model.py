"""What the netlink adapter speaks in: addresses, links, routes, events, and its errors.

Small frozen dataclasses made from pyroute2 messages (the parsing is here too), the
scope names, and :class:`NetlinkFailure`, whose text an operator can act on ("cannot add
10.0.0.100/24 to eth9: no such device"). No I/O. :mod:`vigil.net.netlink` (the request
socket) and :mod:`vigil.net.monitor` (the event socket) both build on it.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any, TypeAlias

from pyroute2.netlink.exceptions import NetlinkError

from vigil.net.rtnl import RtnlError

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPInterface: TypeAlias = IPv4Interface | IPv6Interface
IPNetwork: TypeAlias = IPv4Network | IPv6Network

#: Address/route scope names as in /etc/iproute2/rt_scopes.
SCOPES: dict[str, int] = {"global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
_SCOPE_NAMES = {value: name for name, value in SCOPES.items()}

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
RT_TABLE_MAIN = 254
IFNAMSIZ = 16
_SO_RCVBUFFORCE = 33

# Kernel errno -> words an operator understands in the context of these operations.
_MESSAGES: dict[int, str] = {
    errno_mod.ENODEV: "no such device",
    errno_mod.EPERM: "operation not permitted (vigild needs CAP_NET_ADMIN)",
    errno_mod.EACCES: "permission denied (vigild needs CAP_NET_ADMIN)",
    errno_mod.ENETUNREACH: "network is unreachable (no address on the device covers the gateway)",
    errno_mod.EADDRNOTAVAIL: "address not present",
    errno_mod.ESRCH: "no such route",
    errno_mod.EEXIST: "already exists",
    errno_mod.ERANGE: "value out of range (interface names are at most 15 characters)",
    errno_mod.EINVAL: "invalid argument (the kernel rejected the request)",
    errno_mod.EOPNOTSUPP: "not supported by this kernel",
    errno_mod.ENOBUFS: "netlink buffer overflow",
}


class NetlinkFailure(Exception):
    """A netlink request failed; ``str()`` says what was tried, on what, and why."""

    def __init__(self, op: str, target: str, errno: int, message: str | None = None) -> None:
        self.op = op
        self.target = target
        self.errno = errno
        self.message = message or _MESSAGES.get(errno) or os.strerror(errno).lower()
        super().__init__(f"cannot {op} {target}: {self.message}")


def _failure(op: str, target: str, exc: NetlinkError) -> NetlinkFailure:
    """Keep the kernel's own explanation (netlink extended ack) when it gave one."""
    detail = exc.args[1] if len(exc.args) > 1 else None
    return _with_detail(op, target, int(exc.code), detail)


def _rtnl_failure(op: str, target: str, exc: RtnlError) -> NetlinkFailure:
    return _with_detail(op, target, exc.errno or errno_mod.EIO, exc.message)


def _with_detail(op: str, target: str, code: int, detail: object) -> NetlinkFailure:
    base = _MESSAGES.get(code) or os.strerror(code).lower()
    if isinstance(detail, str) and detail and detail != os.strerror(code):
        return NetlinkFailure(op, target, code, f"{base} (kernel: {detail.strip()})")
    return NetlinkFailure(op, target, code)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LinkState:
    """One interface as the kernel reports it.

    ``up`` is the administrative flag (ip link set up); ``carrier`` is the lower layer
    (cable, peer end of a veth). ``parent`` is the index of the lower device for a
    macvlan/veth (IFLA_LINK), ``kind`` its link type ("veth", "macvlan", ...).
    """

    index: int
    name: str
    up: bool
    carrier: bool
    mac: str
    mtu: int
    kind: str | None = None
    parent: int | None = None
    macvlan_mode: str | None = None

    @property
    def running(self) -> bool:
        """Usable for traffic: administratively up and with carrier."""
        return self.up and self.carrier


@dataclass(frozen=True)
class AddrInfo:
    """One address on an interface. ``scope`` is a name from :data:`SCOPES`."""

    ifname: str
    address: IPInterface
    label: str | None
    scope: str
    flags: int
    index: int = 0

    @property
    def family(self) -> int:
        return self.address.version

    @property
    def secondary(self) -> bool:
        return bool(self.flags & IFA_F_SECONDARY)

    @property
    def tentative(self) -> bool:
        """IPv6 duplicate address detection still running: the address is unusable."""
        return bool(self.flags & IFA_F_TENTATIVE)

    @property
    def dad_failed(self) -> bool:
        return bool(self.flags & IFA_F_DADFAILED)


def _scope_value(scope: str | int) -> int:
    if isinstance(scope, int):
        if 0 <= scope <= 255:
            return scope
        raise ValueError(f"scope {scope} out of range: use 0..255 or one of {', '.join(SCOPES)}")
    try:
        return SCOPES[scope]
    except KeyError:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}") from None


def _scope_name(value: int) -> str:
    return _SCOPE_NAMES.get(value, str(value))


@dataclass(frozen=True)
class RouteSpec:
    """A unicast route. ``to`` is a network (0.0.0.0/0 or ::/0 for a default route).

    ``table=None`` means the main table; ``metric=None`` the kernel default (0);
    ``scope=None`` lets the kernel pick (link for a route without ``via``).
    Use :meth:`parse` to build one from config strings ("default", "10.1.0.0/16").
    """

    to: IPNetwork
    via: IPAddress | None = None
    dev: str | None = None
    src: IPAddress | None = None
    metric: int | None = None
    table: int | None = None
    scope: str | None = None
    protocol: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        version = self.to.version
        for name in ("via", "src"):
            value = getattr(self, name)
            if value is not None and value.version != version:
                raise ValueError(
                    f"route to {self.to}: {name} {value} is IPv{value.version} but the "
                    f"destination is IPv{version}; use addresses of one family"
                )
        if self.metric is not None and not 0 <= self.metric <= 0xFFFFFFFF:
            raise ValueError(f"route to {self.to}: metric {self.metric} out of range 0..4294967295")
        if self.table is not None and not 1 <= self.table <= 0xFFFFFFFF:
            raise ValueError(f"route to {self.to}: table {self.table} out of range 1..4294967295")
        if self.scope is not None:
            _scope_value(self.scope)
        if self.via is None and self.dev is None:
            raise ValueError(f"route to {self.to}: needs a gateway (via) or a device (dev)")

    @classmethod
    def parse(
        cls,
        to: str,
        *,
        via: str | None = None,
        dev: str | None = None,
        src: str | None = None,
        metric: int | None = None,
        table: int | None = None,
        scope: str | None = None,
    ) -> RouteSpec:
        """Build from strings; ``to="default"`` takes its family from via or src (else 4)."""
        via_ip = ipaddress.ip_address(via) if via else None
        src_ip = ipaddress.ip_address(src) if src else None
        if to == "default":
            hint = via_ip or src_ip
            network: IPNetwork = (
                IPv6Network("::/0")
                if hint is not None and hint.version == 6
                else IPv4Network("0.0.0.0/0")
            )
        else:
            network = ipaddress.ip_network(to, strict=False)
        return cls(network, via_ip, dev, src_ip, metric, table, scope)

    @classmethod
    def from_fields(cls, route: Any, *, default_dev: str | None = None) -> RouteSpec:
        """From any object with to/via/dev/src/metric/table/scope (a config route)."""
        return cls(
            to=route.to,
            via=route.via,
            dev=route.dev if route.dev is not None else default_dev,
            src=route.src,
            metric=route.metric,
            table=route.table,
            scope=route.scope,
        )

    @property
    def family(self) -> int:
        return self.to.version

    def __str__(self) -> str:
        parts = ["default" if self.to.prefixlen == 0 else str(self.to)]
        for key, value in (
            ("via", self.via),
            ("dev", self.dev),
            ("src", self.src),
            ("metric", self.metric),
            ("table", self.table),
            ("scope", self.scope),
        ):
            if value is not None:
                parts.append(f"{key} {value}")
        return " ".join(parts)


@dataclass(frozen=True)
class LinkEvent:
    """An interface appeared, changed up/carrier state, was renamed, or was removed."""

    ifname: str
    index: int
    up: bool
    carrier: bool
    removed: bool = False

    @property
    def running(self) -> bool:
        return self.up and self.carrier and not self.removed


@dataclass(frozen=True)
class AddrEvent:
    """An address was added to or removed from an interface (by anyone)."""

    ifname: str
    address: IPInterface
    added: bool
    index: int = 0
    label: str | None = None

    @property
    def removed(self) -> bool:
        return not self.added


@dataclass(frozen=True)
class Resync:
    """Events were lost (netlink overflow): here is the full current state instead."""

    links: tuple[LinkState, ...]
    addresses: tuple[AddrInfo, ...]


NetlinkEvent: TypeAlias = LinkEvent | AddrEvent | Resync


# ------------------------------------------------------------------ message parsing


def _link_from_msg(msg: Any) -> LinkState:
    flags = int(msg["flags"])
    carrier_attr = msg.get("carrier")
    carrier = bool(carrier_attr) if carrier_attr is not None else bool(flags & IFF_LOWER_UP)
    parent = msg.get("link")
    return LinkState(
        index=int(msg["index"]),
        name=str(msg.get("ifname")),
        up=bool(flags & IFF_UP),
        carrier=carrier,
        mac=str(msg.get("address") or ""),
        mtu=int(msg.get("mtu") or 0),
        kind=msg.get(("linkinfo", "kind")),
        parent=int(parent) if parent else None,
        macvlan_mode=msg.get(("linkinfo", "data", "macvlan_mode")),
    )


def _addr_from_msg(msg: Any, ifname: str) -> AddrInfo:
    family = msg["family"]
    raw = msg.get("local") if family == socket.AF_INET else None
    raw = raw or msg.get("address")
    address: IPInterface = ipaddress.ip_interface(f"{raw}/{msg['prefixlen']}")
    nla_flags = msg.get_attr("IFA_FLAGS")
    flags = int(nla_flags if nla_flags is not None else msg["flags"])
    label = msg.get("label")
    return AddrInfo(
        ifname=ifname,
        address=address,
        label=str(label) if label else None,
        scope=_scope_name(int(msg["scope"])),
        flags=flags,
        index=int(msg["index"]),
    )


def _route_from_msg(msg: Any, names: dict[int, str]) -> RouteSpec | None:
    family = msg["family"]
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    gateway = msg.get("gateway")
    oif = msg.get("oif")
    if not gateway and not oif:
        return None  # blackhole/multipath and the like are not ours to model
    dst = msg.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
    prefsrc = msg.get("prefsrc")
    table = msg.get_attr("RTA_TABLE")
    return RouteSpec(
        to=ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False),
        via=ipaddress.ip_address(gateway) if gateway else None,
        dev=names.get(int(oif), str(oif)) if oif else None,
        src=ipaddress.ip_address(prefsrc) if prefsrc else None,
        metric=msg.get("priority"),
        table=int(table if table is not None else msg["table"]),
        scope=_scope_name(int(msg["scope"])),
        protocol=int(msg["proto"]),
    )


def _check_ifname(name: str) -> None:
    if not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(
            f"invalid interface name {name!r}: use 1..15 characters without '/' or spaces"
        )
