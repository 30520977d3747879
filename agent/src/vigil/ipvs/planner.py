"""Desired IPVS table vs the kernel's: the netlink operations that close the gap. Pure.

Two steps, both without I/O (``agent/tests/test_ipvs_planner.py``):

1. :func:`desired_entries`: one virtual server's config and what the runtime knows now
   (each real server's health, drains, the quorum) -> the IPVS services it stands for
   (one, or a group's) and the destinations each should hold, with their weights.
2. :func:`plan`: desired services vs observed ones -> the minimal list of :class:`Op`:
   nothing for what already matches (an unchanged service is never touched, so its
   connections are never disturbed), ``set`` rather than delete + add for a changed
   service or destination (a weight, a scheduler, a forwarding method), one ``add`` per
   new destination (a real server added to a 1000-server config is one request), and a
   ``delete`` only for what this agent owns and no longer wants: services of other tools
   are never looked at.

Each op says why it is needed (``why``), which is what a drift event reports: "missing",
"weight 5, want 1", "not configured". :func:`apply_op` updates a table as the kernel
would, so the runtime keeps its picture of the kernel without dumping it after each op.

Order inside a service: new destinations first, then changes, then removals, so a swap
(the sorry server in, the real servers out) never leaves the service empty.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from vigil.ipvs.config import Endpoint, Forwarding, VirtualServerConfig
from vigil.ipvs.kernel import Destination, Service, ServiceKey, ServiceState

__all__ = [
    "DestKey",
    "Entry",
    "Op",
    "OpKind",
    "ServerView",
    "apply_op",
    "config_dest_keys",
    "desired_entries",
    "dest_key",
    "destination_for",
    "entries_from_kernel",
    "kernel_port",
    "plan",
    "plan_steps",
    "service_for",
    "service_key",
]

IPAddress = IPv4Address | IPv6Address
DestKey = tuple[IPAddress, int]


@dataclass(frozen=True)
class Entry:
    """One IPVS service and its destinations (desired or observed)."""

    service: Service
    destinations: Mapping[DestKey, Destination] = field(default_factory=dict)

    @property
    def key(self) -> ServiceKey:
        return self.service.key


class OpKind(enum.StrEnum):
    ADD_SERVICE = "add_service"
    SET_SERVICE = "set_service"
    DELETE_SERVICE = "delete_service"
    ADD_DEST = "add_destination"
    SET_DEST = "set_destination"
    DELETE_DEST = "delete_destination"


@dataclass(frozen=True)
class Op:
    """One netlink request; ``str()`` says what it does, ``why`` why it is needed."""

    kind: OpKind
    key: ServiceKey
    service: Service | None = None
    dest: Destination | None = None
    why: str = ""

    def __str__(self) -> str:
        if self.kind is OpKind.ADD_SERVICE:
            return f"add service {self.key}"
        if self.kind is OpKind.SET_SERVICE:
            return f"change service {self.key}"
        if self.kind is OpKind.DELETE_SERVICE:
            return f"delete service {self.key}"
        assert self.dest is not None
        d = self.dest
        if self.kind is OpKind.ADD_DEST:
            return f"add {d} ({d.forward}, weight {d.weight}) to {self.key}"
        if self.kind is OpKind.SET_DEST:
            return f"set {d} of {self.key} ({d.forward}, weight {d.weight})"
        return f"delete {d} from {self.key}"

    def describe(self) -> str:
        return f"{self}: {self.why}" if self.why else str(self)

    @property
    def is_service(self) -> bool:
        return self.kind in (OpKind.ADD_SERVICE, OpKind.SET_SERVICE, OpKind.DELETE_SERVICE)


# ---------------------------------------------------------------------------- desired


@dataclass(frozen=True)
class ServerView:
    """What IPVS should hold for one real server now (health and drain already folded)."""

    present: bool
    weight: int


def service_key(ep: Endpoint) -> ServiceKey:
    if ep.fwmark is not None:
        family: Literal[4, 6] = 6 if ep.family == 6 else 4
        return ServiceKey.mark(ep.fwmark, family)
    assert ep.protocol is not None and ep.address is not None
    return ServiceKey.inet(ep.protocol, ep.address, ep.port or 0)  # type: ignore[arg-type]


def service_for(vs: VirtualServerConfig, ep: Endpoint) -> Service:
    """The kernel's view of one of the virtual server's services (normalized as parsed)."""
    key = service_key(ep)
    persistence = vs.persistence
    full = 32 if key.family == 4 else 128
    prefix = None
    if persistence is not None and persistence.prefix not in (None, full):
        prefix = persistence.prefix
    return Service(
        key=key,
        scheduler=vs.scheduler,
        sched_flags=frozenset(vs.scheduler_flags),
        one_packet=vs.one_packet,
        persistence_timeout=0 if persistence is None else persistence.timeout,
        persistence_prefix=prefix,
        pe_name=None if persistence is None else persistence.engine,
    )


def destination_for(
    address: IPAddress,
    port: int,
    weight: int,
    forwarding: Forwarding,
    upper: int = 0,
    lower: int = 0,
) -> Destination:
    tun = forwarding.method == "tun"
    return Destination(
        addr=address,
        port=port,
        weight=weight,
        forward=forwarding.method,  # type: ignore[arg-type]
        tunnel_type=forwarding.tunnel.type if tun else "ipip",  # type: ignore[arg-type]
        tunnel_port=forwarding.tunnel.port if tun else 0,
        tunnel_csum=forwarding.tunnel.checksum if tun else "nocsum",  # type: ignore[arg-type]
        upper_threshold=upper,
        lower_threshold=lower,
    )


def kernel_port(key: ServiceKey, port: int, method: str) -> int:
    """The port a destination of service ``key`` is programmed with.

    Under NAT the kernel rewrites the destination port, so it is the real server's own.
    Under direct routing and tunnelling the packet reaches the real server as the client
    sent it, and the destination carries the service's port: 0 for a firewall mark (what
    keepalived and ipvsadm program, and what ``ipvsadm -Ln`` then shows).
    """
    return port if method == "nat" else (key.port or 0)


def dest_key(key: ServiceKey, address: IPAddress, port: int, forwarding: Forwarding) -> DestKey:
    """Where a configured real server (or sorry server) sits in service ``key``'s pool."""
    return (address, kernel_port(key, port, forwarding.method))


