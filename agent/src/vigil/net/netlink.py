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

import errno as errno_mod
import logging
import socket
import time
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from typing import Any, Literal

from pyroute2 import config as pyroute2_config
from pyroute2.iproute import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vigil.net.model import (
    IFA_F_NODAD,
    IFNAMSIZ,
    RT_TABLE_MAIN,
    SCOPES,
    AddrEvent,
    AddrInfo,
    IPAddress,
    IPInterface,
    IPNetwork,
    LinkEvent,
    LinkState,
    NetlinkEvent,
    NetlinkFailure,
    Resync,
    RouteSpec,
    _addr_from_msg,
    _check_ifname,
    _failure,
    _link_from_msg,
    _route_from_msg,
    _rtnl_failure,
    _scope_value,
)
from vigil.net.monitor import NetlinkMonitor
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

#: How long a request from :meth:`Netlink.prepare_address` stays usable. It names the
#: interface by index, read when it was prepared; VRRP prepares 5 ms before a deadline.
PREPARED_MAX_AGE = 1.0
_PREPARED_MAX = 1024  # requests kept at most (one per VIP, normally)


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
