# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vigil.ha.agent_config on the controller: rendering, the checks across nodes, the YAML.

These run the real agent schema (vigil.config from the collection's agent/ sources) on
plain data; no Ansible run, no host.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible_collections.vigil.ha.plugins.action import agent_config as ac

VCONF = ac.import_vigil_config()


def facts(iface: str, address: str, netmask: str = "255.255.255.0") -> dict[str, Any]:
    """The shape of ansible_facts for one host with one IPv4 interface (the default one)."""
    return {
        "interfaces": ["lo", iface],
        "default_ipv4": {"interface": iface, "address": address},
        iface.replace("-", "_"): {
            "device": iface,
            "ipv4": {"address": address, "netmask": netmask},
            "ipv6": [
                {
                    "address": "fd00:99::" + address.rsplit(".", 1)[1],
                    "prefix": "64",
                    "scope": "global",
                }
            ],
        },
    }


def cluster(**inst: Any) -> dict[str, Any]:
    base = {"name": "VI_1", "vrid": 51, "virtual_ipaddresses": ["10.0.0.100/24"]}
    base.update(inst)
    return {"global": {"vrrp_version": 3}, "vrrp_instances": [base]}


def pair(
    node1: dict[str, Any] | None = None,
    node2: dict[str, Any] | None = None,
    with_facts: bool = True,
) -> list[ac.HostInput]:
    return [
        ac.HostInput("lb1", node1 or {}, facts("eth0", "10.0.0.11") if with_facts else {}),
        ac.HostInput("lb2", node2 or {}, facts("eth0", "10.0.0.12") if with_facts else {}),
    ]


def render(clu: dict[str, Any], hosts: list[ac.HostInput], **kw: Any) -> dict[str, Any]:
    renderer = ac.ClusterRenderer(clu, hosts, **kw)
    out = renderer.render()
    assert renderer.problems == []
    return out


def problems(clu: dict[str, Any], hosts: list[ac.HostInput]) -> list[str]:
    renderer = ac.ClusterRenderer(clu, hosts)
    rendered = renderer.render()
    if renderer.problems:
        return [str(p) for p in renderer.problems]
    return [str(p) for p in ac.GroupChecker(VCONF, rendered, hosts).run()]


# ---------------------------------------------------------------------------- rendering


def test_priorities_follow_host_order_and_router_ids_the_host_names() -> None:
    hosts = [*pair(), ac.HostInput("lb3", {}, facts("eth0", "10.0.0.13"))]
    out = render(cluster(), hosts)
    assert [out[h]["vrrp_instances"][0]["priority"] for h in ("lb1", "lb2", "lb3")] == [
        150,
        140,
        130,
    ]
    assert [out[h]["global"]["router_id"] for h in ("lb1", "lb2", "lb3")] == ["lb1", "lb2", "lb3"]
    assert out["lb1"]["global"]["vrrp_version"] == 3


def test_priority_base_and_step_are_options() -> None:
    out = render(cluster(), pair(), priority_base=200, priority_step=50)
    assert [out[h]["vrrp_instances"][0]["priority"] for h in ("lb1", "lb2")] == [200, 150]


def test_host_variables_override_priorities_per_host_and_per_instance() -> None:
    clu = cluster()
    clu["vrrp_instances"].append(
        {"name": "VI_2", "vrid": 52, "virtual_ipaddresses": ["10.0.0.101/24"]}
    )
    out = render(clu, pair({"priority": 90}, {"instances": {"VI_2": {"priority": 200}}}))
    assert [i["priority"] for i in out["lb1"]["vrrp_instances"]] == [90, 90]
    assert [i["priority"] for i in out["lb2"]["vrrp_instances"]] == [140, 200]


def test_interface_from_variables_else_from_the_default_route_facts() -> None:
    hosts = [
        ac.HostInput("lb1", {"interface": "ens3"}, {}),
        ac.HostInput("lb2", {}, facts("eth-lab", "10.0.0.12")),
    ]
    out = render(cluster(), hosts)
    assert out["lb1"]["vrrp_instances"][0]["interface"] == "ens3"
    assert out["lb2"]["vrrp_instances"][0]["interface"] == "eth-lab"


def test_missing_interface_is_left_to_the_schema_which_names_the_host() -> None:
    found = problems(cluster(), pair(with_facts=False))
    assert "host lb1: vrrp_instances[0].interface: required key missing" in found[0]


def test_unicast_peers_are_the_other_members_addresses_from_facts() -> None:
    hosts = [*pair(), ac.HostInput("lb3", {}, facts("eth0", "10.0.0.13"))]
    out = render(cluster(unicast=True), hosts)
    uni = {h: out[h]["vrrp_instances"][0]["unicast"] for h in out}
    assert uni["lb1"] == {"source": "10.0.0.11", "peers": ["10.0.0.12", "10.0.0.13"]}
    assert uni["lb2"] == {"source": "10.0.0.12", "peers": ["10.0.0.11", "10.0.0.13"]}
    assert uni["lb3"]["peers"] == ["10.0.0.11", "10.0.0.12"]


def test_unicast_addresses_from_variables_win_and_ipv6_uses_address6() -> None:
    clu = cluster(unicast=True)
    clu["vrrp_instances"].append(
        {"name": "VI_6", "vrid": 52, "unicast": {}, "virtual_ipaddresses": ["fd00:99::100/64"]}
    )
    hosts = pair({"address": "10.0.0.21", "address6": "fd00:99::21"}, {})
    out = render(clu, hosts)
    assert out["lb1"]["vrrp_instances"][0]["unicast"] == {
        "source": "10.0.0.21",
        "peers": ["10.0.0.12"],
    }
    assert out["lb2"]["vrrp_instances"][1]["unicast"] == {
        "source": "fd00:99::12",
        "peers": ["fd00:99::21"],
    }


def test_unicast_without_an_address_names_the_host_and_the_variable() -> None:
    hosts = pair({"interface": "eth0"}, {"interface": "eth0"}, with_facts=False)
    found = problems(cluster(unicast=True), hosts)
    assert found[0].startswith("host lb1: vrrp_instances[0].unicast.source: VI_1: unicast needs")
    assert "set vigil_node.address" in found[0]


def test_multicast_instances_carry_no_unicast_key() -> None:
    out = render(cluster(unicast=False), pair())
    assert "unicast" not in out["lb1"]["vrrp_instances"][0]


def test_unknown_node_keys_and_instances_are_named() -> None:
    found = problems(cluster(), pair({"prio": 1}, {"instances": {"VI_9": {"priority": 1}}}))
    assert found == [
        "host lb1: vigil_node.prio: unknown key; use one of router_id, priority, interface, "
        "address, address6, instances, global",
        "host lb2: vigil_node.instances.VI_9: no instance 'VI_9' in the cluster; it has: VI_1",
    ]


def test_malformed_cluster_and_node_parts_are_named_not_crashed_on() -> None:
    clu = dict(cluster(), **{"global": ["vrrp_version", 3]})
    found = problems(clu, pair({"instances": ["VI_1"]}, {}))
    assert found == [
        "host lb1: vigil_node.instances: must be a mapping of instance name -> instance keys "
        "to override",
        "host lb1: cluster.global: must be a mapping of global settings",
        "host lb2: cluster.global: must be a mapping of global settings",
    ]


def test_rendered_configs_validate_with_the_agent_schema() -> None:
    out = render(cluster(unicast=True, advert_interval=0.1), pair())
    assert ac.GroupChecker(VCONF, out, pair()).run() == []
    for data in out.values():
        VCONF.validate_data(yaml.safe_load(ac.dump_yaml(data)), check_files=False)


# ---------------------------------------------------------------------------- the checks


def test_schema_errors_name_the_host_and_the_field() -> None:
    found = problems(cluster(vrid=300), pair())
    assert "host lb1: vrrp_instances[0].vrid: must be at most 255" in found
    assert "host lb2: vrrp_instances[0].vrid: must be at most 255" in found


def test_vips_that_differ_between_nodes_name_the_host_and_both_values() -> None:
    hosts = pair({}, {"instances": {"VI_1": {"virtual_ipaddresses": ["10.0.0.101/24"]}}})
    found = problems(cluster(), hosts)
    assert found == [
        "host lb2: vrrp_instances[0].virtual_ipaddresses: VI_1: virtual_ipaddresses is "
        "[10.0.0.101/24] here but [10.0.0.100/24] on lb1; the nodes must advertise the same VIPs"
    ]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"vrid": 52}, "vrid"),
        ({"version": 2, "advert_interval": 1}, "version"),
        ({"advert_interval": 2}, "advert_interval"),
    ],
)
def test_vrid_version_and_interval_must_match(override: dict[str, Any], field: str) -> None:
    found = problems(cluster(advert_interval=1), pair({}, {"instances": {"VI_1": override}}))
    assert any(
        f.startswith(f"host lb2: vrrp_instances[0].{field}: VI_1: {field} is") for f in found
    )


