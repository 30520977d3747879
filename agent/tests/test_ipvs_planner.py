"""The IPVS planner and the quorum machine: pure, no kernel, no clock."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from vigil.ipvs.config import IpvsConfig, VirtualServerConfig
from vigil.ipvs.kernel import Destination, Service, ServiceKey
from vigil.ipvs.planner import (
    Entry,
    Op,
    OpKind,
    ServerView,
    apply_op,
    config_dest_keys,
    desired_entries,
    desired_pool,
    live_weight,
    plan,
)
from vigil.ipvs.quorum import IllegalTransition, Quorum, QuorumState
from vigil.subsystems import validate_data

VIP = "10.62.0.100"
WEB = ServiceKey.inet("tcp", VIP, 80)


def config(**vs: Any) -> IpvsConfig:
    base: dict[str, Any] = {
        "name": "web",
        "address": VIP,
        "port": 80,
        "scheduler": "rr",
        "real_servers": [{"address": "10.62.1.11"}, {"address": "10.62.1.12", "weight": 2}],
    }
    base.update(vs)
    model: IpvsConfig = validate_data({"virtual_servers": [base]}, check_files=False).section(
        "ipvs"
    )
    return model


def web(**vs: Any) -> VirtualServerConfig:
    return config(**vs).virtual_servers[0]


def alive(vs: VirtualServerConfig, **weights: int) -> dict[str, ServerView]:
    """Every real server alive with its configured weight, unless overridden by last octet."""
    out = {}
    for rs in vs.real_servers:
        octet = f"rs{str(rs.address).rsplit('.', 1)[1]}"
        weight = weights.get(octet, rs.weight)
        out[rs.label] = ServerView(present=weight >= 0, weight=max(weight, 0))
    return out


def table(entries: dict[ServiceKey, Entry]) -> dict[ServiceKey, Entry]:
    return dict(entries)


def kinds(ops: list[Op]) -> list[str]:
    return [f"{op.kind}:{op.dest.addr if op.dest else op.key}" for op in ops]


# ---------------------------------------------------------------------------- desired


def test_desired_entry_has_every_live_real_server_with_its_weight() -> None:
    vs = web()
    entries = desired_entries(vs, alive(vs), quorum_up=True)
    entry = entries[WEB]
    assert entry.service == Service(WEB, "rr")
    assert {str(a): d.weight for (a, _), d in entry.destinations.items()} == {
        "10.62.1.11": 1,
        "10.62.1.12": 2,
    }
    assert all(d.forward == "nat" for d in entry.destinations.values())


def test_a_dead_server_leaves_the_pool_unless_inhibited() -> None:
    vs = web()
    views = alive(vs, rs11=-1)  # -1: not present
    assert [str(a) for a, _ in desired_entries(vs, views, True)[WEB].destinations] == ["10.62.1.12"]
    vs = web(inhibit_on_failure=True)
    views = {"10.62.1.11:80": ServerView(True, 0), "10.62.1.12:80": ServerView(True, 2)}
    dests = desired_entries(vs, views, True)[WEB].destinations
    assert dests[(ip_address("10.62.1.11"), 80)].weight == 0


def test_below_quorum_the_sorry_server_replaces_every_real_server() -> None:
    vs = web(sorry_server={"address": "10.62.1.99", "port": 8080})
    views = alive(vs)
    down = desired_entries(vs, views, quorum_up=False)[WEB].destinations
    assert list(down) == [(ip_address("10.62.1.99"), 8080)]
    assert down[(ip_address("10.62.1.99"), 8080)].weight == 1
    up = desired_entries(vs, views, quorum_up=True)[WEB].destinations
    assert (ip_address("10.62.1.99"), 8080) not in up and len(up) == 2


def test_sorry_server_inhibit_keeps_it_at_weight_zero_while_not_needed() -> None:
    vs = web(sorry_server={"address": "10.62.1.99", "inhibit": True}, inhibit_on_failure=True)
    up = desired_entries(vs, alive(vs), quorum_up=True)[WEB].destinations
    assert up[(ip_address("10.62.1.99"), 80)].weight == 0
    down = desired_entries(vs, alive(vs), quorum_up=False)[WEB].destinations
    # inhibited real servers stay with weight 0; the sorry server takes the traffic
    assert {str(a): d.weight for (a, _), d in down.items()} == {
        "10.62.1.11": 0,
        "10.62.1.12": 0,
        "10.62.1.99": 1,
    }


def test_group_virtual_server_stands_for_every_member_with_the_same_pool() -> None:
    data = {
        "virtual_server_groups": [
            {"name": "g", "members": [{"address": "10.62.0.100-101", "port": 80}, {"fwmark": 7}]}
        ],
        "virtual_servers": [
            {
                "group": "g",
                "forwarding": "dr",
                "real_servers": [{"address": "10.62.1.11", "port": 80}],
            }
        ],
    }
    vs = validate_data(data, check_files=False).section("ipvs").virtual_servers[0]
    entries = desired_entries(vs, alive(vs), True)
    assert [str(k) for k in entries] == [
        "tcp 10.62.0.100:80",
        "tcp 10.62.0.101:80",
        "fwmark 7 (IPv4)",
    ]
    assert all(len(e.destinations) == 1 for e in entries.values())
    assert all(d.forward == "dr" for e in entries.values() for d in e.destinations.values())


def test_dr_and_tunnel_destinations_sit_on_the_service_port_as_keepalived_programs_them() -> None:
    # keepalived and ipvsadm program a DR or tunnelled destination with the service's
    # port: 80 for tcp VIP:80, 0 for a firewall mark; a NAT destination keeps its own port
    data = {
        "virtual_server_groups": [
            {"name": "g", "members": [{"address": "10.62.0.100", "port": 80}, {"fwmark": 7}]}
        ],
        "virtual_servers": [
            {
                "group": "g",
                "forwarding": "dr",
                "real_servers": [
                    {"address": "10.62.1.11", "port": 8080},
                    {"address": "10.62.1.12", "port": 8080, "forwarding": "nat"},
                ],
            }
        ],
    }
    vs = validate_data(data, check_files=False).section("ipvs").virtual_servers[0]
    entries = desired_entries(vs, alive(vs), True)
    dr, nat = ip_address("10.62.1.11"), ip_address("10.62.1.12")
    by_port = {str(k): sorted((str(a), p) for a, p in e.destinations) for k, e in entries.items()}
    assert by_port == {
        "tcp 10.62.0.100:80": [("10.62.1.11", 80), ("10.62.1.12", 8080)],
        "fwmark 7 (IPv4)": [("10.62.1.11", 0), ("10.62.1.12", 8080)],
    }
    for key, entry in entries.items():
        assert all((d.addr, d.port) == k for k, d in entry.destinations.items())
        back = config_dest_keys(vs, key)
        assert {back[k] for k in entry.destinations} == {(dr, 8080), (nat, 8080)}
    # the pool the API and drain read stays keyed by the configured port
    assert set(desired_pool(vs, alive(vs), True)) == {(dr, 8080), (nat, 8080)}


def test_a_kernel_table_with_the_service_port_is_no_drift() -> None:
    vs = (
        validate_data(
            {
                "virtual_servers": [
                    {
                        "fwmark": 62,
                        "forwarding": "dr",
                        "real_servers": [{"address": "10.62.1.11", "port": 80}],
                    }
                ]
            },
            check_files=False,
        )
        .section("ipvs")
        .virtual_servers[0]
    )
    want = desired_entries(vs, alive(vs), True)
    (key,) = want
    (dest,) = want[key].destinations.values()
    assert dest.port == 0
    kernel = {key: Entry(want[key].service, {(dest.addr, 0): dest})}
    assert plan(want, kernel, owned=set(kernel)) == []
    # a table an older vigil left, on the configured port, is corrected in place
    old = Destination(addr=dest.addr, port=80, weight=dest.weight, forward="dr")
    ops = plan(want, {key: Entry(want[key].service, {(dest.addr, 80): old})}, owned={key})
    assert sorted(op.kind.name for op in ops) == ["ADD_DEST", "DELETE_DEST"]


def test_service_attributes_follow_the_config() -> None:
    vs = web(
        scheduler="sh",
        scheduler_flags=["sh-port", "sh-fallback"],
        persistence={"timeout": 300, "granularity": "255.255.255.0"},
        protocol="udp",
        one_packet=True,
    )
    svc = desired_entries(vs, alive(vs), True)[ServiceKey.inet("udp", VIP, 80)].service
    assert svc.sched_flags == {"sh-port", "sh-fallback"}
    assert (svc.persistence_timeout, svc.persistence_prefix, svc.one_packet) == (300, 24, True)


def test_tunnel_forwarding_reaches_the_destination() -> None:
    vs = web(
        forwarding="tun",
        tunnel={"type": "gue", "port": 6080, "checksum": "csum"},
        real_servers=[{"address": "10.62.1.11"}, {"address": "10.62.1.12", "forwarding": "dr"}],
    )
    dests = desired_entries(vs, alive(vs), True)[WEB].destinations
    gue = dests[(ip_address("10.62.1.11"), 80)]
    assert (gue.forward, gue.tunnel_type, gue.tunnel_port, gue.tunnel_csum) == (
        "tun",
        "gue",
        6080,
        "csum",
    )
    assert dests[(ip_address("10.62.1.12"), 80)].forward == "dr"


def test_live_weight_counts_present_weights_only() -> None:
    vs = web()
    assert live_weight(vs, alive(vs)) == 3
    assert live_weight(vs, alive(vs, rs12=-1)) == 1
    assert live_weight(vs, alive(vs, rs12=0)) == 1  # drained: present with weight 0


# ---------------------------------------------------------------------------- plan


def test_an_empty_kernel_gets_the_service_then_its_destinations() -> None:
    vs = web()
    ops = plan(desired_entries(vs, alive(vs), True), {})
    assert kinds(ops) == [
        f"add_service:{WEB}",
        "add_destination:10.62.1.11",
        "add_destination:10.62.1.12",
    ]
    assert all(op.why == "missing" for op in ops)


def test_a_matching_table_needs_nothing() -> None:
    vs = web()
    desired = desired_entries(vs, alive(vs), True)
    assert plan(desired, table(desired)) == []


def test_one_new_real_server_in_a_thousand_is_one_op() -> None:
    servers = [{"address": f"10.62.{1 + i // 250}.{1 + i % 250}"} for i in range(1000)]
    before = web(real_servers=servers)
    after = web(real_servers=[*servers, {"address": "10.62.9.9"}])
    observed = desired_entries(before, alive(before), True)
    ops = plan(desired_entries(after, alive(after), True), observed)
    assert kinds(ops) == ["add_destination:10.62.9.9"]


def test_changes_are_set_in_place_never_deleted_and_added() -> None:
    vs = web()
    observed = desired_entries(vs, alive(vs), True)
    changed = web(scheduler="wrr", real_servers=[{"address": "10.62.1.11", "weight": 5}])
    ops = plan(desired_entries(changed, alive(changed), True), observed)
    assert kinds(ops) == [
        f"set_service:{WEB}",
        "set_destination:10.62.1.11",
        "delete_destination:10.62.1.12",
    ]
    assert ops[0].why == "scheduler rr, want wrr"
    assert ops[1].why == "weight 1, want 5"
    assert "weight 5" in str(ops[1])


def test_adds_come_before_deletes_so_a_service_is_never_empty() -> None:
    vs = web(sorry_server="10.62.1.99")
    observed = desired_entries(vs, alive(vs), True)
    ops = plan(desired_entries(vs, alive(vs), False), observed)
    assert kinds(ops) == [
        "add_destination:10.62.1.99",
        "delete_destination:10.62.1.11",
        "delete_destination:10.62.1.12",
    ]


def test_services_of_others_are_left_alone_and_owned_leftovers_deleted() -> None:
    vs = web()
    desired = desired_entries(vs, alive(vs), True)
    theirs = ServiceKey.inet("tcp", "10.9.9.9", 22)
    ours_old = ServiceKey.inet("tcp", VIP, 8080)
    observed = {
        **desired,
        theirs: Entry(Service(theirs, "rr"), {}),
        ours_old: Entry(Service(ours_old, "rr"), {}),
    }
    ops = plan(desired, observed, owned={WEB, ours_old})
    assert [(op.kind, op.key) for op in ops] == [(OpKind.DELETE_SERVICE, ours_old)]
    assert ops[0].why == "not configured"


def test_drift_is_reported_and_corrected() -> None:
    """``ipvsadm -C`` and an edited weight, as the planner sees them."""
    vs = web()
    desired = desired_entries(vs, alive(vs), True)
    assert kinds(plan(desired, {})) == [
        f"add_service:{WEB}",
        "add_destination:10.62.1.11",
        "add_destination:10.62.1.12",
    ]
    edited = dict(desired)
    entry = edited[WEB]
    rs = (ip_address("10.62.1.12"), 80)
    dests = dict(entry.destinations)
    dests[rs] = Destination(ip_address("10.62.1.12"), 80, weight=9)
    edited[WEB] = Entry(entry.service, dests)
    (op,) = plan(desired, edited)
    assert op.kind is OpKind.SET_DEST and op.why == "weight 9, want 2"


def test_apply_op_follows_the_kernel() -> None:
    vs = web()
    desired = desired_entries(vs, alive(vs), True)
    t: dict[ServiceKey, Entry] = {}
    for op in plan(desired, t):
        apply_op(t, op)
    assert t == desired
    changed = web(real_servers=[{"address": "10.62.1.11", "weight": 4}])
    want = desired_entries(changed, alive(changed), True)
    for op in plan(want, t, owned={WEB}):
        apply_op(t, op)
    assert t == want
    for op in plan({}, t, owned={WEB}):
        apply_op(t, op)
    assert t == {}


# ---------------------------------------------------------------------------- quorum


def test_quorum_without_hysteresis() -> None:
    q = Quorum("web", 2)
    assert q.update(3) is None and q.up
    change = q.update(1)
    assert change is not None and change.new is QuorumState.DOWN
    assert str(change) == "(web) quorum UP -> DOWN: live weight 1 < quorum 2"
    assert q.update(1) is None
    change = q.update(2)
    assert change is not None and change.up
    assert str(change) == "(web) quorum DOWN -> UP: live weight 2 >= quorum 2"


def test_quorum_hysteresis_damps_flaps() -> None:
    q = Quorum("web", 3, hysteresis=1)
    assert q.update(2) is None  # 2 is not below 3 - 1
    change = q.update(1)
    assert change is not None and "live weight 1 < 2 (quorum 3 - hysteresis 1)" in str(change)
    assert q.update(3) is None  # not yet 3 + 1
    change = q.update(4)
    assert change is not None and change.up


def test_quorum_zero_weight_is_always_lost_and_quorum_zero_never() -> None:
    q = Quorum("web", 1, hysteresis=0)
    assert q.update(0) is not None and not q.up
    never = Quorum("x", 0)
    assert never.update(0) is None and never.up


def test_quorum_reconfigure_re_evaluates() -> None:
    q = Quorum("web", 1)
    q.update(2)
    change = q.configure(3, 0)
    assert change is not None and not change.up


def test_quorum_transition_table_is_enforced() -> None:
    q = Quorum("web", 1)
    with pytest.raises(IllegalTransition):
        q._go(QuorumState.UP, "up again")
