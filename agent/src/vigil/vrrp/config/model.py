"""VRRP's part of the validated config, as frozen dataclasses.

Everything downstream (the VRRP runtime, control, API) reads these objects and never
the raw YAML: defaults are filled in, values inherited from ``global`` are resolved, and
addresses are ``ipaddress`` objects. ``to_dict()`` turns a model back into the config-file
format (JSON-able), so the result validates again and can be shown by the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any

from vigil.config.model import REDACTED

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True)
class GarpConfig:
    """Gratuitous ARP / unsolicited NA timing (keepalived's ``garp_*`` settings)."""

    master_delay: float = 5.0
    master_repeat: int = 5
    master_refresh: float = 0.0
    master_refresh_repeat: int = 1
    interval: float = 0.0
    lower_prio_delay: float = 5.0
    lower_prio_repeat: int = 5

    def to_dict(self) -> dict[str, Any]:
        return {
            "master_delay": self.master_delay,
            "master_repeat": self.master_repeat,
            "master_refresh": self.master_refresh,
            "master_refresh_repeat": self.master_refresh_repeat,
            "interval": self.interval,
            "lower_prio_delay": self.lower_prio_delay,
            "lower_prio_repeat": self.lower_prio_repeat,
        }


@dataclass(frozen=True)
class VipConfig:
    """A virtual address; ``dev`` None means the instance's interface (or its VMAC)."""

    address: IPInterface
    dev: str | None = None
    label: str | None = None
    scope: str = "global"

    @property
    def family(self) -> int:
        return self.address.version

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "address": str(self.address),
                "dev": self.dev,
                "label": self.label,
                "scope": self.scope,
            }
        )


@dataclass(frozen=True)
class RouteConfig:
    """A route installed while master (keepalived ``virtual_routes``)."""

    to: IPNetwork
    via: IPAddress | None = None
    dev: str | None = None
    src: IPAddress | None = None
    metric: int | None = None
    table: int | None = None
    scope: str | None = None

    @property
    def family(self) -> int:
        return self.to.version

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "to": str(self.to),
                "via": None if self.via is None else str(self.via),
                "dev": self.dev,
                "src": None if self.src is None else str(self.src),
                "metric": self.metric,
                "table": self.table,
                "scope": self.scope,
            }
        )


@dataclass(frozen=True)
class UnicastConfig:
    """Unicast adverts: ``source`` None means the interface's primary address."""

    peers: tuple[IPAddress, ...]
    source: IPAddress | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "source": None if self.source is None else str(self.source),
                "peers": [str(peer) for peer in self.peers],
            }
        )


@dataclass(frozen=True)
class AuthConfig:
    """VRRPv2 simple-text authentication (the only kind RFC 3768 still describes)."""

    password: str
    type: str = "pass"

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        return {"type": self.type, "password": REDACTED if redact else self.password}


@dataclass(frozen=True)
class TrackInterface:
    """A tracked link: weight 0 = down means FAULT; otherwise see docs/configuration.md."""

    name: str
    weight: int = 0
    weight_reverse: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "weight_reverse": self.weight_reverse}


@dataclass(frozen=True)
class TrackRef:
    """A reference to a named tracker, with its weight resolved (override or the tracker's)."""

    name: str
    weight: int
    weight_reverse: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "weight_reverse": self.weight_reverse}


@dataclass(frozen=True)
class TrackConfig:
    """Everything an instance tracks."""

    interfaces: tuple[TrackInterface, ...] = ()
    scripts: tuple[TrackRef, ...] = ()
    files: tuple[TrackRef, ...] = ()
    processes: tuple[TrackRef, ...] = ()
    bfd: tuple[TrackRef, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "interfaces": [item.to_dict() for item in self.interfaces],
            "scripts": [item.to_dict() for item in self.scripts],
            "files": [item.to_dict() for item in self.files],
            "processes": [item.to_dict() for item in self.processes],
        }
        if self.bfd:
            out["bfd"] = [item.to_dict() for item in self.bfd]
        return out


