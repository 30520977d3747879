"""check_cluster: configs that are each valid but do not form a working pair."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from vigil.config import Config
from vigil.subsystems import check_cluster, load_config, validate_data

REPO = Path(__file__).resolve().parents[2]


def node(router_id: str, priority: int, **instance: Any) -> dict[str, Any]:
    inst: dict[str, Any] = {
        "name": "VI_1",
        "interface": "eth0",
        "vrid": 51,
        "priority": priority,
        "version": 3,
        "advert_interval": 0.1,
        "virtual_ipaddresses": ["10.0.0.100/24"],
    }
    inst.update(instance)
    return {
        "global": {"router_id": router_id},
        "vrrp_instances": [
            inst,
            {"name": "VI_2", "interface": "eth0", "vrid": 52, "virtual_ipaddresses": ["10.0.1.1"]},
        ],
        "vrrp_sync_groups": [{"name": "G", "members": ["VI_1", "VI_2"]}],
    }


def pair(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Config]:
    return {"lb1": validate_data(one), "lb2": validate_data(two)}


def test_demo_pair_agrees() -> None:
    configs = {
        name: load_config(str(REPO / "examples" / "demo" / f"{name}.yml"))
        for name in ("node1", "node2")
    }
    assert check_cluster(configs) == []


def test_matching_pair_has_no_issues() -> None:
    assert check_cluster(pair(node("lb1", 150), node("lb2", 100))) == []


def test_mismatches_are_reported_on_the_second_node() -> None:
    one = node("lb1", 150)
    two = node("lb2", 100, vrid=52, advert_interval=1, virtual_ipaddresses=["10.0.0.101/24"])
    two["vrrp_instances"][1]["vrid"] = 53
    issues = {(i.file, i.path): i.message for i in check_cluster(pair(one, two))}
    assert set(issues) == {
        ("lb2", "vrrp_instances[0].vrid"),
        ("lb2", "vrrp_instances[0].advert_interval"),
        ("lb2", "vrrp_instances[0].virtual_ipaddresses"),
        ("lb2", "vrrp_instances[1].vrid"),
    }
    assert issues[("lb2", "vrrp_instances[0].vrid")] == (
        "VI_1: vrid is 52 here but 51 on lb1; all nodes of an instance must use one VRID"
    )
    assert "is 1 here but 0.1 on lb1" in issues[("lb2", "vrrp_instances[0].advert_interval")]


def test_password_mismatch_never_shows_the_password() -> None:
    one = node("lb1", 150, version=2, advert_interval=1, authentication={"password": "alpha"})
    two = node("lb2", 100, version=2, advert_interval=1, authentication={"password": "beta"})
    (issue,) = check_cluster(pair(one, two))
    assert issue.path == "vrrp_instances[0].authentication"
    assert "alpha" not in str(issue) and "beta" not in str(issue)


def test_router_ids_owners_and_checksum_mode() -> None:
    one = node("lb", 255, address_owner=True)
    two = node("lb", 255, address_owner=True, v3_checksum_pseudo_header=False)
    paths = {(i.file, i.path) for i in check_cluster(pair(one, two))}
    assert paths == {
        ("lb2", "global.router_id"),
        ("lb2", "vrrp_instances[0].address_owner"),
        ("lb2", "vrrp_instances[0].v3_checksum_pseudo_header"),
    }


def test_unicast_peers_must_include_the_other_sources() -> None:
    one = node("lb1", 150, unicast={"source": "10.0.0.11", "peers": ["10.0.0.12"]})
    two = node("lb2", 100, unicast={"source": "10.0.0.12", "peers": ["10.0.0.13"]})
    (issue,) = check_cluster(pair(one, two))
    assert (issue.file, issue.path) == ("lb2", "vrrp_instances[0].unicast.peers")
    assert "lb1's unicast source 10.0.0.11 is not among the peers" in issue.message
    multicast = node("lb2", 100)
    (issue,) = check_cluster(pair(one, multicast))
    assert issue.path == "vrrp_instances[0].unicast"


def test_lonely_instances_and_group_members() -> None:
    one = node("lb1", 150)
    two = copy.deepcopy(node("lb2", 100))
    two["vrrp_instances"].append(
        {"name": "VI_3", "interface": "eth0", "vrid": 60, "virtual_ipaddresses": ["10.0.2.1"]}
    )
    two["vrrp_sync_groups"][0]["members"] = ["VI_1"]
    issues = {(i.file, i.path): i.message for i in check_cluster(pair(one, two))}
    assert "exists only on lb2" in issues[("lb2", "vrrp_instances[2]")]
    assert "use the same members" in issues[("lb2", "vrrp_sync_groups[0].members")]
