"""IPVS's part of the validated config, as frozen dataclasses.

The runtime, the planner, the API and the cluster checks read these and never the raw
YAML: defaults are filled in, what real servers and checkers inherit from their virtual
server is resolved (each checker's :mod:`vigil.ipvs.checkers.settings` object is built
here, so the engine gets exactly what was validated), groups are expanded into the
services they stand for, and addresses are ``ipaddress`` objects. ``to_dict()`` gives the
file format back (what the user wrote, without the inherited values), which validates
again.

Nothing here imports pyroute2: the Ansible collection validates configs on a controller
that has none. :class:`Endpoint` is the config's name for an IPVS service; the runtime
turns it into a :class:`vigil.ipvs.kernel.ServiceKey`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from vigil.ipvs.checkers.settings import CheckSettings

IPAddress = IPv4Address | IPv6Address

#: every scheduler Linux IPVS has had (ip_vs_<name> modules)
SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
    "twos",
)  # fmt: skip
#: scheduler flags (``ipvsadm -b``): named ones per scheduler, and the generic bits
SCHEDULER_FLAGS: dict[str, tuple[str, ...]] = {
    "sh": ("sh-fallback", "sh-port"),
    "mh": ("mh-fallback", "mh-port"),
}
GENERIC_FLAGS = ("flag-1", "flag-2", "flag-3")
ALL_FLAGS = (*SCHEDULER_FLAGS["sh"], *SCHEDULER_FLAGS["mh"], *GENERIC_FLAGS)
PROTOCOLS = ("tcp", "udp", "sctp")
FORWARDING = ("nat", "dr", "tun")
TUNNEL_TYPES = ("ipip", "gue", "gre")
TUNNEL_CHECKSUMS = ("nocsum", "csum", "remcsum")
CHECK_KINDS = ("tcp", "http", "https", "dns", "udp", "ping", "smtp", "misc", "file", "bfd")


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def host_port(addr: IPAddress, port: int | None) -> str:
    """``10.0.0.1:80``, ``[fd00::1]:80``; without a port just the address."""
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    return host if not port else f"{host}:{port}"


@dataclass(frozen=True)
class Tunnel:
    """Tunnel forwarding details: ``ipip``, ``gue`` (needs ``port``) or ``gre``."""

    type: str = "ipip"
    port: int = 0
    checksum: str = "nocsum"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.type == "gue":
            data["port"] = self.port
        if self.type != "ipip":
            data["checksum"] = self.checksum
        return data


@dataclass(frozen=True)
class Forwarding:
    """How IPVS hands packets to a server: ``nat``, ``dr`` or ``tun`` (+ its tunnel)."""

    method: str = "nat"
    tunnel: Tunnel = field(default_factory=Tunnel)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"forwarding": self.method}
        if self.method == "tun":
            data["tunnel"] = self.tunnel.to_dict()
        return data

    def __str__(self) -> str:
        if self.method != "tun":
            return self.method
        t = self.tunnel
        extra = f":{t.port}" if t.type == "gue" else ""
        csum = f"/{t.checksum}" if t.type != "ipip" else ""
        return f"tun ({t.type}{extra}{csum})"


@dataclass(frozen=True)
class Persistence:
    """``ipvsadm -p TIMEOUT -M MASK`` (+ ``--pe``); ``prefix`` None is /32 or /128."""

    timeout: int = 360
    prefix: int | None = None
    engine: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {"timeout": self.timeout, "granularity": self.prefix, "engine": self.engine}
        )


@dataclass(frozen=True)
class Endpoint:
    """One IPVS service: ``protocol address:port`` or a firewall mark of a family."""

    protocol: str | None = None
    address: IPAddress | None = None
    port: int | None = None
    fwmark: int | None = None
    family: int = 4

    def __str__(self) -> str:
        if self.fwmark is not None:
            return f"fwmark {self.fwmark}" + (" (IPv6)" if self.family == 6 else "")
        assert self.address is not None
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.protocol} {host}:{self.port or 0}"

    @property
    def key(self) -> str:
        """A stable text key (journal entries, maps): ``tcp|10.0.0.1|80``, ``fwmark|1|4``."""
        if self.fwmark is not None:
            return f"fwmark|{self.fwmark}|{self.family}"
        return f"{self.protocol}|{self.address}|{self.port or 0}"

    def to_dict(self) -> dict[str, Any]:
        if self.fwmark is not None:
            return {"fwmark": self.fwmark, "family": self.family}
        return {"protocol": self.protocol, "address": str(self.address), "port": self.port or 0}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        import ipaddress

        if data.get("fwmark") is not None:
            return cls(fwmark=int(data["fwmark"]), family=int(data.get("family", 4)))
        addr = ipaddress.ip_address(str(data["address"]))
        return cls(
            protocol=str(data["protocol"]),
            address=addr,
            port=int(data.get("port") or 0),
            family=addr.version,
        )


@dataclass(frozen=True)
class CheckConfig:
    """One checker: its kind, its keys as written, and the resolved engine settings."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    settings: CheckSettings | None = field(default=None, compare=True, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **dict(self.options)}


@dataclass(frozen=True)
class SorryServer:
    """Served while the virtual server is below quorum (every real server taken out)."""

    address: IPAddress
    port: int = 0
    forwarding: Forwarding = field(default_factory=Forwarding)
    #: keep it in IPVS with weight 0 while not needed (keepalived sorry_server_inhibit)
    inhibit: bool = False
    #: the forwarding was given for the sorry server itself (not inherited)
    own_forwarding: bool = False

    @property
    def label(self) -> str:
        return host_port(self.address, self.port)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"address": str(self.address)}
        if self.port:
            data["port"] = self.port
        if self.own_forwarding:
            data.update(self.forwarding.to_dict())
        if self.inhibit:
            data["inhibit"] = True
        return data


