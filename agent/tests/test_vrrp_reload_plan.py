"""The VRRP reload planner: what stops, what changes in place, what starts, and in what order."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vigil.subsystems import diff_configs, validate_data
from vigil.vrrp.config import VrrpConfig
from vigil.vrrp.reload import ReloadPlan, plan_reload

pytestmark = pytest.mark.unit


def inst(name: str, vrid: int, vip: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "interface": "eth0",
        "vrid": vrid,
        "version": 3,
        "advert_interval": 0.1,
        "priority": 150,
        "virtual_ipaddresses": [vip],
        **extra,
    }


BASE: dict[str, Any] = {
    "global": {"router_id": "n1"},
    "vrrp_instances": [
        inst("VI_1", 51, "10.0.0.100/24"),
        inst("VI_2", 52, "10.0.0.101/24"),
        inst("VI_3", 53, "10.0.0.102/24", unicast={"peers": ["10.0.0.12"]}),
    ],
}


def plan(old_data: dict[str, Any], new_data: dict[str, Any], running: Any = None) -> ReloadPlan:
    old = validate_data(old_data, check_files=False)
    new = validate_data(new_data, check_files=False)
    old_vrrp: VrrpConfig = old.section("vrrp")
    new_vrrp: VrrpConfig = new.section("vrrp")
    if running is None:
        running = {cfg.name: cfg for cfg in old_vrrp.vrrp_instances}
    return plan_reload(running, new_vrrp, diff_configs(old, new).section("vrrp"))


def changed(**edits: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for item in data["vrrp_instances"]:
        item.update(edits.get(item["name"], {}))
    return data


def test_an_unchanged_reload_plans_nothing() -> None:
    assert plan(BASE, copy.deepcopy(BASE)).empty


def test_a_priority_or_vip_change_is_an_update_in_place() -> None:
    p = plan(BASE, changed(VI_1={"priority": 120}, VI_2={"virtual_ipaddresses": ["10.0.0.9/24"]}))
    assert p == ReloadPlan(update=("VI_1", "VI_2"))


def test_a_unicast_change_updates_in_place_and_refreshes_the_source() -> None:
    p = plan(BASE, changed(VI_3={"unicast": {"peers": ["10.0.0.13"]}}))
    assert p.update == ("VI_3",) and p.refresh_source == ("VI_3",)
    assert not p.stop and not p.start


def test_an_identity_change_stops_then_starts_again_and_says_why() -> None:
    p = plan(BASE, changed(VI_1={"vrid": 61}, VI_2={"interface": "eth1"}))
    assert p.stop == (
        ("VI_1", "vrid changed in the config; instance re-created"),
        ("VI_2", "interface changed in the config; instance re-created"),
    )
    assert p.start == ("VI_1", "VI_2") and not p.update


def test_removed_stop_before_recreated_and_new_ones_start_after() -> None:
    """Two instances swapping VRIDs in one reload: both stop before either starts."""
    data = changed(VI_1={"vrid": 52}, VI_2={"vrid": 51})
    del data["vrrp_instances"][2]
    data["vrrp_instances"].append(inst("VI_4", 54, "10.0.0.104/24"))
    p = plan(BASE, data)
    assert [name for name, _ in p.stop] == ["VI_3", "VI_1", "VI_2"]
    assert p.stop[0][1] == "removed from the config"
    assert p.start == ("VI_1", "VI_2", "VI_4")


def test_a_changed_instance_that_is_not_running_is_started() -> None:
    old = validate_data(BASE, check_files=False).section("vrrp")
    running = {cfg.name: cfg for cfg in old.vrrp_instances if cfg.name != "VI_2"}
    p = plan(BASE, changed(VI_2={"priority": 99}), running=running)
    assert p.start == ("VI_2",) and not p.update and not p.stop


def test_a_removed_instance_that_is_not_running_needs_nothing() -> None:
    data = copy.deepcopy(BASE)
    del data["vrrp_instances"][0]
    old = validate_data(BASE, check_files=False).section("vrrp")
    running = {cfg.name: cfg for cfg in old.vrrp_instances if cfg.name != "VI_1"}
    assert plan(BASE, data, running=running).empty
