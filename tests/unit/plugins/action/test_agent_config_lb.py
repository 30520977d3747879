# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vigil.ha.agent_config on the controller: IPVS and BFD rendered from inventory.

Real servers from an inventory group (address and weight from host variables, facts where
absent), BFD sessions between the pair and to named gateways, and the agent's own cross-node
checks over the result. Plain data and the real agent schema; no Ansible run, no host.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from ansible_collections.vigil.ha.plugins.action import agent_config as ac

VCONF = ac.import_vigil_config()


def facts(address: str, iface: str = "eth0") -> dict[str, Any]:
    return {
        "interfaces": ["lo", iface],
        "default_ipv4": {"interface": iface, "address": address},
        iface: {"device": iface, "ipv4": {"address": address, "netmask": "255.255.255.0"}},
    }


def directors() -> list[ac.HostInput]:
    return [
        ac.HostInput("lb1", {}, facts("10.0.0.11")),
        ac.HostInput("lb2", {}, facts("10.0.0.12")),
    ]


def inventory(
    members: list[ac.HostInput], backends: dict[str, Any], **extra: ac.HostInput
) -> ac.Inventory:
    hosts = {h.name: h for h in members}
    for name, (var, fact) in backends.items():
        hosts[name] = ac.HostInput(name, {}, fact, real_server=var)
    hosts.update(extra)
    groups = {
        "pair": [h.name for h in members],
        "web": list(backends),
        "empty": [],
        "all": list(hosts),
    }
    return ac.Inventory(groups, hosts)


def lb_cluster(**vs: Any) -> dict[str, Any]:
    server = {
        "name": "web",
        "address": "10.0.0.100",
        "port": 80,
        "real_servers_from": {"group": "web", "port": 8080, "checks": ["tcp"]},
    }
    server.update(vs)
    return {
        "vrrp_instances": [{"name": "VI_1", "vrid": 51, "virtual_ipaddresses": ["10.0.0.100/24"]}],
        "virtual_servers": [server],
        "ipvs_sync_daemon": {"instance": "VI_1"},
    }


def run(
    clu: dict[str, Any], hosts: list[ac.HostInput], inv: ac.Inventory
) -> tuple[dict[str, Any], list[str]]:
    renderer = ac.ClusterRenderer(clu, hosts, inventory=inv)
    rendered = renderer.render()
    if renderer.problems:
        return rendered, [str(p) for p in dict.fromkeys(renderer.problems)]
    return rendered, [str(p) for p in ac.GroupChecker(VCONF, rendered, hosts).run()]


def problems(clu: dict[str, Any], hosts: list[ac.HostInput], inv: ac.Inventory) -> list[str]:
    return run(clu, hosts, inv)[1]


BACKENDS = {
    "web1": ({"address": "10.0.1.21", "weight": 3}, {}),
    "web2": (None, facts("10.0.1.22")),
}


def test_real_servers_come_from_the_group_with_variables_then_facts() -> None:
    hosts = directors()
    out, found = run(lb_cluster(), hosts, inventory(hosts, BACKENDS))
    assert found == []
    for host in ("lb1", "lb2"):
        (vs,) = out[host]["virtual_servers"]
        assert "real_servers_from" not in vs
        assert vs["real_servers"] == [
            {"address": "10.0.1.21", "port": 8080, "weight": 3, "checks": ["tcp"]},
            {"address": "10.0.1.22", "port": 8080, "checks": ["tcp"]},
        ]
    # the sync daemon binds to each director's own interface (from its facts)
    assert out["lb1"]["ipvs_sync_daemon"] == {"instance": "VI_1", "interface": "eth0"}


def test_written_real_servers_stay_first() -> None:
    hosts = directors()
    clu = lb_cluster(real_servers=[{"address": "10.0.1.9", "port": 8080}])
    out, found = run(clu, hosts, inventory(hosts, BACKENDS))
    assert found == []
    assert [rs["address"] for rs in out["lb1"]["virtual_servers"][0]["real_servers"]] == [
        "10.0.1.9",
        "10.0.1.21",
        "10.0.1.22",
    ]