@dataclass(frozen=True)
class RealServerConfig:
    """A real server of one virtual server, with everything it inherits resolved.

    ``port`` 0 means "the port the client asked for" (fwmark services, DR). ``options``
    keeps what the user wrote (for ``to_dict``).
    """

    address: IPAddress
    port: int
    weight: int = 1
    forwarding: Forwarding = field(default_factory=Forwarding)
    inhibit_on_failure: bool = False
    upper_threshold: int = 0
    lower_threshold: int = 0
    notify_up: str | None = None
    notify_down: str | None = None
    checks: tuple[CheckConfig, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        """``10.0.0.11:80`` (``[fd00::11]:80``); the real server's name in the API."""
        return host_port(self.address, self.port)

    @property
    def family(self) -> int:
        return self.address.version

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.options)
        data["checks"] = [check.to_dict() for check in self.checks]
        return data


@dataclass(frozen=True)
class VirtualServerConfig:
    """One virtual server: its services (one, or a group's), scheduling, pool and policy."""

    name: str
    services: tuple[Endpoint, ...]
    address: IPAddress | None = None
    port: int | None = None
    protocol: str = "tcp"
    fwmark: int | None = None
    family: int = 4
    group: str | None = None
    scheduler: str = "wlc"
    scheduler_flags: tuple[str, ...] = ()
    one_packet: bool = False
    forwarding: Forwarding = field(default_factory=Forwarding)
    persistence: Persistence | None = None
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: str | None = None
    quorum_down: str | None = None
    sorry_server: SorryServer | None = None
    inhibit_on_failure: bool = False
    alpha: bool = False
    omega: bool = False
    delay_loop: float = 60.0
    ha_suspend: str | None = None
    real_servers: tuple[RealServerConfig, ...] = ()
    #: notify commands' timeout (global.notify_timeout)
    notify_timeout: float = 10.0
    options: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def real_server(self, label: str) -> RealServerConfig:
        """The real server ``label`` (``10.0.0.11:80``, or the bare address when unique)."""
        for rs in self.real_servers:
            if rs.label == label:
                return rs
        matches = [rs for rs in self.real_servers if str(rs.address) == label.strip("[]")]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(rs.label for rs in self.real_servers) or "none"
        if matches:
            raise KeyError(f"{label!r} is ambiguous in {self.name}; give the port: {known}")
        raise KeyError(f"no real server {label!r} in {self.name}; it has: {known}")

    @property
    def where(self) -> str:
        """What the virtual server serves, for people: ``tcp 10.0.0.1:80``, ``group web``."""
        if self.group is not None:
            return f"group {self.group} ({self.protocol})"
        return str(self.services[0])

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.options)
        data["real_servers"] = [rs.to_dict() for rs in self.real_servers]
        return data


@dataclass(frozen=True)
class GroupMember:
    """A ``virtual_server_groups`` entry: an address range and port, or a fwmark."""

    first: IPAddress | None = None
    last: IPAddress | None = None
    port: int | None = None
    fwmark: int | None = None
    family: int = 4
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        if self.fwmark is not None:
            return {"fwmark": self.fwmark, "family": self.family}
        return _drop_none({"address": self.text, "port": self.port})


@dataclass(frozen=True)
class VirtualServerGroup:
    name: str
    members: tuple[GroupMember, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "members": [m.to_dict() for m in self.members]}


@dataclass(frozen=True)
class SyncDaemonConfig:
    """The IPVS connection sync daemon; with ``instance`` it follows that VRRP instance.

    ``syncid`` is resolved (default: the instance's VRID, or 0).
    """

    interface: str
    instance: str | None = None
    syncid: int = 0
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: IPAddress | None = None
    syncid_given: bool = False

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "interface": self.interface,
                "instance": self.instance,
                "syncid": self.syncid if self.syncid_given else None,
                "maxlen": self.maxlen,
                "port": self.port,
                "ttl": self.ttl,
                "group": None if self.group is None else str(self.group),
            }
        )


@dataclass(frozen=True)
class IpvsConfig:
    """IPVS's section (attribute names are the file's keys)."""

    virtual_servers: tuple[VirtualServerConfig, ...] = ()
    virtual_server_groups: tuple[VirtualServerGroup, ...] = ()
    ipvs_sync_daemon: SyncDaemonConfig | None = None
    #: from ``global``: who notify and MISC commands run as, and how they are checked
    script_user: str = "nobody"
    script_security: bool = True

    def virtual_server(self, name: str) -> VirtualServerConfig:
        """The virtual server called ``name``; KeyError names the ones that exist."""
        for vs in self.virtual_servers:
            if vs.name == name:
                return vs
        known = ", ".join(vs.name for vs in self.virtual_servers) or "none"
        raise KeyError(f"unknown virtual server {name!r}; this config has: {known}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(vs.name for vs in self.virtual_servers)

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.virtual_server_groups:
            data["virtual_server_groups"] = [g.to_dict() for g in self.virtual_server_groups]
        if self.virtual_servers:
            data["virtual_servers"] = [vs.to_dict() for vs in self.virtual_servers]
        if self.ipvs_sync_daemon is not None:
            data["ipvs_sync_daemon"] = self.ipvs_sync_daemon.to_dict()
        return data