def config_dest_keys(vs: VirtualServerConfig, key: ServiceKey) -> dict[DestKey, DestKey]:
    """Service ``key``'s destination keys back to the configured (address, port) of each
    real server and the sorry server (they differ under DR and tunnelling)."""
    out: dict[DestKey, DestKey] = {}
    sorry = vs.sorry_server
    if sorry is not None:
        out[dest_key(key, sorry.address, sorry.port, sorry.forwarding)] = (
            sorry.address,
            sorry.port,
        )
    for rs in vs.real_servers:
        out[dest_key(key, rs.address, rs.port, rs.forwarding)] = (rs.address, rs.port)
    return out


def desired_pool(
    vs: VirtualServerConfig, servers: Mapping[str, ServerView], quorum_up: bool
) -> dict[DestKey, Destination]:
    """The destinations every service of ``vs`` should hold, by configured (address, port)
    (each service's own keys and ports: :func:`desired_entries`).

    ``servers`` maps a real server's label to what it should be; a real server without a
    view is not in IPVS. Below quorum, with a sorry server, every real server is taken
    out (kept with weight 0 under ``inhibit_on_failure``) and the sorry server serves
    (keepalived's rule); without a sorry server, quorum changes nothing here.
    """
    pool: dict[DestKey, Destination] = {}
    sorry = vs.sorry_server
    sorry_active = sorry is not None and not quorum_up
    for rs in vs.real_servers:
        view = servers.get(rs.label)
        if view is None:
            continue
        present, weight = view.present, view.weight
        if sorry_active:
            present, weight = rs.inhibit_on_failure, 0
        if not present:
            continue
        pool[(rs.address, rs.port)] = destination_for(
            rs.address, rs.port, weight, rs.forwarding, rs.upper_threshold, rs.lower_threshold
        )
    if sorry is not None and (sorry_active or sorry.inhibit):
        key = (sorry.address, sorry.port)
        if key not in pool:
            pool[key] = destination_for(
                sorry.address, sorry.port, 1 if sorry_active else 0, sorry.forwarding
            )
    return pool


def desired_entries(
    vs: VirtualServerConfig, servers: Mapping[str, ServerView], quorum_up: bool
) -> dict[ServiceKey, Entry]:
    """Every IPVS service ``vs`` stands for, each with the same pool (its DR and tunnelled
    destinations on the service's port, :func:`kernel_port`)."""
    pool = desired_pool(vs, servers, quorum_up)
    out: dict[ServiceKey, Entry] = {}
    for ep in vs.services:
        service = service_for(vs, ep)
        svc_port = service.key.port or 0
        dests: dict[DestKey, Destination] = {}
        for dest in pool.values():
            if dest.forward != "nat" and dest.port != svc_port:
                dest = replace(dest, port=svc_port)
            dests.setdefault((dest.addr, dest.port), dest)
        out[service.key] = Entry(service, dests)
    return out


def live_weight(vs: VirtualServerConfig, servers: Mapping[str, ServerView]) -> int:
    """What counts for the quorum: the weights the real servers would have in IPVS."""
    return sum(v.weight for rs in vs.real_servers if (v := servers.get(rs.label)) and v.present)