@dataclass(frozen=True)
class NotifyConfig:
    """Commands run on state changes; ``timeout`` is resolved from ``global.notify_timeout``."""

    master: str | None = None
    backup: str | None = None
    fault: str | None = None
    stop: str | None = None
    generic: str | None = None
    timeout: float = 10.0

    def commands(self) -> dict[str, str]:
        """The configured commands by kind, without the unset ones."""
        kinds = ("master", "backup", "fault", "stop", "generic")
        return {kind: getattr(self, kind) for kind in kinds if getattr(self, kind) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {**self.commands(), "timeout": self.timeout}


@dataclass(frozen=True)
class VrrpInstanceConfig:
    """One VRRP instance with every default and inherited value resolved."""

    name: str
    interface: str
    vrid: int
    vips: tuple[VipConfig, ...]
    priority: int = 100
    address_owner: bool = False
    version: int = 2
    advert_interval: float = 1.0
    preempt: bool = True
    preempt_delay: float = 0.0
    unicast: UnicastConfig | None = None
    authentication: AuthConfig | None = None
    excluded_vips: tuple[VipConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    garp: GarpConfig = field(default_factory=GarpConfig)
    v3_checksum_pseudo_header: bool = True
    use_vmac: str | None = None
    track: TrackConfig = field(default_factory=TrackConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    #: a BFD session to the master: when it goes Down, take over at once (fast peer detection)
    fast_takeover_bfd: str | None = None

    @property
    def family(self) -> int:
        """4 or 6: the family of the advertised VIPs (validation makes them all one)."""
        return self.vips[0].address.version if self.vips else 4

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "interface": self.interface,
            "vrid": self.vrid,
            "priority": self.priority,
            "address_owner": self.address_owner,
            "version": self.version,
            "advert_interval": self.advert_interval,
            "preempt": self.preempt,
            "preempt_delay": self.preempt_delay,
            "virtual_ipaddresses": [vip.to_dict() for vip in self.vips],
            "virtual_ipaddresses_excluded": [vip.to_dict() for vip in self.excluded_vips],
            "virtual_routes": [route.to_dict() for route in self.routes],
            "garp": self.garp.to_dict(),
            "v3_checksum_pseudo_header": self.v3_checksum_pseudo_header,
            "use_vmac": self.use_vmac if self.use_vmac is not None else False,
            "track": self.track.to_dict(),
            "notify": self.notify.to_dict(),
        }
        if self.unicast is not None:
            data["unicast"] = self.unicast.to_dict()
        if self.authentication is not None:
            data["authentication"] = self.authentication.to_dict(redact=redact)
        if self.fast_takeover_bfd is not None:
            data["fast_takeover_bfd"] = self.fast_takeover_bfd
        return data


@dataclass(frozen=True)
class SyncGroupConfig:
    """Instances that change state together."""

    name: str
    members: tuple[str, ...]
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "members": list(self.members), "notify": self.notify.to_dict()}


@dataclass(frozen=True)
class VrrpConfig:
    """VRRP's section: its instances and sync groups (attribute names are the file's keys)."""

    vrrp_instances: tuple[VrrpInstanceConfig, ...] = ()
    vrrp_sync_groups: tuple[SyncGroupConfig, ...] = ()
    #: from ``global``: who notify commands run as, and how they are checked
    script_user: str = "nobody"
    script_security: bool = True

    def instance(self, name: str) -> VrrpInstanceConfig:
        """The instance called ``name``; KeyError names the ones that exist."""
        for inst in self.vrrp_instances:
            if inst.name == name:
                return inst
        known = ", ".join(inst.name for inst in self.vrrp_instances) or "none"
        raise KeyError(f"unknown VRRP instance {name!r}; this config has: {known}")

    @property
    def instance_names(self) -> tuple[str, ...]:
        return tuple(inst.name for inst in self.vrrp_instances)

    def sync_group_of(self, instance: str) -> SyncGroupConfig | None:
        """The sync group ``instance`` belongs to, if any."""
        for group in self.vrrp_sync_groups:
            if instance in group.members:
                return group
        return None

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        return {
            "vrrp_instances": [inst.to_dict(redact=redact) for inst in self.vrrp_instances],
            "vrrp_sync_groups": [group.to_dict() for group in self.vrrp_sync_groups],
        }