def test_authentication_must_match_and_is_never_shown() -> None:
    clu = cluster(version=2, authentication={"type": "pass", "password": "secret1"})
    hosts = pair(
        {}, {"instances": {"VI_1": {"authentication": {"type": "pass", "password": "secret2"}}}}
    )
    found = problems(clu, hosts)
    assert found[0].startswith("host lb2: vrrp_instances[0].authentication: VI_1:")
    assert "secret" not in "\n".join(found)


def test_a_priority_tie_is_refused_on_the_second_node() -> None:
    found = problems(cluster(), pair({"priority": 120}, {"priority": 120}))
    assert found == [
        "host lb2: vrrp_instances[0].priority: VI_1 (VRID 51): priority 120 here and on lb1; "
        "every node of a VRID needs its own priority so that exactly one is the highest (set "
        "vigil_node.priority or instances.NAME.priority, or leave it out to use host order)"
    ]


def test_a_duplicate_vrid_on_one_node_is_a_schema_error_naming_the_host() -> None:
    clu = cluster()
    clu["vrrp_instances"].append(
        {"name": "VI_2", "vrid": 51, "virtual_ipaddresses": ["10.0.0.101/24"]}
    )
    found = problems(clu, pair())
    assert (
        "host lb1: vrrp_instances[1].vrid: VRID 51 is already used on eth0 for IPv4 by "
        "vrrp_instances[0] (VI_1); pick another VRID"
    ) in found


