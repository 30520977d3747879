"""What the soak runs: groups of nodes, their instances, configs and detection windows.

Pure data and arithmetic, no I/O: the runner builds the lab from these, and the unit
tests check the windows against RFC 5798 by hand.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BfdSpec",
    "GroupSpec",
    "InstanceSpec",
    "IpvsSpec",
    "NodeSpec",
    "default_groups",
    "master_down_interval",
]


def master_down_interval(version: int, interval: float, priority: int) -> float:
    """RFC 5798 section 6.1 (and RFC 3768 for v2): 3 x Advertisement_Interval + Skew_Time.

    Skew_Time is ((256 - priority) x Master_Adver_Interval) / 256 for v3 and
    (256 - priority) / 256 seconds for v2 (whose interval is whole seconds).
    """
    skew = (256 - priority) / 256 if version == 2 else (256 - priority) * interval / 256
    return 3 * interval + skew


@dataclass(frozen=True)
class InstanceSpec:
    """A VRRP instance every node of a group runs (the priority is the node's)."""

    name: str
    vrid: int
    version: int
    family: int
    interval: float
    vips: tuple[str, ...]  # ADDR/PLEN
    password: str | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(v.split("/")[0] for v in self.vips)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    priority: int
    ipv4: str  # ADDR/PLEN
    ipv6: str
    mac: str


@dataclass(frozen=True)
class BfdSpec:
    """The group's BFD sessions (timers in seconds).

    ``mode`` ``fast_takeover``: every node has a session ``session`` to each other node
    (a pair: one), and its IPv4 instances name it in ``fast_takeover_bfd`` (a backup takes
    over as soon as the session to its master goes Down). ``mode`` ``track``: every node
    has a session ``session`` to an upstream router (``router``, FRR bfdd in its own
    namespace on the segment) and every instance tracks it with weight 0 (``track.bfd``:
    a node whose upstream path dies goes FAULT and gives its VIPs up).
    """

    mode: str  # "fast_takeover" or "track"
    session: str
    interval: float = 0.1
    multiplier: int = 3
    router: NodeSpec | None = None

    @property
    def detection(self) -> float:
        return self.interval * self.multiplier


@dataclass(frozen=True)
class IpvsSpec:
    """An IPVS virtual server on the group's primary VIP, with real servers in their own
    namespaces on the segment (``tests.lab.check_servers``, HTTP on ``port``).

    This host's kernel has no IPVS: the agents run the virtual server with the kernel
    marked unavailable (checkers, quorum, events and the API run; nothing is programmed).
    That is the closest real thing here; the kernel side is tested in the IPVS VM.
    """

    name: str
    port: int
    real_servers: tuple[NodeSpec, ...]
    quorum: int
    delay_loop: float = 0.5
    connect_timeout: float = 1.0

    @property
    def real_server_names(self) -> tuple[str, ...]:
        return tuple(f"{rs.ipv4.split('/')[0]}:{self.port}" for rs in self.real_servers)

    @property
    def detection(self) -> float:
        """The longest a dead real server can look alive: one check period, a timeout."""
        return self.delay_loop + self.connect_timeout


@dataclass(frozen=True)
class GroupSpec:
    """Nodes on one segment (one bridge) running the same instances, and their client.

    ``extra_vip`` is the address a valid reload adds to (and later removes from) the
    first IPv4 instance on every node.
    """

    name: str
    switch: str
    nodes: tuple[NodeSpec, ...]
    client: NodeSpec
    instances: tuple[InstanceSpec, ...]
    extra_vip: str
    #: seconds added to Master_Down_Interval for the detection window: the advert that
    #: resolves two masters needs one interval to arrive, the VIP change a moment more
    margin_s: float = 0.5
    labels: dict[str, str] = field(default_factory=dict)
    bfd: BfdSpec | None = None
    ipvs: IpvsSpec | None = None

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"group {self.name} has no node {name!r}")

    @property
    def primary(self) -> InstanceSpec:
        """The instance whose VIP says who the group's master is (the first one)."""
        return self.instances[0]

    @property
    def extra_instance(self) -> InstanceSpec:
        return next(i for i in self.instances if i.family == 4)

    def window(self, inst: InstanceSpec) -> float:
        """How long two holders (or none) of ``inst``'s VIPs are allowed after a change:
        the longest Master_Down_Interval in the group (its lowest priority) plus one
        advert interval and the margin."""
        lowest = min(n.priority for n in self.nodes)
        return (
            master_down_interval(inst.version, inst.interval, lowest)
            + inst.interval
            + (self.margin_s)
        )

    @property
    def max_window(self) -> float:
        return max(self.window(i) for i in self.instances)

    @property
    def settle_s(self) -> float:
        """After the last injection in the group healed, this long until exactly one node
        must hold each VIP: two windows (a takeover, then a preemption back)."""
        return 2 * self.max_window

    def vip_instance(self, address: str) -> InstanceSpec:
        for inst in self.instances:
            if address in inst.addresses:
                return inst
        if address == self.extra_vip.split("/")[0]:
            return self.extra_instance
        raise KeyError(address)

    def static_addresses(self, node: NodeSpec) -> set[str]:
        return {node.ipv4.split("/")[0], str(ipaddress.ip_interface(node.ipv6).ip)}

    def bfd_peers(self, node: NodeSpec) -> tuple[NodeSpec, ...]:
        """Whom ``node`` runs a BFD session with (none without BFD)."""
        if self.bfd is None:
            return ()
        if self.bfd.mode == "track":
            assert self.bfd.router is not None
            return (self.bfd.router,)
        return tuple(n for n in self.nodes if n.name != node.name)

    def bfd_session_name(self, node: NodeSpec, peer: NodeSpec) -> str:
        assert self.bfd is not None
        if self.bfd.mode == "track" or len(self.nodes) == 2:
            return self.bfd.session
        return f"{self.bfd.session}_{peer.name}"

    def bfd_sessions(self, node: NodeSpec) -> list[dict[str, Any]]:
        bfd = self.bfd
        if bfd is None:
            return []
        return [
            {
                "name": self.bfd_session_name(node, peer),
                "peer": peer.ipv4.split("/")[0],
                "local": node.ipv4.split("/")[0],
                "interface": "eth0",
                "min_tx": bfd.interval,
                "min_rx": bfd.interval,
                "multiplier": bfd.multiplier,
            }
            for peer in self.bfd_peers(node)
        ]

    def virtual_servers(self) -> list[dict[str, Any]]:
        ipvs = self.ipvs
        if ipvs is None:
            return []
        return [
            {
                "name": ipvs.name,
                "address": self.primary.addresses[0],
                "port": ipvs.port,
                "scheduler": "rr",
                "delay_loop": ipvs.delay_loop,
                "warmup": 0,
                "retry": 0,
                "connect_timeout": ipvs.connect_timeout,
                "quorum": ipvs.quorum,
                "real_servers": [
                    {
                        "address": rs.ipv4.split("/")[0],
                        "checks": [{"type": "http", "path": "/", "status_codes": [200]}],
                    }
                    for rs in ipvs.real_servers
                ],
            }
        ]

    def config(self, node: NodeSpec, *, extra_vip: bool = False) -> dict[str, Any]:
        """The node's vigil.yml (as a mapping)."""
        instances = []
        for inst in self.instances:
            vips = list(inst.vips)
            if extra_vip and inst is self.extra_instance:
                vips.append(self.extra_vip)
            item: dict[str, Any] = {
                "name": inst.name,
                "interface": "eth0",
                "vrid": inst.vrid,
                "priority": node.priority,
                "version": inst.version,
                "advert_interval": inst.interval,
                "virtual_ipaddresses": vips,
            }
            if inst.password:
                item["authentication"] = {"type": "pass", "password": inst.password}
            bfd = self.bfd
            if bfd is not None and bfd.mode == "fast_takeover" and inst.family == 4:
                if len(self.nodes) == 2:
                    item["fast_takeover_bfd"] = bfd.session
            elif bfd is not None and bfd.mode == "track":
                item["track"] = {"bfd": [bfd.session]}
            instances.append(item)
        out: dict[str, Any] = {"global": {"router_id": node.name}}
        if self.bfd is not None:
            out["bfd"] = {"sessions": self.bfd_sessions(node)}
        out["vrrp_instances"] = instances
        if self.ipvs is not None:
            out["virtual_servers"] = self.virtual_servers()
        return out


