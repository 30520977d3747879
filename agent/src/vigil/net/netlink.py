"""Thin netlink adapter over pyroute2's asyncio API: links, addresses, routes, events.

This module does I/O and nothing else. It turns pyroute2 messages into small frozen
dataclasses, makes add/delete idempotent (an address or route that is already there, or
already gone, is success), and turns kernel errors into :class:`NetlinkFailure`, whose
text an operator can act on ("cannot add 10.0.0.100/24 to eth9: no such device").

vigild runs inside its network namespace and uses the current one. Tests stay in the
root namespace and pass ``netns=NAME``; pyroute2 then opens its sockets inside that
namespace, always with ``flags=0`` so a mistyped name is an error instead of a fresh,
empty namespace being created.

Events (:meth:`Netlink.events`) come from a separate socket subscribed to the link and
IPv4/IPv6 address groups. pyroute2 reads that socket into its own queue whenever the
event loop runs, so the kernel buffer does not fill while the loop is healthy; if it
still overflows (ENOBUFS, events were lost) the monitor reopens the socket, lists links
and addresses again and yields a :class:`Resync` carrying the full picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as errno_mod
import ipaddress
import logging
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any, Literal, TypeAlias

from pyroute2 import AsyncIPRoute
from pyroute2 import config as pyroute2_config
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

from vigil.net.rtnl import RtnlError, RtnlSocket, newaddr_payload

__all__ = [
    "SCOPES",
    "AddrEvent",
    "AddrInfo",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "LinkEvent",
    "LinkState",
    "Netlink",
    "NetlinkEvent",
    "NetlinkFailure",
    "NetlinkMonitor",
    "Resync",
    "RouteSpec",
]

log = logging.getLogger(__name__)

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

#: How long a request from :meth:`Netlink.prepare_address` stays usable. It names the
#: interface by index, read when it was prepared; VRRP prepares 5 ms before a deadline.
PREPARED_MAX_AGE = 1.0
_PREPARED_MAX = 1024  # requests kept at most (one per VIP, normally)

_EVENT_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR

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


# ------------------------------------------------------------------------ adapter


class Netlink:
    """Request/response netlink for one namespace (the current one unless ``netns``).

    Open with ``await nl.open()`` or ``async with Netlink() as nl``. All methods are
    coroutines; failures raise :class:`NetlinkFailure` (kernel said no) or ValueError
    (the arguments were wrong before anything was sent). One instance may be shared by
    many tasks: pyroute2 matches replies to requests by sequence number.
    """

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns
        self._ipr: AsyncIPRoute | None = None
        self._rtnl = RtnlSocket()  # opened on first use, own namespace only
        # prepare_address(): (target text, RTM_NEWADDR body, when) by the add's arguments.
        self._prepared: dict[tuple[object, ...], tuple[str, bytes, float]] = {}

    @property
    def netns(self) -> str | None:
        """The namespace name given at construction (None: the current namespace)."""
        return self._netns

    def _socket_kwargs(self) -> dict[str, Any]:
        if self._netns is None:
            return {}
        return {"netns": self._netns, "flags": 0}

    def _new_socket(self, **extra: Any) -> AsyncIPRoute:
        if self._netns is not None:
            # pyroute2 forks a child to open a socket in another namespace and then sends
            # it SIGTERM. Give that child default signal handling, so a handler of ours
            # (or a test harness's) that raises or tears things down never runs in it.
            pyroute2_config.disable_mp_signal = True
        try:
            return AsyncIPRoute(**self._socket_kwargs(), **extra)
        except FileNotFoundError:
            raise NetlinkFailure(
                "open netlink in namespace", repr(self._netns), errno_mod.ENOENT, "no such netns"
            ) from None

    async def open(self) -> None:
        """Create the request socket; calling it twice is harmless."""
        if self._ipr is not None:
            return
        if self._netns is None:
            self._rtnl.open()  # now, not on the first VIP add (a takeover)
        ipr = self._new_socket()
        try:
            await ipr.setup_endpoint()
        except FileNotFoundError:
            ipr.close()
            raise NetlinkFailure(
                "open netlink in namespace", repr(self._netns), errno_mod.ENOENT, "no such netns"
            ) from None
        self._ipr = ipr

    async def close(self) -> None:
        self._rtnl.close()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def __aenter__(self) -> Netlink:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def ipr(self) -> AsyncIPRoute:
        if self._ipr is None:
            raise RuntimeError("Netlink is not open: call 'await nl.open()' first")
        return self._ipr

    # ------------------------------------------------------------------ links

    async def links(self) -> list[LinkState]:
        return [_link_from_msg(msg) async for msg in await self.ipr.link("dump")]

    async def find_link(self, ifname: str) -> LinkState | None:
        """The interface's state, or None if it does not exist."""
        _check_ifname(ifname)
        try:
            (msg,) = await self.ipr.link("get", ifname=ifname)
        except NetlinkError as exc:
            if exc.code == errno_mod.ENODEV:
                return None
            raise _failure("read link", ifname, exc) from None
        return _link_from_msg(msg)

    async def link_state(self, ifname: str) -> LinkState:
        state = await self.find_link(ifname)
        if state is None:
            raise NetlinkFailure("find interface", ifname, errno_mod.ENODEV)
        return state

    async def link_index(self, ifname: str) -> int:
        return (await self.link_state(ifname)).index

    async def _names(self) -> dict[int, str]:
        return {link.index: link.name for link in await self.links()}

    async def set_link_up(self, ifname: str, up: bool = True) -> None:
        index = await self.link_index(ifname)
        try:
            await self.ipr.link("set", index=index, state="up" if up else "down")
        except NetlinkError as exc:
            raise _failure(f"set {'up' if up else 'down'}", ifname, exc) from None

    async def add_macvlan(
        self, name: str, parent: str, mac: str, *, mode: str = "private"
    ) -> LinkState:
        """Create a macvlan on parent with the given MAC (left down)."""
        _check_ifname(name)
        parent_index = await self.link_index(parent)
        try:
            await self.ipr.link(
                "add",
                ifname=name,
                kind="macvlan",
                link=parent_index,
                macvlan_mode=mode,
                address=mac,
            )
        except NetlinkError as exc:
            raise _failure("create macvlan", f"{name} on {parent}", exc) from None
        return await self.link_state(name)

    async def del_link(self, ifname: str) -> bool:
        """Delete an interface; True if it was deleted, False if it did not exist."""
        state = await self.find_link(ifname)
        if state is None:
            return False
        try:
            await self.ipr.link("del", index=state.index)
        except NetlinkError as exc:
            if exc.code == errno_mod.ENODEV:
                return False
            raise _failure("delete interface", ifname, exc) from None
        return True

    # -------------------------------------------------------------- addresses

    async def addresses(
        self, ifname: str | None = None, *, family: int | None = None
    ) -> list[AddrInfo]:
        """Addresses in kernel order (IPv4 primaries before their secondaries)."""
        if ifname is not None:
            state = await self.find_link(ifname)
            if state is None:
                raise NetlinkFailure("list addresses of", ifname, errno_mod.ENODEV)
            names = {state.index: state.name}
        else:
            names = await self._names()
        kwargs: dict[str, Any] = {}
        if family is not None:
            kwargs["family"] = socket.AF_INET if family == 4 else socket.AF_INET6
        result = []
        async for msg in await self.ipr.addr("dump", **kwargs):
            index = int(msg["index"])
            if ifname is not None and index not in names:
                continue
            if msg["family"] not in (socket.AF_INET, socket.AF_INET6):
                continue
            result.append(_addr_from_msg(msg, names.get(index, str(index))))
        return result

    async def primary_ipv4(self, ifname: str) -> IPv4Interface | None:
        """The interface's primary IPv4 address (VRRPv2/v3 source), or None."""
        for info in await self.addresses(ifname, family=4):
            if not info.secondary and isinstance(info.address, IPv4Interface):
                return info.address
        return None

    async def link_local_ipv6(self, ifname: str) -> IPv6Interface | None:
        """The interface's usable fe80::/10 address (VRRP IPv6 source), or None.

        A tentative or DAD-failed address cannot be a source yet and is skipped.
        """
        for info in await self.addresses(ifname, family=6):
            address = info.address
            if (
                isinstance(address, IPv6Interface)
                and address.ip.is_link_local
                and not info.tentative
                and not info.dad_failed
            ):
                return address
        return None

    async def add_address(
        self,
        ifname: str,
        address: IPInterface,
        *,
        label: str | None = None,
        scope: str = "global",
        nodad: bool = True,
        broadcast: IPv4Address | Literal["auto"] | None = "auto",
    ) -> bool:
        """Add an address; True if added, False if it was already there.

        IPv6 addresses get IFA_F_NODAD by default so a VIP is usable at once instead of
        after duplicate address detection. IPv4 ``broadcast="auto"`` sets the subnet
        broadcast like ``ip addr add ... brd +`` (none for /31 and /32). An IPv4 label
        must start with the interface name (``eth0:vip``), as iproute2 requires.
        """
        if self._netns is None:
            return self.add_address_now(
                ifname, address, label=label, scope=scope, nodad=nodad, broadcast=broadcast
            )
        target, scope_value, brd, nodad = self._address_request(
            ifname, address, label, scope, nodad, broadcast
        )
        index = await self._index_for(f"add {address}", f"to {ifname}", ifname)
        kwargs: dict[str, Any] = {
            "address": str(address.ip),
            "prefixlen": address.network.prefixlen,
            "scope": scope_value,
        }
        if label is not None:
            kwargs["label"] = label
        if brd is not None:
            kwargs["broadcast"] = str(brd)
        if nodad:
            kwargs["flags"] = IFA_F_NODAD
        try:
            await self.ipr.addr("add", index=index, **kwargs)
        except NetlinkError as exc:
            if exc.code == errno_mod.EEXIST:
                return False
            raise _failure("add", target, exc) from None
        return True

    def add_address_now(
        self,
        ifname: str,
        address: IPInterface,
        *,
        label: str | None = None,
        scope: str = "global",
        nodad: bool = True,
        broadcast: IPv4Address | Literal["auto"] | None = "auto",
    ) -> bool:
        """:meth:`add_address` without leaving the caller: own namespace only.

        The kernel handles an rtnetlink request inside ``sendmsg`` and has queued its
        answer when that returns, so this takes tens of microseconds and never waits for
        the event loop (pyroute2's asyncio path costs milliseconds). VRRP uses it to put a
        VIP in and announce it in one go when it becomes master, with the request made
        ready by :meth:`prepare_address` if there is a fresh one.
        """
        if self._netns is not None:
            raise RuntimeError("add_address_now works in the agent's own namespace only")
        key = (ifname, address, label, scope, nodad, broadcast)
        prepared = self._prepared.pop(key, None)
        if prepared is not None and time.monotonic() - prepared[2] < PREPARED_MAX_AGE:
            target, payload, _ = prepared
        else:
            target, payload = self._newaddr(ifname, address, label, scope, nodad, broadcast)
        try:
            return self._rtnl.new_address(payload)
        except RtnlError as exc:
            raise _rtnl_failure("add", target, exc) from None
        except OSError as exc:
            raise NetlinkFailure("add", target, exc.errno or errno_mod.EIO) from None

    def prepare_address(
        self,
        ifname: str,
        address: IPInterface,
        *,
        label: str | None = None,
        scope: str = "global",
        nodad: bool = True,
        broadcast: IPv4Address | Literal["auto"] | None = "auto",
    ) -> bool:
        """Build the request :meth:`add_address_now` will send with these arguments.

        VRRP calls this shortly before a deadline that may make it master: checking the
        arguments, finding the interface's index and packing the request cost more than
        the kernel's work, and then the add only sends. A prepared request is used once,
        within PREPARED_MAX_AGE. Returns False (nothing kept) if the arguments are wrong
        or the interface is missing; the add itself then reports why.
        """
        if self._netns is not None:
            return False
        try:
            target, payload = self._newaddr(ifname, address, label, scope, nodad, broadcast)
        except (NetlinkFailure, ValueError):
            return False
        if len(self._prepared) >= _PREPARED_MAX:
            self._prepared.clear()
        key = (ifname, address, label, scope, nodad, broadcast)
        self._prepared[key] = (target, payload, time.monotonic())
        return True

    def _newaddr(
        self,
        ifname: str,
        address: IPInterface,
        label: str | None,
        scope: str,
        nodad: bool,
        broadcast: IPv4Address | Literal["auto"] | None,
    ) -> tuple[str, bytes]:
        """(target text, RTM_NEWADDR body) for an add in our own namespace."""
        target, scope_value, brd, nodad = self._address_request(
            ifname, address, label, scope, nodad, broadcast
        )
        index = self._own_index(f"add {address}", f"to {ifname}", ifname)
        payload = newaddr_payload(
            index, address, scope=scope_value, label=label, broadcast=brd, nodad=nodad
        )
        return target, payload

    def _address_request(
        self,
        ifname: str,
        address: IPInterface,
        label: str | None,
        scope: str,
        nodad: bool,
        broadcast: IPv4Address | Literal["auto"] | None,
    ) -> tuple[str, int, IPv4Address | None, bool]:
        """Check an address add's arguments: (target text, scope, broadcast, nodad)."""
        target = f"{address} to {ifname}"
        scope_value = _scope_value(scope)
        brd: IPv4Address | None = None
        if isinstance(address, IPv4Interface):
            if label is not None and (not label.startswith(ifname) or len(label) >= IFNAMSIZ):
                raise ValueError(
                    f"label {label!r} for {target}: must start with {ifname!r} and be "
                    "at most 15 characters (e.g. 'eth0:vip')"
                )
            brd = self._broadcast(address, broadcast)
        elif label is not None:
            raise ValueError(f"label {label!r} for {target}: labels are IPv4 only")
        return target, scope_value, brd, nodad and isinstance(address, IPv6Interface)

    @staticmethod
    def _broadcast(
        address: IPv4Interface, broadcast: IPv4Address | Literal["auto"] | None
    ) -> IPv4Address | None:
        if broadcast == "auto":
            if address.network.prefixlen >= 31:
                return None
            return address.network.broadcast_address
        return broadcast

    async def del_address(self, ifname: str, address: IPInterface) -> bool:
        """Remove an address; True if removed, False if it (or the interface) was gone."""
        state = await self.find_link(ifname)
        if state is None:
            return False
        try:
            await self.ipr.addr(
                "del",
                index=state.index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
            )
        except NetlinkError as exc:
            if exc.code in (errno_mod.EADDRNOTAVAIL, errno_mod.ENODEV):
                return False
            raise _failure("remove", f"{address} from {ifname}", exc) from None
        return True

    async def _index_for(self, op: str, target: str, ifname: str) -> int:
        if self._netns is None:
            return self._own_index(op, target, ifname)
        state = await self.find_link(ifname)
        if state is None:
            raise NetlinkFailure(op, target, errno_mod.ENODEV)
        return state.index

    @staticmethod
    def _own_index(op: str, target: str, ifname: str) -> int:
        # In our own namespace one ioctl answers; a netlink round trip through pyroute2
        # costs about a millisecond more on the way to adding a VIP.
        _check_ifname(ifname)
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            raise NetlinkFailure(op, target, errno_mod.ENODEV) from None

    # ----------------------------------------------------------------- routes

    async def routes(
        self,
        *,
        table: int | None = RT_TABLE_MAIN,
        family: int | None = None,
        dev: str | None = None,
    ) -> list[RouteSpec]:
        """Unicast routes of a table (None: every table) with a gateway or device."""
        names = await self._names()
        kwargs: dict[str, Any] = {}
        if table is not None:
            kwargs["table"] = table
        if family is not None:
            kwargs["family"] = socket.AF_INET if family == 4 else socket.AF_INET6
        result = []
        async for msg in await self.ipr.route("dump", **kwargs):
            if msg.get("type") not in (None, 1):  # RTN_UNICAST only
                continue
            spec = _route_from_msg(msg, names)
            if spec is None or (dev is not None and spec.dev != dev):
                continue
            result.append(spec)
        return result

    async def _route_kwargs(self, spec: RouteSpec, op: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "dst": f"{spec.to.network_address}/{spec.to.prefixlen}",
            "family": socket.AF_INET if spec.family == 4 else socket.AF_INET6,
            "table": spec.table if spec.table is not None else RT_TABLE_MAIN,
        }
        if spec.via is not None:
            kwargs["gateway"] = str(spec.via)
        if spec.dev is not None:
            state = await self.find_link(spec.dev)
            if state is None:
                raise NetlinkFailure(op, f"route {spec}", errno_mod.ENODEV)
            kwargs["oif"] = state.index
        if spec.src is not None:
            kwargs["prefsrc"] = str(spec.src)
        if spec.metric is not None:
            kwargs["priority"] = spec.metric
        if spec.scope is not None:
            kwargs["scope"] = _scope_value(spec.scope)
        if spec.protocol is not None:
            kwargs["proto"] = spec.protocol
        return kwargs

    async def add_route(self, spec: RouteSpec, *, replace: bool = False) -> bool:
        """Add a route; True if added, False if a route with its key already existed.

        The kernel's key is (destination, metric, table, TOS): with ``replace=True`` an
        existing route with that key is overwritten to match ``spec`` (always True).
        """
        kwargs = await self._route_kwargs(spec, "add")
        try:
            await self.ipr.route("replace" if replace else "add", **kwargs)
        except NetlinkError as exc:
            if exc.code == errno_mod.EEXIST and not replace:
                return False
            raise _failure("add", f"route {spec}", exc) from None
        return True

    async def del_route(self, spec: RouteSpec) -> bool:
        """Delete a route; True if deleted, False if no such route (or device) existed."""
        try:
            kwargs = await self._route_kwargs(spec, "delete")
        except NetlinkFailure as exc:
            if exc.errno == errno_mod.ENODEV:
                return False
            raise
        try:
            await self.ipr.route("del", **kwargs)
        except NetlinkError as exc:
            if exc.code in (errno_mod.ESRCH, errno_mod.ENOENT, errno_mod.ENODEV):
                return False
            raise _failure("delete", f"route {spec}", exc) from None
        return True

    # ----------------------------------------------------------------- events

    def events(self, *, rcvbuf: int = 1 << 20) -> NetlinkMonitor:
        """A monitor of link and address changes in this namespace.

        ``async for ev in nl.events()`` works directly; to not miss changes made right
        after subscribing, ``await monitor.start()`` first, act, then iterate.
        """
        return NetlinkMonitor(self, rcvbuf=rcvbuf)