def test_a_backend_without_address_or_facts_is_named_with_the_variable() -> None:
    hosts = directors()
    backends = {**BACKENDS, "web3": ({"weight": 2}, {})}
    found = problems(lb_cluster(), hosts, inventory(hosts, backends))
    assert found == [
        "host web3: vigil_real_server.address: web: real server web3 (group web) needs an "
        "IPv4 address and its facts show none (facts are gathered for it only in a play on "
        "its hosts); set vigil_real_server.address or gather facts on web first"
    ]


def test_unknown_keys_groups_and_empty_groups_are_named() -> None:
    hosts = directors()
    backends = {"web1": ({"address": "10.0.1.21", "wieght": 3}, {})}
    found = problems(lb_cluster(), hosts, inventory(hosts, backends))
    assert found[0].startswith("host web1: vigil_real_server.wieght: unknown key; use one of")
    found = problems(
        lb_cluster(real_servers_from={"group": "webz"}), hosts, inventory(hosts, BACKENDS)
    )
    assert found[0] == (
        "host lb1: cluster.virtual_servers[0].real_servers_from.group: web: group 'webz' is "
        "not in the inventory; it has: empty, pair, web"
    )
    assert found[1].startswith("host lb2: ")
    found = problems(
        lb_cluster(real_servers_from={"group": "empty"}), hosts, inventory(hosts, BACKENDS)
    )
    assert "group 'empty' has no hosts" in found[0]


def test_the_agent_schema_names_a_bad_weight_on_the_director() -> None:
    hosts = directors()
    backends = {"web1": ({"address": "10.0.1.21", "weight": -1}, {})}
    found = problems(lb_cluster(), hosts, inventory(hosts, backends))
    assert found[0].startswith("host lb1: virtual_servers[0].real_servers[0].weight:"), found


def test_directors_that_differ_are_refused_by_the_agents_cross_node_check() -> None:
    hosts = directors()
    rendered, found = run(lb_cluster(), hosts, inventory(hosts, BACKENDS))
    assert found == []
    rendered["lb2"]["virtual_servers"][0]["scheduler"] = "rr"
    rendered["lb2"]["ipvs_sync_daemon"]["syncid"] = 9
    found = [str(p) for p in ac.GroupChecker(VCONF, rendered, hosts).run()]
    assert (
        "host lb2: virtual_servers[0].scheduler: web: scheduler is rr here but wlc on lb1"
        in (found[0])
    )
    assert any(p.startswith("host lb2: ipvs_sync_daemon.syncid:") for p in found), found


def test_bfd_pair_and_gateways_become_sessions_with_local_addresses() -> None:
    hosts = directors()
    router = ac.HostInput("gw2", {"address": "10.0.0.2"}, {})
    clu = {
        "bfd": {
            "profiles": {"fast": {"min_tx": 0.05, "min_rx": 0.05}},
            "pair": {"profile": "fast"},
            "gateways": [
                {"name": "gw1", "address": "10.0.0.1"},
                {"name": "gw2", "host": "gw2", "multiplier": 5},
            ],
        }
    }
    out, found = run(clu, hosts, inventory(hosts, {}, gw2=router))
    assert found == []
    assert out["lb1"]["bfd"]["sessions"] == [
        {"name": "peer", "peer": "10.0.0.12", "local": "10.0.0.11", "profile": "fast"},
        {"name": "gw1", "peer": "10.0.0.1", "local": "10.0.0.11"},
        {"name": "gw2", "peer": "10.0.0.2", "local": "10.0.0.11", "multiplier": 5},
    ]
    assert out["lb2"]["bfd"]["sessions"][0] == {
        "name": "peer",
        "peer": "10.0.0.11",
        "local": "10.0.0.12",
        "profile": "fast",
    }
    assert "pair" not in out["lb1"]["bfd"] and "gateways" not in out["lb1"]["bfd"]