def test_a_duplicate_vrid_on_one_segment_across_interfaces_is_refused() -> None:
    """Two interfaces in one subnet (facts) are one segment, whatever their names."""
    clu = cluster()
    clu["vrrp_instances"].append(
        {"name": "VI_2", "vrid": 51, "interface": "eth1", "virtual_ipaddresses": ["10.0.0.101/24"]}
    )
    hosts = pair()
    for host in hosts:
        host.facts["eth1"] = {
            "device": "eth1",
            "ipv4": {"address": "10.0.0.50", "netmask": "255.255.255.0"},
        }
    found = problems(clu, hosts)
    assert found[0] == (
        "host lb1: vrrp_instances[1].vrid: VI_2: VRID 51 (IPv4) is already used by VI_1 on lb1 "
        "on the same segment (10.0.0.0/24); VRIDs must be unique per segment, pick another"
    )


def test_a_vip_outside_the_interface_subnet_is_refused_where_facts_show_it() -> None:
    found = problems(cluster(virtual_ipaddresses=["10.1.0.100/24"]), pair())
    assert found[0] == (
        "host lb1: vrrp_instances[0].virtual_ipaddresses[0]: VI_1: VIP 10.1.0.100/24 is outside "
        "eth0's subnet (10.0.0.0/24, from facts); clients on that link could not reach it: use "
        "an address of the subnet or give the VIP its own dev"
    )
    hosts = pair({"interface": "eth0"}, {"interface": "eth0"}, with_facts=False)
    assert problems(cluster(virtual_ipaddresses=["10.1.0.100/24"]), hosts) == []


def test_vips_a_master_holds_do_not_count_as_its_addresses_or_subnets() -> None:
    """Facts gathered on the master list the VIPs it holds, IPv6 ones first even."""
    hosts = pair()
    master = hosts[0].facts["eth0"]
    master["ipv4_secondaries"] = [{"address": "192.168.5.5", "netmask": "255.255.255.255"}]
    master["ipv6"].insert(0, {"address": "fd00:99::100", "prefix": "128", "scope": "global"})
    clu = cluster(virtual_ipaddresses=["192.168.5.5/32"])
    clu["vrrp_instances"].append(
        {"name": "VI_6", "vrid": 52, "unicast": True, "virtual_ipaddresses": ["fd00:99::100"]}
    )
    renderer = ac.ClusterRenderer(clu, hosts)
    rendered = renderer.render()
    assert rendered["lb1"]["vrrp_instances"][1]["unicast"]["source"] == "fd00:99::11"
    found = [str(p) for p in ac.GroupChecker(VCONF, rendered, hosts).run()]
    assert [f.split(":", 1)[0] for f in found] == ["host lb1", "host lb2"]
    assert all("VIP 192.168.5.5/32 is outside eth0's subnet (10.0.0.0/24," in f for f in found)


def test_cross_node_checks_of_the_agent_run_too() -> None:
    found = problems(cluster(), pair({"router_id": "same"}, {"router_id": "same"}))
    assert found == [
        "host lb2: global.router_id: router_id 'same' is also used by lb1; give each node its own"
    ]


# ---------------------------------------------------------------------------- output


def test_yaml_is_deterministic_and_sorted() -> None:
    a = render(cluster(unicast=True), pair())["lb1"]
    reordered = dict(reversed(list(a.items())))
    reordered["vrrp_instances"] = [dict(reversed(list(a["vrrp_instances"][0].items())))]
    text = ac.dump_yaml(a)
    assert text == ac.dump_yaml(reordered)
    assert text == ac.dump_yaml(render(cluster(unicast=True), pair())["lb1"])
    assert text.startswith(ac.HEADER)
    body = text[len(ac.HEADER) :]
    assert body.index("global:") < body.index("vrrp_instances:")
    assert "  advert_interval" not in body  # not set, not invented