class NetlinkMonitor:
    """Link and address events from a dedicated, always-drained netlink socket.

    Link events are reported only when something a consumer cares about changed (up,
    carrier, name, appearance, removal): the kernel also sends RTM_NEWLINK for
    statistics and IPv6 protocol updates. Address events are reported when an address
    appears or disappears (not for flag updates such as the end of DAD).

    pyroute2 moves datagrams from the kernel into its queue whenever the event loop runs,
    so the kernel buffer only overflows if the loop is blocked; the queue itself grows
    if nobody iterates, so iterate continuously from one task, or close the monitor.
    """

    def __init__(self, nl: Netlink, *, rcvbuf: int = 1 << 20) -> None:
        self._nl = nl
        self._rcvbuf = rcvbuf
        self._sock: AsyncIPRoute | None = None
        self._links: dict[int, LinkState] = {}
        self._addrs: set[tuple[int, IPInterface]] = set()
        self._pending: deque[NetlinkEvent] = deque()
        self._closed = False
        self.resyncs = 0

    async def start(self) -> None:
        """Subscribe, then take a snapshot so later events can be told apart from noise."""
        if self._sock is not None:
            return
        if self._closed:
            raise RuntimeError("this NetlinkMonitor is closed; call nl.events() again")
        await self._subscribe()
        await self._snapshot()

    async def _subscribe(self) -> None:
        sock = self._nl._new_socket(rcvbuf=self._rcvbuf)
        try:
            await sock.bind(groups=_EVENT_GROUPS)
        except FileNotFoundError:
            sock.close()
            raise NetlinkFailure(
                "subscribe to events in namespace",
                repr(self._nl.netns),
                errno_mod.ENOENT,
                "no such netns",
            ) from None
        except BaseException:
            sock.close()
            raise
        # SO_RCVBUF is capped by net.core.rmem_max; as root, force the size asked for.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self._rcvbuf)
        self._sock = sock

    async def _snapshot(self) -> Resync:
        links = await self._nl.links()
        addresses = await self._nl.addresses()
        self._links = {link.index: link for link in links}
        self._addrs = {(a.index, a.address) for a in addresses}
        return Resync(tuple(links), tuple(addresses))

    async def close(self) -> None:
        self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> NetlinkMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[NetlinkEvent]:
        return self

    async def __anext__(self) -> NetlinkEvent:
        if self._closed and not self._pending:
            raise StopAsyncIteration
        await self.start()
        while not self._pending:
            if self._closed or self._sock is None:
                raise StopAsyncIteration
            await self._fill()
        return self._pending.popleft()

    async def _fill(self) -> None:
        """Read one batch (one datagram) from the socket into the pending list."""
        assert self._sock is not None
        got = False
        try:
            async for msg in self._sock.get():
                got = True
                self._pending.extend(self._translate(msg))
        except (OSError, NetlinkError) as exc:
            code = exc.code if isinstance(exc, NetlinkError) else exc.errno
            if self._closed:
                return  # close() from another task aborts the read with ECONNRESET
            if code == errno_mod.ENOBUFS:
                await self._recover("the netlink event socket overflowed; events were lost")
                return
            if code == errno_mod.ECONNRESET:
                await self._recover("the netlink event socket was reset")
                return
            raise NetlinkFailure("read", "netlink events", code or errno_mod.EIO) from None
        if not got and not self._closed:
            # pyroute2 ends get() empty-handed only when its socket went away.
            await self._recover("the netlink event socket closed")

    async def _recover(self, why: str) -> None:
        """Reopen the socket (unusable after an overflow) and report the full state."""
        log.warning("%s; resynchronising links and addresses", why)
        self.resyncs += 1
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._pending.clear()
        await self._subscribe()
        self._pending.append(await self._snapshot())

    def _translate(self, msg: Any) -> Iterable[NetlinkEvent]:
        event = msg.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            yield from self._link_event(msg, removed=event == "RTM_DELLINK")
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            yield from self._addr_event(msg, added=event == "RTM_NEWADDR")

    def _link_event(self, msg: Any, *, removed: bool) -> Iterable[LinkEvent]:
        index = int(msg["index"])
        if removed:
            old = self._links.pop(index, None)
            name = msg.get("ifname") or (old.name if old else str(index))
            self._addrs = {key for key in self._addrs if key[0] != index}
            yield LinkEvent(str(name), index, False, False, removed=True)
            return
        if msg.get("ifname") is None:
            return  # a per-family update without the link attributes
        state = _link_from_msg(msg)
        old = self._links.get(index)
        self._links[index] = state
        if old is not None and (old.name, old.up, old.carrier) == (
            state.name,
            state.up,
            state.carrier,
        ):
            return
        yield LinkEvent(state.name, index, state.up, state.carrier)

    def _addr_event(self, msg: Any, *, added: bool) -> Iterable[AddrEvent]:
        if msg["family"] not in (socket.AF_INET, socket.AF_INET6):
            return
        index = int(msg["index"])
        link = self._links.get(index)
        info = _addr_from_msg(msg, link.name if link else str(index))
        key = (index, info.address)
        if added:
            if key in self._addrs:
                return
            self._addrs.add(key)
        else:
            if key not in self._addrs:
                return
            self._addrs.discard(key)
        yield AddrEvent(info.ifname, info.address, added, index, info.label)

    async def wait_for(
        self, predicate: Callable[[NetlinkEvent], bool], *, timeout: float
    ) -> NetlinkEvent:
        """The first event matching predicate within timeout (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            async for ev in self:
                if predicate(ev):
                    return ev
        raise TimeoutError("event stream ended")