# ---------------------------------------------------------------------------- observed


def entries_from_kernel(states: Iterable[ServiceState]) -> dict[ServiceKey, Entry]:
    """The kernel's table (``IpvsKernel.services()``) as entries."""
    return {
        st.service.key: Entry(
            st.service,
            {(d.destination.addr, d.destination.port): d.destination for d in st.destinations},
        )
        for st in states
    }


# ---------------------------------------------------------------------------- plan


def _service_diff(want: Service, have: Service) -> str:
    parts = []
    for attr in ("scheduler", "persistence_timeout", "persistence_prefix", "pe_name"):
        if getattr(want, attr) != getattr(have, attr):
            parts.append(f"{attr} {getattr(have, attr)}, want {getattr(want, attr)}")
    if want.sched_flags != have.sched_flags:
        parts.append(
            f"flags {sorted(have.sched_flags) or 'none'}, want {sorted(want.sched_flags) or 'none'}"
        )
    if want.one_packet != have.one_packet:
        parts.append(f"one_packet {have.one_packet}, want {want.one_packet}")
    return "; ".join(parts) or "differs"


def _dest_diff(want: Destination, have: Destination) -> str:
    parts = []
    for attr in (
        "weight",
        "forward",
        "tunnel_type",
        "tunnel_port",
        "tunnel_csum",
        "upper_threshold",
        "lower_threshold",
    ):
        if getattr(want, attr) != getattr(have, attr):
            parts.append(f"{attr} {getattr(have, attr)}, want {getattr(want, attr)}")
    return "; ".join(parts) or "differs"


def plan_entry(want: Entry, have: Entry | None) -> list[Op]:
    """The ops that make one service (and its destinations) what ``want`` says."""
    key = want.key
    if have is None:
        ops = [Op(OpKind.ADD_SERVICE, key, service=want.service, why="missing")]
        ops += [Op(OpKind.ADD_DEST, key, dest=d, why="missing") for d in want.destinations.values()]
        return ops
    ops = []
    if want.service != have.service:
        ops.append(
            Op(
                OpKind.SET_SERVICE,
                key,
                service=want.service,
                why=_service_diff(want.service, have.service),
            )
        )
    adds, sets, deletes = [], [], []
    for dkey, dest in want.destinations.items():
        current = have.destinations.get(dkey)
        if current is None:
            adds.append(Op(OpKind.ADD_DEST, key, dest=dest, why="missing"))
        elif current != dest:
            sets.append(Op(OpKind.SET_DEST, key, dest=dest, why=_dest_diff(dest, current)))
    for dkey, dest in have.destinations.items():
        if dkey not in want.destinations:
            deletes.append(Op(OpKind.DELETE_DEST, key, dest=dest, why="not wanted"))
    return ops + adds + sets + deletes


def plan(
    desired: Mapping[ServiceKey, Entry],
    observed: Mapping[ServiceKey, Entry],
    owned: Collection[ServiceKey] = (),
) -> list[Op]:
    """Every op that brings ``observed`` to ``desired``.

    Services in ``observed`` that are neither desired nor ``owned`` belong to someone
    else and are left alone; owned ones that are no longer desired are deleted (with
    their destinations, by the kernel), after everything else.
    """
    ops: list[Op] = []
    for _ in plan_steps(desired, observed, owned, ops):
        pass
    return ops


def plan_steps(
    desired: Mapping[ServiceKey, Entry],
    observed: Mapping[ServiceKey, Entry],
    owned: Collection[ServiceKey],
    ops: list[Op],
) -> Iterator[None]:
    """``plan`` into ``ops``, yielding after each service (the caller may hand the event
    loop back there: a thousand services take a while)."""
    for key, want in desired.items():
        ops += plan_entry(want, observed.get(key))
        yield None
    for key in observed:
        if key not in desired and key in owned:
            ops.append(Op(OpKind.DELETE_SERVICE, key, why="not configured"))


def apply_op(table: dict[ServiceKey, Entry], op: Op) -> None:
    """Update ``table`` as the kernel does when ``op`` succeeds."""
    entry = table.get(op.key)
    if op.kind is OpKind.ADD_SERVICE or op.kind is OpKind.SET_SERVICE:
        assert op.service is not None
        table[op.key] = Entry(op.service, dict(entry.destinations) if entry else {})
    elif op.kind is OpKind.DELETE_SERVICE:
        table.pop(op.key, None)
    elif entry is not None:
        assert op.dest is not None
        dests = dict(entry.destinations)
        dkey = (op.dest.addr, op.dest.port)
        if op.kind is OpKind.DELETE_DEST:
            dests.pop(dkey, None)
        else:
            dests[dkey] = op.dest
        table[op.key] = Entry(entry.service, dests)
