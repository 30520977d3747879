"""Thin async adapter over the kernel's IPVS generic netlink family (via pyroute2).

This module does I/O and nothing else: it turns the kernel's IPVS table into small frozen
dataclasses (:class:`Service`, :class:`Destination`, their :class:`Counters`, the
:class:`SyncDaemon`), sends one netlink request per operation, and turns a refusal into
:class:`IpvsError`, whose text names the operation, the object and the kernel's reason
("cannot add destination 10.0.0.11:80 to tcp 10.0.0.100:80: already exists"). There is no
policy here (no idempotence, no diffing): the reconciler above decides what to send.

Why not pyroute2's ``AsyncIPVS.service()`` / ``.dest()`` and its ``IPVSService`` /
``IPVSDest`` (pyroute2 0.9.7): pyroute2 opens the socket (:class:`AsyncIPVSSocket`, in the
namespace if one is given) and resolves the "IPVS" family, and its message classes (below)
encode the requests; the requests then go through a plain copy of that socket and their
replies are decoded by :mod:`vigil.ipvs.genl` (with ``struct``, an attribute when it is
read: a service and a destination decode and parse in an eighth of the time they take
through pyroute2, 73 against 615 us on the host; its cost made a drift check's dump the
agent's largest expense). Its message map and helpers get things wrong that matter here:

- ``IPVSDest.from_message()`` reports the *default* forwarding method (3, DR), not the
  kernel's, and ``from_message()`` drops the counters;
- ``IPVS_DEST_ATTR_TUN_PORT`` is declared host-order ``uint16``; the kernel reads and
  writes it big-endian (``nla_get_be16``);
- ``IPVS_SVC_ATTR_NETMASK`` is declared an IPv4 address; for IPv6 services the kernel
  reads those 4 bytes as a host-order prefix length (1..128);
- ``IPVS_CMD_ATTR_DAEMON`` (the sync daemon) is an opaque ``hex``, so the daemon cannot be
  started, stopped or listed;
- its ``"update"`` command maps to a delete (use ``"set"``; we send SET_* ourselves).

Requests: every message sent increments :attr:`IpvsKernel.requests`, so a test can prove
that, say, adding one real server costs one request. :meth:`IpvsKernel.services` costs one
service dump plus one destination dump per service (the kernel has no single dump of
both).

Network namespaces: ``IpvsKernel(netns="name")`` opens its socket inside that namespace,
always with ``flags=0``, so a wrong name is an error, never a new empty namespace.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pyroute2 import config as pyroute2_config
from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, genlmsg, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket
from pyroute2.netlink.generic.ipvs import (
    GENL_NAME,
    GENL_VERSION,
    IPVS_CMD_DEL_DAEMON,
    IPVS_CMD_DEL_DEST,
    IPVS_CMD_DEL_SERVICE,
    IPVS_CMD_FLUSH,
    IPVS_CMD_GET_DAEMON,
    IPVS_CMD_GET_DEST,
    IPVS_CMD_GET_SERVICE,
    IPVS_CMD_NEW_DAEMON,
    IPVS_CMD_NEW_DEST,
    IPVS_CMD_NEW_SERVICE,
    IPVS_CMD_SET_DEST,
    IPVS_CMD_SET_SERVICE,
    AsyncIPVSSocket,
    ipvsstats,
)

from vigil.net.netlink import NetlinkFailure

from .genl import NLMSG_HDRLEN, Channel, GenlError, encode_request

__all__ = [
    "FORWARD_METHODS",
    "PROTOCOLS",
    "SCHED_FLAGS",
    "TUNNEL_CSUM",
    "TUNNEL_TYPES",
    "Counters",
    "Destination",
    "DestinationState",
    "IPAddress",
    "IpvsError",
    "IpvsKernel",
    "Service",
    "ServiceKey",
    "ServiceState",
    "SyncDaemon",
    "parse_proc_table",
    "proc_service_id",
    "proc_view",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
Protocol: TypeAlias = Literal["tcp", "udp", "sctp"]
Forward: TypeAlias = Literal["nat", "local", "tun", "dr", "bypass"]
TunnelType: TypeAlias = Literal["ipip", "gue", "gre"]
TunnelCsum: TypeAlias = Literal["nocsum", "csum", "remcsum"]
DaemonState: TypeAlias = Literal["master", "backup"]

#: Protocol name -> IP protocol number, for addr:port services.
PROTOCOLS: dict[str, int] = {
    "tcp": socket.IPPROTO_TCP,
    "udp": socket.IPPROTO_UDP,
    "sctp": socket.IPPROTO_SCTP,
}
_PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}

#: ``IP_VS_CONN_F_*`` forwarding methods (the low 3 bits of a destination's conn flags).
#: "local" and "bypass" are only ever read: the kernel sets them itself.
FORWARD_METHODS: dict[str, int] = {"nat": 0, "local": 1, "tun": 2, "dr": 3, "bypass": 4}
_FORWARD_NAMES = {v: k for k, v in FORWARD_METHODS.items()}
_WRITABLE_FORWARD = ("nat", "dr", "tun")
_FWD_MASK = 0x7

#: ``IP_VS_CONN_F_TUNNEL_TYPE_*`` (kernel 5.3+) and ``IP_VS_TUNNEL_ENCAP_FLAG_*``.
TUNNEL_TYPES: dict[str, int] = {"ipip": 0, "gue": 1, "gre": 2}
_TUNNEL_NAMES = {v: k for k, v in TUNNEL_TYPES.items()}
TUNNEL_CSUM: dict[str, int] = {"nocsum": 0, "csum": 1, "remcsum": 2}
_CSUM_NAMES = {v: k for k, v in TUNNEL_CSUM.items()}

# IP_VS_SVC_F_*
_F_PERSISTENT = 0x0001
_F_HASHED = 0x0002
_F_ONEPACKET = 0x0004
_F_SCHED1 = 0x0008
_F_SCHED2 = 0x0010
_F_SCHED3 = 0x0020
_F_SCHED_ALL = _F_SCHED1 | _F_SCHED2 | _F_SCHED3
_F_MASK_ALL = 0xFFFFFFFF

#: Scheduler flag names (``ipvsadm -b``): per scheduler, name -> bit. Other schedulers have
#: no flags of their own; the bits still exist and read back as ``flag-1`` .. ``flag-3``.
SCHED_FLAGS: dict[str, dict[str, int]] = {
    "sh": {"sh-fallback": _F_SCHED1, "sh-port": _F_SCHED2},
    "mh": {"mh-fallback": _F_SCHED1, "mh-port": _F_SCHED2},
}
_GENERIC_SCHED_FLAGS = {"flag-1": _F_SCHED1, "flag-2": _F_SCHED2, "flag-3": _F_SCHED3}

# IP_VS_STATE_* for the sync daemon.
_DAEMON_STATES: dict[str, int] = {"master": 1, "backup": 2}
_DAEMON_NAMES = {v: k for k, v in _DAEMON_STATES.items()}

_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_S32_MAX = 0x7FFFFFFF
IFNAMSIZ = 16


# ------------------------------------------------------------------------ errors


class IpvsError(NetlinkFailure):
    """The kernel refused an IPVS request (or the IPVS socket could not be opened).

    ``str()``: ``cannot <op> <target>: <reason>``; ``op``, ``target``, ``errno`` and
    ``message`` are attributes (from :class:`vigil.net.netlink.NetlinkFailure`).
    """


# What the kernel's errno means for each kind of request (ip_vs_ctl.c).
_REASONS: dict[str, dict[int, str]] = {
    "service": {
        errno_mod.EEXIST: "already exists",
        errno_mod.ESRCH: "no such service",
        errno_mod.ENOENT: "unknown scheduler or persistence engine (no such ip_vs_* module)",
        errno_mod.EINVAL: "invalid argument (the kernel rejected the service)",
        errno_mod.EAFNOSUPPORT: "address family not supported by this kernel's IPVS",
    },
    "destination": {
        errno_mod.EEXIST: "already exists",
        errno_mod.ESRCH: "no such service",
        errno_mod.ENOENT: "no such destination",
        errno_mod.EINVAL: (
            "invalid argument (the kernel rejected the destination: NAT and DR need a route "
            "to it in this namespace (is lo up?), GUE needs a tunnel port, and only tun may "
            "mix IPv4 and IPv6)"
        ),
        errno_mod.EAFNOSUPPORT: "address family not supported by this kernel's IPVS",
        errno_mod.ERANGE: "thresholds out of range (lower must not exceed upper)",
    },
    "daemon": {
        errno_mod.EEXIST: "a sync daemon in this state is already running",
        errno_mod.ESRCH: "no sync daemon in this state is running",
        errno_mod.ENODEV: "no such interface",
        errno_mod.EADDRNOTAVAIL: "the interface has no address for the multicast socket",
        errno_mod.EINVAL: "invalid argument (the kernel rejected the sync daemon)",
    },
}
_COMMON_REASONS: dict[int, str] = {
    errno_mod.EPERM: "operation not permitted (needs CAP_NET_ADMIN)",
    errno_mod.EACCES: "permission denied (needs CAP_NET_ADMIN)",
    errno_mod.ENOMEM: "out of memory",
}


def _reason(kind: str, code: int) -> str:
    return (
        _REASONS.get(kind, {}).get(code) or _COMMON_REASONS.get(code) or os.strerror(code).lower()
    )


# ------------------------------------------------------------------------ model


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} {value!r}: must be an integer in {low}..{high}")


def _family_of(addr: IPAddress) -> Literal[4, 6]:
    return 4 if addr.version == 4 else 6


def _addr_text(addr: IPAddress, port: int) -> str:
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


@dataclass(frozen=True)
class ServiceKey:
    """Which virtual service: ``protocol addr:port``, or a firewall mark and its family.

    Build with :meth:`inet` or :meth:`mark`; ``family`` follows ``addr`` when there is one.
    """

    protocol: Protocol | None = None
    addr: IPAddress | None = None
    port: int | None = None
    fwmark: int | None = None
    family: Literal[4, 6] = 4

    def __post_init__(self) -> None:
        if self.fwmark is not None:
            if self.protocol is not None or self.addr is not None or self.port is not None:
                raise ValueError("a service is addressed by protocol/addr/port or by fwmark")
            _check_range("fwmark", self.fwmark, 1, _U32)
            if self.family not in (4, 6):
                raise ValueError(f"family {self.family!r}: must be 4 or 6")
            return
        if self.protocol is None or self.addr is None or self.port is None:
            raise ValueError("a service needs protocol, addr and port (or a fwmark)")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: must be one of {sorted(PROTOCOLS)}")
        _check_range("port", self.port, 0, _U16)
        addr = self.addr
        if not isinstance(addr, IPv4Address | IPv6Address):
            addr = ipaddress.ip_address(addr)
            object.__setattr__(self, "addr", addr)
        object.__setattr__(self, "family", _family_of(addr))

    @classmethod
    def inet(cls, protocol: Protocol, addr: IPAddress | str, port: int) -> ServiceKey:
        if not isinstance(addr, IPv4Address | IPv6Address):
            addr = ipaddress.ip_address(addr)
        return cls(protocol=protocol, addr=addr, port=port)

    @classmethod
    def mark(cls, fwmark: int, family: Literal[4, 6] = 4) -> ServiceKey:
        return cls(fwmark=fwmark, family=family)

    def __str__(self) -> str:
        if self.fwmark is not None:
            return f"fwmark {self.fwmark} (IPv{self.family})"
        assert self.addr is not None and self.port is not None
        return f"{self.protocol} {_addr_text(self.addr, self.port)}"


@dataclass(frozen=True)
class Service:
    """A virtual service as the kernel holds it (without its destinations).

    ``sched_flags`` are ``ipvsadm -b`` names (``sh-fallback``, ``sh-port`` for ``sh``;
    ``mh-fallback``, ``mh-port`` for ``mh``; ``flag-1`` .. ``flag-3`` otherwise).
    ``persistence_timeout`` > 0 makes the service persistent (``ipvsadm -p``);
    ``persistence_prefix`` is the client netmask as a prefix length (None: /32 or /128).
    """

    key: ServiceKey
    scheduler: str = "wlc"
    sched_flags: frozenset[str] = frozenset()
    one_packet: bool = False
    persistence_timeout: int = 0
    persistence_prefix: int | None = None
    pe_name: str | None = None

    def __post_init__(self) -> None:
        if not self.scheduler or len(self.scheduler) >= IFNAMSIZ:
            raise ValueError(f"scheduler {self.scheduler!r}: 1..15 characters")
        object.__setattr__(self, "sched_flags", frozenset(self.sched_flags))
        allowed = SCHED_FLAGS.get(self.scheduler, _GENERIC_SCHED_FLAGS)
        unknown = sorted(self.sched_flags - set(allowed))
        if unknown:
            raise ValueError(
                f"scheduler flags {unknown} do not apply to {self.scheduler!r}; "
                f"it takes: {', '.join(sorted(allowed))}"
            )
        _check_range("persistence_timeout", self.persistence_timeout, 0, _U32 // 1000)
        if self.persistence_prefix is not None:
            _check_range(
                "persistence_prefix",
                self.persistence_prefix,
                1 if self.key.family == 6 else 0,
                32 if self.key.family == 4 else 128,
            )

    @property
    def persistent(self) -> bool:
        return self.persistence_timeout > 0


@dataclass(frozen=True)
class Destination:
    """A real server of a service.

    ``forward``: ``nat`` (masquerading), ``dr`` (direct routing) or ``tun`` (tunnelling);
    the kernel may report ``local`` or ``bypass``, which cannot be written. The tunnel
    fields only mean something with ``tun``: ``tunnel_type`` ``ipip``, ``gue`` (needs
    ``tunnel_port``) or ``gre``, and ``tunnel_csum`` for GUE/GRE. Thresholds are
    connection counts (0: none).
    """

    addr: IPAddress
    port: int
    weight: int = 1
    forward: Forward = "nat"
    tunnel_type: TunnelType = "ipip"
    tunnel_port: int = 0
    tunnel_csum: TunnelCsum = "nocsum"
    upper_threshold: int = 0
    lower_threshold: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.addr, IPv4Address | IPv6Address):  # parsing costs: skip it
            object.__setattr__(self, "addr", ipaddress.ip_address(self.addr))
        _check_range("port", self.port, 0, _U16)
        _check_range("weight", self.weight, 0, _S32_MAX)
        _check_range("upper_threshold", self.upper_threshold, 0, _U32)
        _check_range("lower_threshold", self.lower_threshold, 0, _U32)
        _check_range("tunnel_port", self.tunnel_port, 0, _U16)
        if self.forward not in FORWARD_METHODS:
            raise ValueError(f"forward {self.forward!r}: one of {', '.join(_WRITABLE_FORWARD)}")
        if self.tunnel_type not in TUNNEL_TYPES:
            raise ValueError(f"tunnel_type {self.tunnel_type!r}: one of {sorted(TUNNEL_TYPES)}")
        if self.tunnel_csum not in TUNNEL_CSUM:
            raise ValueError(f"tunnel_csum {self.tunnel_csum!r}: one of {sorted(TUNNEL_CSUM)}")

    @property
    def family(self) -> Literal[4, 6]:
        return _family_of(self.addr)

    def __str__(self) -> str:
        return _addr_text(self.addr, self.port)


@dataclass(frozen=True)
class Counters:
    """The kernel's counters for a service or destination (since it was added).

    Totals (connections, packets, bytes) and the kernel's rate estimates per second.
    """

    conns: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    cps: int = 0
    pps_in: int = 0
    pps_out: int = 0
    bps_in: int = 0
    bps_out: int = 0


@dataclass(frozen=True)
class DestinationState:
    """A destination as listed: what it is, plus its connections and counters."""

    destination: Destination
    active_conns: int = 0
    inactive_conns: int = 0
    persistent_conns: int = 0
    counters: Counters = field(default_factory=Counters)


@dataclass(frozen=True)
class ServiceState:
    """A service as listed, with its destinations (in the kernel's order) and counters."""

    service: Service
    destinations: tuple[DestinationState, ...] = ()
    counters: Counters = field(default_factory=Counters)

    @property
    def key(self) -> ServiceKey:
        return self.service.key


@dataclass(frozen=True)
class SyncDaemon:
    """An IPVS connection-sync daemon (``ipvsadm --start-daemon``).

    None leaves a setting to the kernel (max length from the MTU, group 224.0.0.81 or
    ff02::8:1 only when given, port 8848, TTL 1); a listed daemon has them all filled in.
    """

    state: DaemonState
    interface: str
    syncid: int = 0
    maxlen: int | None = None
    group: IPAddress | None = None
    port: int | None = None
    ttl: int | None = None

    def __post_init__(self) -> None:
        if self.state not in _DAEMON_STATES:
            raise ValueError(f"state {self.state!r}: must be master or backup")
        if not self.interface or len(self.interface) >= IFNAMSIZ:
            raise ValueError(f"interface {self.interface!r}: 1..15 characters")
        _check_range("syncid", self.syncid, 0, 255)
        if self.maxlen is not None:
            _check_range("maxlen", self.maxlen, 1, _U16)
        if self.port is not None:
            _check_range("port", self.port, 1, _U16)
        if self.ttl is not None:
            _check_range("ttl", self.ttl, 1, 255)
        if self.group is not None:
            object.__setattr__(self, "group", ipaddress.ip_address(self.group))

    def __str__(self) -> str:
        return f"{self.state} sync daemon on {self.interface} (syncid {self.syncid})"


# ------------------------------------------------------------------------ /proc/net/ip_vs

#: /proc/net/ip_vs's word for each forwarding method (the kernel's ip_vs_fwd_name)
_PROC_FORWARD = {"nat": "Masq", "local": "Local", "tun": "Tunnel", "dr": "Route"}

#: a service as /proc/net/ip_vs shows it: (scheduler, {"ADDR:PORT Forward weight", ...});
#: None for an id listed twice (fwmark services of both families look alike there)
ProcService: TypeAlias = tuple[str, frozenset[str]] | None


def _proc_addr(addr: IPAddress) -> str:
    if isinstance(addr, IPv4Address):
        return f"{int(addr):08X}"
    return f"[{addr.exploded}]"


def proc_service_id(key: ServiceKey) -> str:
    if key.fwmark is not None:
        return f"FWM {key.fwmark:08X}"
    assert key.protocol is not None and key.addr is not None and key.port is not None
    return f"{key.protocol.upper()} {_proc_addr(key.addr)}:{key.port:04X}"


def proc_view(
    key: ServiceKey, service: Service, dests: Iterable[Destination]
) -> tuple[str, ProcService]:
    """(id, what /proc/net/ip_vs would show) for a service with these destinations: the
    service's identity, its scheduler, and each destination's address, port, forwarding
    method and weight. It shows nothing of scheduler flags, persistence netmask,
    thresholds or tunnel settings."""
    shown = frozenset(
        f"{_proc_addr(d.addr)}:{d.port:04X} {_PROC_FORWARD.get(d.forward, 'Masq')} {d.weight}"
        for d in dests
    )
    return proc_service_id(key), (service.scheduler, shown)


def parse_proc_table(text: str) -> dict[str, ProcService]:
    """/proc/net/ip_vs -> {service id: (scheduler, destinations)}, ids as :func:`proc_view`
    makes them (connection counts are left out)."""
    out: dict[str, ProcService] = {}
    dests: set[str] | None = None
    current = ""
    scheduler = ""

    def close() -> None:
        if dests is None:
            return
        out[current] = None if current in out else (scheduler, frozenset(dests))

    for line in text.splitlines()[3:]:  # the version line and two column headers
        parts = line.split()
        if len(parts) < 3:
            continue
        if parts[0] == "->":
            if dests is not None and len(parts) >= 4:
                dests.add(f"{parts[1]} {parts[2]} {parts[3]}")
            continue
        close()
        current, scheduler, dests = f"{parts[0]} {parts[1]}", parts[2], set()
    close()
    return out


# ------------------------------------------------------------------------ wire


class _IpvsMsg(genlmsg):
    """IPVS generic netlink messages with the kernel's real attribute types (see above)."""

    prefix = "IPVS_CMD_ATTR_"
    nla_map = (
        ("IPVS_CMD_ATTR_UNSPEC", "none"),
        ("IPVS_CMD_ATTR_SERVICE", "service"),
        ("IPVS_CMD_ATTR_DEST", "dest"),
        ("IPVS_CMD_ATTR_DAEMON", "daemon"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_UDP", "uint32"),
    )

    class service(nla, ipvsstats):
        prefix = "IPVS_SVC_ATTR_"
        nla_map = (
            ("IPVS_SVC_ATTR_UNSPEC", "none"),
            ("IPVS_SVC_ATTR_AF", "uint16"),
            ("IPVS_SVC_ATTR_PROTOCOL", "uint16"),
            ("IPVS_SVC_ATTR_ADDR", "cdata"),
            ("IPVS_SVC_ATTR_PORT", "be16"),
            ("IPVS_SVC_ATTR_FWMARK", "uint32"),
            ("IPVS_SVC_ATTR_SCHED_NAME", "asciiz"),
            ("IPVS_SVC_ATTR_FLAGS", "flags"),
            ("IPVS_SVC_ATTR_TIMEOUT", "uint32"),
            ("IPVS_SVC_ATTR_NETMASK", "cdata"),
            ("IPVS_SVC_ATTR_STATS", "stats"),
            ("IPVS_SVC_ATTR_PE_NAME", "asciiz"),
            ("IPVS_SVC_ATTR_STATS64", "stats64"),
        )

        class flags(nla):
            fields = (("flags", "I"), ("mask", "I"))

    class dest(nla, ipvsstats):
        prefix = "IPVS_DEST_ATTR_"
        nla_map = (
            ("IPVS_DEST_ATTR_UNSPEC", "none"),
            ("IPVS_DEST_ATTR_ADDR", "cdata"),
            ("IPVS_DEST_ATTR_PORT", "be16"),
            ("IPVS_DEST_ATTR_FWD_METHOD", "uint32"),
            ("IPVS_DEST_ATTR_WEIGHT", "uint32"),
            ("IPVS_DEST_ATTR_U_THRESH", "uint32"),
            ("IPVS_DEST_ATTR_L_THRESH", "uint32"),
            ("IPVS_DEST_ATTR_ACTIVE_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_INACT_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_PERSIST_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_STATS", "stats"),
            ("IPVS_DEST_ATTR_ADDR_FAMILY", "uint16"),
            ("IPVS_DEST_ATTR_STATS64", "stats64"),
            ("IPVS_DEST_ATTR_TUN_TYPE", "uint8"),
            ("IPVS_DEST_ATTR_TUN_PORT", "be16"),
            ("IPVS_DEST_ATTR_TUN_FLAGS", "uint16"),
        )

    class daemon(nla):
        prefix = "IPVS_DAEMON_ATTR_"
        nla_map = (
            ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
            ("IPVS_DAEMON_ATTR_STATE", "uint32"),
            ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
            ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
            ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP", "ip4addr"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "ip6addr"),
            ("IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
        )


class _IpvsSocket(AsyncIPVSSocket):
    """pyroute2's IPVS socket, bound with :class:`_IpvsMsg` instead of its ``ipvsmsg``."""

    async def setup_endpoint(self) -> None:
        if getattr(self.local, "transport", None) is not None:
            return
        await AsyncGenericNetlinkSocket.setup_endpoint(self)
        await self.bind(GENL_NAME, _IpvsMsg)


Attrs: TypeAlias = list[tuple[str, Any]]


def _pack_addr(addr: IPAddress) -> bytes:
    return addr.packed


def _unpack_addr(raw: bytes, family: int) -> IPAddress:
    if family == socket.AF_INET:
        return IPv4Address(raw[:4])
    return IPv6Address(raw[:16])


def _af(family: int) -> int:
    return socket.AF_INET if family == 4 else socket.AF_INET6


def service_key_attrs(key: ServiceKey) -> Attrs:
    """The attributes that name a service (``IPVS_CMD_ATTR_SERVICE``, key only)."""
    attrs: Attrs = [("IPVS_SVC_ATTR_AF", _af(key.family))]
    if key.fwmark is not None:
        attrs.append(("IPVS_SVC_ATTR_FWMARK", key.fwmark))
    else:
        assert key.protocol is not None and key.addr is not None and key.port is not None
        attrs += [
            ("IPVS_SVC_ATTR_PROTOCOL", PROTOCOLS[key.protocol]),
            ("IPVS_SVC_ATTR_ADDR", _pack_addr(key.addr)),
            ("IPVS_SVC_ATTR_PORT", key.port),
        ]
    return attrs


def _netmask_bytes(family: int, prefix: int | None) -> bytes:
    if family == 4:
        return IPv4Address(_U32 ^ (_U32 >> (32 if prefix is None else prefix))).packed
    # IPv6: the kernel reads the 4 bytes as a host-order u32 prefix length.
    return struct.pack("=I", 128 if prefix is None else prefix)


def _netmask_prefix(family: int, raw: bytes | None) -> int | None:
    if not raw or len(raw) < 4:
        return None
    if family == 4:
        value = struct.unpack("!I", raw[:4])[0]
        return bin(value).count("1")
    return int(struct.unpack("=I", raw[:4])[0])


def service_attrs(svc: Service) -> Attrs:
    """The full ``IPVS_CMD_ATTR_SERVICE`` for add and set."""
    flags = 0
    table = SCHED_FLAGS.get(svc.scheduler, _GENERIC_SCHED_FLAGS)
    for name in svc.sched_flags:
        flags |= table[name]
    if svc.one_packet:
        flags |= _F_ONEPACKET
    if svc.persistent:
        flags |= _F_PERSISTENT
    attrs = service_key_attrs(svc.key)
    attrs += [
        ("IPVS_SVC_ATTR_SCHED_NAME", svc.scheduler),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": flags, "mask": _F_MASK_ALL}),
        ("IPVS_SVC_ATTR_TIMEOUT", svc.persistence_timeout),
        ("IPVS_SVC_ATTR_NETMASK", _netmask_bytes(svc.key.family, svc.persistence_prefix)),
    ]
    if svc.pe_name:
        attrs.append(("IPVS_SVC_ATTR_PE_NAME", svc.pe_name))
    return attrs


def dest_attrs(dest: Destination, *, full: bool = True) -> Attrs:
    """``IPVS_CMD_ATTR_DEST``: address and port only (delete), or everything (add, set)."""
    attrs: Attrs = [
        ("IPVS_DEST_ATTR_ADDR", _pack_addr(dest.addr)),
        ("IPVS_DEST_ATTR_PORT", dest.port),
        ("IPVS_DEST_ATTR_ADDR_FAMILY", _af(dest.family)),
    ]
    if not full:
        return attrs
    if dest.forward not in _WRITABLE_FORWARD:
        raise ValueError(
            f"destination {dest}: forward {dest.forward!r} is set by the kernel; "
            f"write one of {', '.join(_WRITABLE_FORWARD)}"
        )
    attrs += [
        ("IPVS_DEST_ATTR_FWD_METHOD", FORWARD_METHODS[dest.forward]),
        ("IPVS_DEST_ATTR_WEIGHT", dest.weight),
        ("IPVS_DEST_ATTR_U_THRESH", dest.upper_threshold),
        ("IPVS_DEST_ATTR_L_THRESH", dest.lower_threshold),
    ]
    if dest.forward == "tun":
        attrs += [
            ("IPVS_DEST_ATTR_TUN_TYPE", TUNNEL_TYPES[dest.tunnel_type]),
            ("IPVS_DEST_ATTR_TUN_PORT", dest.tunnel_port),
            ("IPVS_DEST_ATTR_TUN_FLAGS", TUNNEL_CSUM[dest.tunnel_csum]),
        ]
    return attrs


def daemon_attrs(daemon: SyncDaemon) -> Attrs:
    attrs: Attrs = [
        ("IPVS_DAEMON_ATTR_STATE", _DAEMON_STATES[daemon.state]),
        ("IPVS_DAEMON_ATTR_MCAST_IFN", daemon.interface),
        ("IPVS_DAEMON_ATTR_SYNC_ID", daemon.syncid),
    ]
    if daemon.maxlen is not None:
        attrs.append(("IPVS_DAEMON_ATTR_SYNC_MAXLEN", daemon.maxlen))
    if daemon.group is not None:
        name = "IPVS_DAEMON_ATTR_MCAST_GROUP" + ("" if daemon.group.version == 4 else "6")
        attrs.append((name, str(daemon.group)))
    if daemon.port is not None:
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_PORT", daemon.port))
    if daemon.ttl is not None:
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_TTL", daemon.ttl))
    return attrs


def _counters(obj: Any) -> Counters:
    stats = obj.get_attr("IPVS_SVC_ATTR_STATS64") or obj.get_attr("IPVS_DEST_ATTR_STATS64")
    if stats is None:
        stats = obj.get_attr("IPVS_SVC_ATTR_STATS") or obj.get_attr("IPVS_DEST_ATTR_STATS")
    if stats is None:
        return Counters()

    def get(name: str) -> int:
        return int(stats.get_attr(f"IPVS_STATS_ATTR_{name}") or 0)

    return Counters(
        conns=get("CONNS"),
        packets_in=get("INPKTS"),
        packets_out=get("OUTPKTS"),
        bytes_in=get("INBYTES"),
        bytes_out=get("OUTBYTES"),
        cps=get("CPS"),
        pps_in=get("INPPS"),
        pps_out=get("OUTPPS"),
        bps_in=get("INBPS"),
        bps_out=get("OUTBPS"),
    )


def parse_service(svc: Any) -> tuple[Service, Counters]:
    """An ``IPVS_CMD_ATTR_SERVICE`` from a dump -> (Service, Counters)."""
    af = int(svc.get_attr("IPVS_SVC_ATTR_AF"))
    family: Literal[4, 6] = 4 if af == socket.AF_INET else 6
    fwmark = svc.get_attr("IPVS_SVC_ATTR_FWMARK") or 0
    if fwmark:
        key = ServiceKey.mark(int(fwmark), family)
    else:
        proto = int(svc.get_attr("IPVS_SVC_ATTR_PROTOCOL"))
        if proto not in _PROTOCOL_NAMES:
            raise ValueError(f"IPVS service with unknown protocol {proto}")
        key = ServiceKey.inet(
            _PROTOCOL_NAMES[proto],  # type: ignore[arg-type]
            _unpack_addr(svc.get_attr("IPVS_SVC_ATTR_ADDR"), af),
            int(svc.get_attr("IPVS_SVC_ATTR_PORT")),
        )
    scheduler = str(svc.get_attr("IPVS_SVC_ATTR_SCHED_NAME") or "")
    flags_nla = svc.get_attr("IPVS_SVC_ATTR_FLAGS")
    flags = int(flags_nla["flags"]) if flags_nla is not None else 0
    table = SCHED_FLAGS.get(scheduler, _GENERIC_SCHED_FLAGS)
    sched_flags = frozenset(name for name, bit in table.items() if flags & bit)
    # A bit the scheduler has no name for (set by another tool): keep it visible.
    named = 0
    for name in sched_flags:
        named |= table[name]
    sched_flags |= frozenset(
        name for name, bit in _GENERIC_SCHED_FLAGS.items() if flags & bit & _F_SCHED_ALL & ~named
    )
    persistent = bool(flags & _F_PERSISTENT)
    timeout = int(svc.get_attr("IPVS_SVC_ATTR_TIMEOUT") or 0)
    prefix = _netmask_prefix(family, svc.get_attr("IPVS_SVC_ATTR_NETMASK"))
    full = 32 if family == 4 else 128
    service = Service(
        key=key,
        scheduler=scheduler or "wlc",
        sched_flags=sched_flags,
        one_packet=bool(flags & _F_ONEPACKET),
        persistence_timeout=timeout if persistent else 0,
        persistence_prefix=None if prefix in (None, full) or not persistent else prefix,
        pe_name=svc.get_attr("IPVS_SVC_ATTR_PE_NAME") or None,
    )
    return service, _counters(svc)


def parse_destination(dest: Any, service_family: int) -> DestinationState:
    """An ``IPVS_CMD_ATTR_DEST`` from a dump -> DestinationState.

    The forwarding method comes from ``IPVS_DEST_ATTR_FWD_METHOD`` itself (pyroute2's
    ``IPVSDest.from_message`` reports its default instead).
    """
    af = int(dest.get_attr("IPVS_DEST_ATTR_ADDR_FAMILY") or _af(service_family))
    fwd = int(dest.get_attr("IPVS_DEST_ATTR_FWD_METHOD") or 0) & _FWD_MASK
    forward = _FORWARD_NAMES.get(fwd)
    if forward is None:
        raise ValueError(f"IPVS destination with unknown forwarding method {fwd}")
    destination = Destination(
        addr=_unpack_addr(dest.get_attr("IPVS_DEST_ATTR_ADDR"), af),
        port=int(dest.get_attr("IPVS_DEST_ATTR_PORT")),
        weight=int(dest.get_attr("IPVS_DEST_ATTR_WEIGHT") or 0),
        forward=forward,  # type: ignore[arg-type]
        tunnel_type=_TUNNEL_NAMES.get(  # type: ignore[arg-type]
            int(dest.get_attr("IPVS_DEST_ATTR_TUN_TYPE") or 0), "ipip"
        ),
        tunnel_port=int(dest.get_attr("IPVS_DEST_ATTR_TUN_PORT") or 0),
        tunnel_csum=_CSUM_NAMES.get(  # type: ignore[arg-type]
            int(dest.get_attr("IPVS_DEST_ATTR_TUN_FLAGS") or 0), "nocsum"
        ),
        upper_threshold=int(dest.get_attr("IPVS_DEST_ATTR_U_THRESH") or 0),
        lower_threshold=int(dest.get_attr("IPVS_DEST_ATTR_L_THRESH") or 0),
    )
    return DestinationState(
        destination=destination,
        active_conns=int(dest.get_attr("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0),
        inactive_conns=int(dest.get_attr("IPVS_DEST_ATTR_INACT_CONNS") or 0),
        persistent_conns=int(dest.get_attr("IPVS_DEST_ATTR_PERSIST_CONNS") or 0),
        counters=_counters(dest),
    )


def parse_daemon(daemon: Any) -> SyncDaemon:
    state = _DAEMON_NAMES.get(int(daemon.get_attr("IPVS_DAEMON_ATTR_STATE") or 0))
    if state is None:
        raise ValueError(f"IPVS sync daemon in unknown state {daemon}")
    group = daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_GROUP6") or daemon.get_attr(
        "IPVS_DAEMON_ATTR_MCAST_GROUP"
    )
    maxlen = daemon.get_attr("IPVS_DAEMON_ATTR_SYNC_MAXLEN")
    port = daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_PORT")
    ttl = daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_TTL")
    return SyncDaemon(
        state=state,  # type: ignore[arg-type]
        interface=str(daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_IFN")),
        syncid=int(daemon.get_attr("IPVS_DAEMON_ATTR_SYNC_ID") or 0),
        maxlen=int(maxlen) if maxlen else None,
        group=ipaddress.ip_address(group) if group else None,
        port=int(port) if port else None,
        ttl=int(ttl) if ttl else None,
    )


# ------------------------------------------------------------------------ adapter


def request_payload(cmd: int, attrs: Mapping[str, Attrs] | None) -> bytes:
    """One request as generic netlink payload (its command header and attributes, no
    netlink header): what :mod:`vigil.faststart` sends from a start plan. The bytes are
    the ones :meth:`IpvsKernel._request` sends for the same command and attributes."""
    return encode_request(_IpvsMsg, 0, 0, 0, cmd, GENL_VERSION, _top(attrs))[NLMSG_HDRLEN:]


def _top(attrs: Mapping[str, Attrs] | None) -> list[tuple[str, list[Any]]]:
    """A request's top-level attributes as the genl codec takes them."""
    return [(name, list(nested)) for name, nested in (attrs or {}).items()]


def service_request(service: Service) -> dict[str, Attrs]:
    return {"IPVS_CMD_ATTR_SERVICE": service_attrs(service)}


def service_key_request(key: ServiceKey) -> dict[str, Attrs]:
    return {"IPVS_CMD_ATTR_SERVICE": service_key_attrs(key)}


def dest_request(key: ServiceKey, dest: Destination, *, full: bool = True) -> dict[str, Attrs]:
    return {
        "IPVS_CMD_ATTR_SERVICE": service_key_attrs(key),
        "IPVS_CMD_ATTR_DEST": dest_attrs(dest, full=full),
    }


class IpvsKernel:
    """The IPVS table of one network namespace (the current one unless ``netns``).

    Open with ``await k.open()`` or ``async with IpvsKernel() as k``. Every method is a
    coroutine that sends exactly one netlink request, except :meth:`services` (one dump of
    services, then one dump of destinations per service). Refusals raise
    :class:`IpvsError`; arguments that cannot be sent raise ValueError before anything is.
    """

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns
        self._chan: Channel | None = None
        #: netlink requests sent since construction (dumps count once each)
        self.requests = 0

    @property
    def netns(self) -> str | None:
        return self._netns

    @property
    def family(self) -> int:
        """The IPVS generic netlink family's id while open (0 if not)."""
        return self._chan.family if self._chan is not None else 0

    def _where(self) -> str:
        return f" in namespace {self._netns!r}" if self._netns else ""

    async def open(self) -> None:
        """Open the socket and resolve the IPVS family; calling it twice is harmless."""
        if self._chan is not None:
            return
        kwargs: dict[str, Any] = {}
        if self._netns is not None:
            # pyroute2 forks a child to open the socket in the namespace, then SIGTERMs
            # it: give that child default signal handling (see vigil.net.netlink).
            pyroute2_config.disable_mp_signal = True
            kwargs = {"netns": self._netns, "flags": 0}
        no_netns = IpvsError(
            "open IPVS netlink in namespace", repr(self._netns), errno_mod.ENOENT, "no such netns"
        )
        try:
            sock = _IpvsSocket(**kwargs)
        except FileNotFoundError:
            raise no_netns from None
        try:
            await sock.setup_endpoint()
            # pyroute2 opened the socket (in the namespace) and resolved the family; the
            # requests go through a plain copy of it (vigil.ipvs.genl: replies decoded
            # with struct, not by pyroute2's asyncio socket)
            raw = socket.socket(fileno=os.dup(sock.fileno()))
            family = int(sock.prid)
        except FileNotFoundError:
            raise no_netns from None
        except NetlinkError as exc:
            message = (
                "this kernel has no IPVS (CONFIG_IP_VS) or ip_vs is not loaded (modprobe ip_vs)"
                if exc.code == errno_mod.ENOENT
                else _reason("", exc.code)
            )
            target = f"IPVS generic netlink{self._where()}"
            raise IpvsError("open", target, exc.code, message) from None
        finally:
            sock.close()
        self._chan = Channel(raw, family, _IpvsMsg)

    async def close(self) -> None:
        if self._chan is not None:
            self._chan.close()
            self._chan = None

    async def __aenter__(self) -> IpvsKernel:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def proc_table(self) -> str | None:
        """/proc/net/ip_vs, one read with no netlink at all; None when this adapter works
        in another network namespace than the process (the file shows the process's) or
        the file cannot be read."""
        if self._netns is not None:
            return None
        try:
            return Path("/proc/net/ip_vs").read_text()
        except OSError:
            return None

    # -- one request

    async def _request(
        self,
        cmd: int,
        attrs: Mapping[str, Attrs] | None,
        *,
        op: str,
        target: str | Callable[[], str],
        kind: str,
        dump: bool = False,
    ) -> list[Any]:
        await self.open()
        assert self._chan is not None
        top = _top(attrs)
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        self.requests += 1
        try:
            return await self._chan.request(cmd, GENL_VERSION, top, flags)
        except GenlError as exc:
            where = (target() if callable(target) else target) + self._where()
            raise IpvsError(op, where, exc.code, _reason(kind, exc.code)) from None

    # -- services and destinations

    async def services(self, only: Collection[ServiceKey] | None = None) -> list[ServiceState]:
        """Every service with its destinations and counters (1 + one per service requests).

        With ``only``, just those services (if present): still one service dump, but
        destinations are dumped for those alone, so other tools' services cost nothing.
        """
        out: list[ServiceState] = []
        for msg in await self._request(
            IPVS_CMD_GET_SERVICE, None, op="list", target="IPVS services", kind="service",
            dump=True,
        ):  # fmt: skip
            service, counters = parse_service(msg.get_attr("IPVS_CMD_ATTR_SERVICE"))
            if only is not None and service.key not in only:
                continue
            dests = await self.destinations(service.key)
            out.append(ServiceState(service, tuple(dests), counters))
        return out

    async def destinations(self, key: ServiceKey) -> list[DestinationState]:
        """The destinations of one service, with their counters (one request)."""
        msgs = await self._request(
            IPVS_CMD_GET_DEST,
            {"IPVS_CMD_ATTR_SERVICE": service_key_attrs(key)},
            op="list destinations of",
            target=str(key),
            kind="destination",
            dump=True,
        )
        return [
            parse_destination(m.get_attr("IPVS_CMD_ATTR_DEST"), key.family)
            for m in msgs
            if m.get_attr("IPVS_CMD_ATTR_DEST") is not None
        ]

    async def add_service(self, service: Service) -> None:
        await self._service(IPVS_CMD_NEW_SERVICE, service, "add service")

    async def set_service(self, service: Service) -> None:
        """Change scheduler, flags or persistence of an existing service (kernel SET)."""
        await self._service(IPVS_CMD_SET_SERVICE, service, "change service")

    async def _service(self, cmd: int, service: Service, op: str) -> None:
        await self._request(
            cmd,
            service_request(service),
            op=op,
            target=str(service.key),
            kind="service",
        )

    async def delete_service(self, key: ServiceKey) -> None:
        """Delete a service and its destinations."""
        await self._request(
            IPVS_CMD_DEL_SERVICE,
            service_key_request(key),
            op="delete service",
            target=str(key),
            kind="service",
        )

    async def add_destination(self, key: ServiceKey, dest: Destination) -> None:
        await self._dest(IPVS_CMD_NEW_DEST, key, dest, "add destination", full=True)

    async def set_destination(self, key: ServiceKey, dest: Destination) -> None:
        """Change weight, method or thresholds of an existing destination (kernel SET)."""
        await self._dest(IPVS_CMD_SET_DEST, key, dest, "change destination", full=True)

    async def delete_destination(self, key: ServiceKey, addr: IPAddress | str, port: int) -> None:
        dest = Destination(ipaddress.ip_address(addr), port)
        await self._dest(IPVS_CMD_DEL_DEST, key, dest, "delete destination", full=False)

    async def _dest(
        self, cmd: int, key: ServiceKey, dest: Destination, op: str, *, full: bool
    ) -> None:
        prep = "from" if cmd == IPVS_CMD_DEL_DEST else ("to" if cmd == IPVS_CMD_NEW_DEST else "of")
        await self._request(
            cmd,
            dest_request(key, dest, full=full),
            op=op,
            target=lambda: f"{dest} {prep} {key}",  # text only for an error
            kind="destination",
        )

    async def flush(self) -> None:
        """Delete every service (and destination) of this namespace."""
        await self._request(
            IPVS_CMD_FLUSH, None, op="flush", target="the IPVS table", kind="service"
        )

    # -- the connection-sync daemon

    async def sync_daemons(self) -> list[SyncDaemon]:
        """The running sync daemons (at most one master and one backup)."""
        msgs = await self._request(
            IPVS_CMD_GET_DAEMON, None, op="list", target="IPVS sync daemons", kind="daemon",
            dump=True,
        )  # fmt: skip
        return [
            parse_daemon(m.get_attr("IPVS_CMD_ATTR_DAEMON"))
            for m in msgs
            if m.get_attr("IPVS_CMD_ATTR_DAEMON") is not None
        ]

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        await self._request(
            IPVS_CMD_NEW_DAEMON,
            {"IPVS_CMD_ATTR_DAEMON": daemon_attrs(daemon)},
            op="start",
            target=str(daemon),
            kind="daemon",
        )

    async def stop_sync_daemon(self, state: DaemonState) -> None:
        if state not in _DAEMON_STATES:
            raise ValueError(f"state {state!r}: must be master or backup")
        await self._request(
            IPVS_CMD_DEL_DAEMON,
            {"IPVS_CMD_ATTR_DAEMON": [("IPVS_DAEMON_ATTR_STATE", _DAEMON_STATES[state])]},
            op="stop",
            target=f"the {state} sync daemon",
            kind="daemon",
        )