def test_plain_turns_subclasses_into_builtin_types() -> None:
    class Tagged(str):
        pass

    out = ac.plain({Tagged("k"): (Tagged("v"), True, 3, 0.5, None)})
    assert out == {"k": ["v", True, 3, 0.5, None]}
    assert not isinstance(next(iter(out)), Tagged) and not isinstance(out["k"][0], Tagged)
    assert yaml.safe_dump(out)


def test_plan_names_the_highest_node_as_the_coming_master() -> None:
    rendered = render(cluster(), pair({}, {"priority": 200}))
    checker = ac.GroupChecker(VCONF, rendered, pair())
    assert checker.run() == []
    plan = ac.plan_for("lb1", checker.configs)
    assert plan["host"] == "lb1"
    assert plan["instances"]["VI_1"]["master"] == "lb2"
    assert plan["instances"]["VI_1"]["priorities"] == {"lb1": 150, "lb2": 200}
    assert plan["instances"]["VI_1"]["preempts"] == {"lb1": True, "lb2": True}


# ---------------------------------------------------------------------------- group lookup


def group_args(**kw: Any) -> dict[str, Any]:
    return {"group": None, "node_var": "vigil_node", **kw}


def test_group_hosts_read_every_members_variables_and_facts() -> None:
    task_vars = {
        "groups": {"all": ["lb1", "lb2"], "lb": ["lb2", "lb1"]},
        "hostvars": {
            "lb1": {"vigil_node": {"priority": 10}, "ansible_facts": facts("eth0", "10.0.0.11")},
            "lb2": {},
        },
    }
    hosts = ac.ActionModule._group_hosts(None, group_args(group="lb"), task_vars)  # type: ignore[arg-type]
    assert [h.name for h in hosts] == ["lb2", "lb1"]
    assert hosts[1].node == {"priority": 10}
    assert hosts[1].facts["default_ipv4"]["address"] == "10.0.0.11"
    assert hosts[0].node == {} and hosts[0].facts == {}


def test_group_errors_name_the_group_and_the_host() -> None:
    task_vars = {"groups": {"all": ["lb1"], "lb": ["lb1"]}, "hostvars": {"lb1": {}}}
    with pytest.raises(AnsibleActionFail, match="group 'web' is not in the inventory; it has: lb"):
        ac.ActionModule._group_hosts(None, group_args(group="web"), task_vars)  # type: ignore[arg-type]
    bad = {"groups": {"lb": ["lb1"]}, "hostvars": {"lb1": {"vigil_node": [1]}}}
    with pytest.raises(AnsibleActionFail, match="host lb1: vigil_node: must be a mapping"):
        ac.ActionModule._group_hosts(None, group_args(group="lb"), bad)  # type: ignore[arg-type]


def test_default_group_is_the_play_hosts() -> None:
    task_vars = {"ansible_play_hosts_all": ["a", "b"], "hostvars": {"a": {}, "b": {}}}
    hosts = ac.ActionModule._group_hosts(None, group_args(), task_vars)  # type: ignore[arg-type]
    assert [h.name for h in hosts] == ["a", "b"]


# ---------------------------------------------------------------------------- BFD


def bfd_cluster(**session: Any) -> dict[str, Any]:
    """A pair that tracks its upstream router with BFD (docs/bfd.md's worked example)."""
    clu = cluster(track={"bfd": ["upstream"]})
    base = {"name": "upstream", "peer": "10.0.0.254", "min_tx": 0.05, "min_rx": 0.05}
    base.update(session)
    clu["bfd"] = {"sessions": [base]}
    return clu


def test_a_bfd_section_renders_on_every_node_and_validates() -> None:
    out = render(bfd_cluster(), pair())
    assert ac.GroupChecker(VCONF, out, pair()).run() == []
    for host in ("lb1", "lb2"):
        assert out[host]["bfd"]["sessions"][0]["peer"] == "10.0.0.254"
        assert out[host]["vrrp_instances"][0]["track"] == {"bfd": ["upstream"]}
        config = VCONF.validate_data(yaml.safe_load(ac.dump_yaml(out[host])), check_files=False)
        assert config.section("bfd").session_names == ("upstream",)


def test_bfd_errors_name_the_host_and_the_field() -> None:
    found = problems(bfd_cluster(multiplier=0), pair())
    assert any(f.startswith("host lb1: bfd.sessions[0].multiplier:") for f in found), found
    clu = bfd_cluster()
    clu["vrrp_instances"][0]["track"] = {"bfd": ["upstrem"]}
    found = problems(clu, pair())
    assert any("host lb1: vrrp_instances[0].track.bfd" in f and "upstream" in f for f in found), (
        found
    )
