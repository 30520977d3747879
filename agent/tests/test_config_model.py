"""The model: JSON-able to_dict with redaction, round trips, and diff_configs."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.config import Config
from vigil.subsystems import diff_configs, validate_data


def base_config() -> dict[str, Any]:
    return {
        "global": {"router_id": "node1"},
        "vrrp_scripts": {"chk": {"script": "/bin/true", "weight": -20}},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 51,
                "priority": 150,
                "authentication": {"password": "s3cret"},
                "virtual_ipaddresses": ["10.0.0.100/24", "10.0.0.101/24"],
                "track": {"scripts": ["chk"]},
            },
            {
                "name": "VI_6",
                "interface": "eth0",
                "vrid": 52,
                "virtual_ipaddresses": ["fd00::100/64"],
            },
        ],
        "vrrp_sync_groups": [{"name": "G", "members": ["VI_1", "VI_6"]}],
    }


def test_to_dict_is_json_and_redacts_the_password() -> None:
    config = validate_data(base_config())
    data = config.to_dict()
    text = json.dumps(data)
    assert "s3cret" not in text
    assert data["vrrp_instances"][0]["authentication"] == {"type": "pass", "password": "<redacted>"}
    assert data["vrrp_instances"][0]["virtual_ipaddresses"][0] == {
        "address": "10.0.0.100/24",
        "scope": "global",
    }
    assert data["vrrp_instances"][1]["version"] == 3
    assert data["vrrp_instances"][0]["track"]["scripts"] == [
        {"name": "chk", "weight": -20, "weight_reverse": False}
    ]
    clear = config.to_dict(redact=False)
    assert clear["vrrp_instances"][0]["authentication"]["password"] == "s3cret"


def test_unredacted_dict_validates_to_the_same_config() -> None:
    config = validate_data(base_config())
    again = validate_data(config.to_dict(redact=False))
    assert again == config
    assert again.to_dict() == config.to_dict()


# -- random valid configs round-trip -----------------------------------------------------------


@st.composite
def instances(draw: st.DrawFn, index: int) -> dict[str, Any]:
    family = draw(st.sampled_from([4, 6]))
    version = 3 if family == 6 else draw(st.sampled_from([2, 3]))
    prefix = 24 if family == 4 else 64
    hosts = draw(st.lists(st.integers(1, 250), min_size=1, max_size=4, unique=True))
    vips: list[Any] = []
    for host in hosts:
        text = (
            f"10.{index}.0.{host}/{prefix}" if family == 4 else f"fd00:{index}::{host:x}/{prefix}"
        )
        if draw(st.booleans()):
            vips.append(text)
        else:
            vips.append({"address": text, "scope": draw(st.sampled_from(["global", "site"]))})
    # v2: whole seconds; v3: centiseconds
    interval = draw(st.integers(1, 255)) if version == 2 else draw(st.integers(1, 4095)) / 100
    inst: dict[str, Any] = {
        "name": f"VI_{index}",
        "interface": draw(st.sampled_from(["eth0", "eth1", "bond0"])),
        "vrid": index + 1,
        "priority": draw(st.integers(1, 254)),
        "version": version,
        "advert_interval": interval,
        "preempt": draw(st.booleans()),
        "preempt_delay": draw(st.integers(0, 1000)),
        "virtual_ipaddresses": vips,
    }
    if draw(st.booleans()):
        peer = f"10.{index}.1.2" if family == 4 else f"fd00:{index}:1::2"
        inst["unicast"] = {"peers": [peer]}
    if version == 2 and draw(st.booleans()):
        password = draw(
            st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)
        )
        inst["authentication"] = {"type": "pass", "password": password}
    if draw(st.booleans()):
        inst["garp"] = {"master_repeat": draw(st.integers(1, 10)), "interval": 0.01}
    if draw(st.booleans()):
        inst["use_vmac"] = draw(st.sampled_from([True, f"vmac{index}"]))
    if draw(st.booleans()):
        inst["track"] = {
            "interfaces": [{"name": "eth9", "weight": draw(st.integers(-253, 253))}],
            "scripts": ["chk"],
        }
    if draw(st.booleans()):
        inst["virtual_routes"] = [
            {"to": "default", "via": f"10.{index}.0.254" if family == 4 else f"fd00:{index}::fe"}
        ]
    return inst


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(0, 4))
    data: dict[str, Any] = {
        "global": {
            "router_id": "n1",
            "vrrp_version": draw(st.sampled_from([2, 3])),
            "notify_timeout": draw(st.integers(1, 60)),
        },
        "vrrp_scripts": {"chk": {"script": "/bin/true", "weight": draw(st.integers(-253, 253))}},
        "vrrp_instances": [draw(instances(i)) for i in range(count)],
    }
    if count >= 2 and draw(st.booleans()):
        data["vrrp_sync_groups"] = [{"name": "G", "members": ["VI_0", "VI_1"]}]
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_random_valid_configs_round_trip(data: dict[str, Any]) -> None:
    config = validate_data(data, check_files=False)
    assert len(config.vrrp_instances) == len(data["vrrp_instances"])
    dumped = config.to_dict(redact=False)
    json.dumps(dumped)  # JSON-able
    again = validate_data(dumped, check_files=False)
    assert again == config
    for inst in config.vrrp_instances:
        assert {vip.family for vip in inst.vips} == {inst.family}


# -- diff ---------------------------------------------------------------------------------------


def configs_pair() -> tuple[Config, dict[str, Any]]:
    old = validate_data(base_config())
    return old, copy.deepcopy(base_config())


def test_diff_of_identical_configs_is_empty() -> None:
    old, new_data = configs_pair()
    full = diff_configs(old, validate_data(new_data))
    diff = full.section("vrrp")
    assert full.empty
    assert diff.unchanged == ("VI_1", "VI_6")
    assert full.to_dict()["vrrp"]["changed"] == []


def test_diff_reports_fields_and_vips() -> None:
    old, new_data = configs_pair()
    vi1 = new_data["vrrp_instances"][0]
    vi1["priority"] = 120
    vi1["virtual_ipaddresses"] = ["10.0.0.100/24", "10.0.0.102/24"]
    new_data["vrrp_instances"].append(
        {"name": "VI_7", "interface": "eth1", "vrid": 7, "virtual_ipaddresses": ["10.7.0.1"]}
    )
    del new_data["vrrp_instances"][1]
    new_data["vrrp_sync_groups"] = []
    full = diff_configs(old, validate_data(new_data))
    diff = full.section("vrrp")
    assert diff.added == ("VI_7",)
    assert diff.removed == ("VI_6",)
    assert diff.changed == ("VI_1",)
    assert diff.unchanged == ()
    change = diff.details["VI_1"]
    assert change.fields == ("vips", "priority")
    assert change.vips_added == ("10.0.0.102/24",)
    assert change.vips_removed == ("10.0.0.101/24",)
    assert diff.sync_groups_changed and not full.globals_changed
    as_dict = diff.to_dict()
    json.dumps(as_dict)
    assert as_dict["details"]["VI_1"]["vips_added"] == ["10.0.0.102/24"]


def test_diff_globals_and_trackers() -> None:
    old, new_data = configs_pair()
    new_data["global"]["log_level"] = "debug"
    new_data["vrrp_scripts"]["chk"]["interval"] = 5
    full = diff_configs(old, validate_data(new_data))
    assert full.globals_changed
    assert full.section("track").changed == ("vrrp_scripts.chk",)
    assert full.section("vrrp").changed == ()  # no instance field differs
    assert not full.empty


def test_diff_inherited_change_shows_on_the_instance() -> None:
    old, new_data = configs_pair()
    new_data["global"]["garp"] = {"master_repeat": 2}
    diff = diff_configs(old, validate_data(new_data)).section("vrrp")
    assert diff.changed == ("VI_1", "VI_6")
    assert diff.details["VI_6"].fields == ("garp",)
    assert diff.details["VI_6"].vips_added == ()


def test_diff_vip_attribute_change_is_remove_and_add() -> None:
    old, new_data = configs_pair()
    new_data["vrrp_instances"][1]["virtual_ipaddresses"] = [
        {"address": "fd00::100/64", "dev": "eth1"}
    ]
    change = diff_configs(old, validate_data(new_data)).section("vrrp").details["VI_6"]
    assert change.vips_added == change.vips_removed == ("fd00::100/64",)