def _node(group: int, name: str, host: int, priority: int) -> NodeSpec:
    return NodeSpec(
        name=name,
        priority=priority,
        ipv4=f"10.{60 + group}.0.{host}/24",
        ipv6=f"fd00:{60 + group}::{host}/64",
        mac=f"02:00:0a:{60 + group:02x}:00:{host:02x}",
    )


def default_groups(interval: float = 0.1) -> tuple[GroupSpec, GroupSpec]:
    """A pair and a three-node group on separate segments with the same VRIDs.

    Both run VI_4 (VRRPv3, IPv4, VRID 51) and VI_6 (VRRPv3, IPv6, VRID 52) at
    ``interval``; the pair also runs VI_2 (VRRPv2 with PASS authentication, VRID 53, 1 s).

    BFD: the pair's nodes run a session to each other (100 ms x 3), named in VI_4's and
    VI_2's ``fast_takeover_bfd``; the trio's nodes each run one to an upstream router
    (FRR bfdd in ``gb``), tracked by every instance (``track.bfd``). IPVS: the trio runs a
    virtual server on its primary VIP with two real servers (``rb1``, ``rb2``) and a quorum
    of 2 (one dead server loses it), with the kernel marked unavailable (no IPVS here).
    """
    pair = GroupSpec(
        name="pair",
        switch="swa",
        nodes=(_node(1, "a1", 11, 150), _node(1, "a2", 12, 100)),
        client=_node(1, "ca", 20, 0),
        instances=(
            InstanceSpec("VI_4", 51, 3, 4, interval, ("10.61.0.100/24",)),
            InstanceSpec("VI_6", 52, 3, 6, interval, ("fd00:61::100/64",)),
            InstanceSpec("VI_2", 53, 2, 4, 1.0, ("10.61.0.102/24",), "soakpass"),
        ),
        extra_vip="10.61.0.101/24",
        bfd=BfdSpec("fast_takeover", "peer"),
    )
    trio = GroupSpec(
        name="trio",
        switch="swb",
        nodes=(_node(2, "b1", 11, 150), _node(2, "b2", 12, 100), _node(2, "b3", 13, 50)),
        client=_node(2, "cb", 20, 0),
        instances=(
            InstanceSpec("VI_4", 51, 3, 4, interval, ("10.62.0.100/24",)),
            InstanceSpec("VI_6", 52, 3, 6, interval, ("fd00:62::100/64",)),
        ),
        extra_vip="10.62.0.101/24",
        bfd=BfdSpec("track", "upstream", router=_node(2, "gb", 254, 0)),
        ipvs=IpvsSpec("web", 80, (_node(2, "rb1", 31, 0), _node(2, "rb2", 32, 0)), quorum=2),
    )
    return pair, trio