def test_a_larger_group_gets_one_named_session_per_other_member() -> None:
    hosts = [*directors(), ac.HostInput("lb3", {}, facts("10.0.0.13"))]
    out, found = run({"bfd": {"pair": True}}, hosts, inventory(hosts, {}))
    assert found == []
    assert [s["name"] for s in out["lb3"]["bfd"]["sessions"]] == ["peer_lb1", "peer_lb2"]


def test_a_session_on_one_end_only_is_refused_even_without_local() -> None:
    """The checker learns each node's addresses from facts (ClusterContext.addresses)."""
    hosts = directors()
    clu = {"bfd": {"sessions": [{"name": "x", "peer": "10.0.0.12"}]}}
    found = problems(clu, hosts, inventory(hosts, {}))
    assert found == [
        "host lb1: bfd.sessions[0].peer: x: 10.0.0.12 is lb2, which has no BFD session to "
        "this node; add one there (peer: this address) or the session stays Down"
    ]


def test_bfd_errors_name_the_host_and_the_field() -> None:
    hosts = [ac.HostInput("lb1", {}, facts("10.0.0.11")), ac.HostInput("lb2", {}, {})]
    found = problems({"bfd": {"pair": True}}, hosts, inventory(hosts, {}))
    assert found == [
        "host lb2: vigil_node.address: bfd.pair needs this host's IPv4 address and the facts "
        "show none; set vigil_node.address or gather facts"
    ]
    hosts = directors()
    clu = {"bfd": {"gateways": [{"name": "gw", "address": "10.0.0.1", "host": "gw"}]}}
    found = problems(clu, hosts, inventory(hosts, {}))
    assert found[0] == "host lb1: cluster.bfd.gateways[0]: gw: give exactly one of address or host"
    clu = {"bfd": {"gateways": [{"name": "gw", "host": "nowhere"}]}}
    found = problems(clu, hosts, inventory(hosts, {}))
    assert found[0] == (
        "host lb1: cluster.bfd.gateways[0].host: nowhere is not in the inventory; give its "
        "address instead, or add it"
    )
    clu = {"bfd": {"pair": {"profil": "fast"}}}
    found = problems(clu, hosts, inventory(hosts, {}))
    assert found[0].startswith("host lb1: cluster.bfd.pair.profil: unknown key; use one of name")


def test_the_example_inventory_load_balancer_pair_renders_and_validates() -> None:
    """docs/examples/inventory.yml's lb_pair, as Ansible would hand it over (no facts)."""
    tests = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    path = os.path.join(os.path.dirname(tests), "docs", "examples", "inventory.yml")
    with open(path) as fh:
        inv = yaml.safe_load(fh)["all"]["children"]
    pair = inv["vigil"]["children"]["lb_pair"]
    backends = inv["web_backends"]["hosts"]
    hosts = [ac.HostInput(name, h["vigil_node"], {}) for name, h in pair["hosts"].items()]
    inventory = ac.Inventory(
        {"lb_pair": list(pair["hosts"]), "web_backends": list(backends)},
        {
            **{h.name: h for h in hosts},
            **{
                name: ac.HostInput(name, {}, {}, real_server=h["vigil_real_server"])
                for name, h in backends.items()
            },
        },
    )
    out, found = run(pair["vars"]["vigil_cluster"], hosts, inventory)
    assert found == []
    assert [rs["address"] for rs in out["lb3"]["virtual_servers"][0]["real_servers"]] == [
        "10.77.1.21",
        "10.77.1.22",
    ]
    assert [s["name"] for s in out["lb4"]["bfd"]["sessions"]] == ["peer", "upstream"]
    assert out["lb4"]["ipvs_sync_daemon"]["interface"] == "host0"
