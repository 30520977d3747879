"""Loading vigil.yml: valid configs, normalization, and errors with paths and lines."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from vigil.config import ConfigError, Issue
from vigil.subsystems import load_config, validate_data

FIXTURES = Path(__file__).parent / "fixtures" / "config"


def write(tmp_path: Path, text: str, name: str = "vigil.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def issues_of(data: Any, **kwargs: Any) -> list[Issue]:
    with pytest.raises(ConfigError) as info:
        validate_data(data, **kwargs)
    return info.value.issues


def by_path(issues: list[Issue]) -> dict[str, Issue]:
    return {issue.path: issue for issue in issues}


MINIMAL = """\
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 51
    virtual_ipaddresses: [10.0.0.100]
"""


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    inst = config.section("vrrp").instance("VI_1")
    assert inst.priority == 100
    assert inst.version == 2
    assert inst.advert_interval == 1.0
    assert inst.preempt is True
    assert inst.preempt_delay == 0.0
    assert inst.unicast is None and inst.authentication is None
    assert inst.vips[0].address == ipaddress.ip_interface("10.0.0.100/32")
    assert inst.vips[0].dev is None and inst.vips[0].scope == "global"
    assert inst.family == 4
    assert inst.use_vmac is None
    assert inst.garp.master_delay == 5.0 and inst.garp.master_repeat == 5
    assert inst.notify.timeout == 10.0
    assert config.globals.socket == "/run/vigil/vigil.sock"
    assert config.globals.router_id  # the host name
    assert config.source == str(tmp_path / "vigil.yml")


def test_explicitly_empty_config_is_valid_without_instances(tmp_path: Path) -> None:
    # An empty file alone is refused since issue 15 (test_config_limits.py); saying so is not.
    config = load_config(write(tmp_path, "# nothing yet\nglobal:\n  allow_empty_config: true\n"))
    assert config.vrrp_instances == ()


def test_ipv6_instance_is_version_3_and_defaults_to_128(tmp_path: Path) -> None:
    text = MINIMAL.replace("[10.0.0.100]", "['fd00:99::100']")
    inst = load_config(write(tmp_path, text)).section("vrrp").instance("VI_1")
    assert inst.version == 3
    assert inst.family == 6
    assert inst.vips[0].address.network.prefixlen == 128


def test_inheritance_from_global(tmp_path: Path) -> None:
    text = (
        "global:\n  vrrp_version: 3\n  v3_checksum_pseudo_header: false\n  notify_timeout: 3\n"
        "  garp: {master_repeat: 2, interval: 0.05}\n" + MINIMAL + "    garp: {master_delay: 1}\n"
    )
    inst = load_config(write(tmp_path, text)).section("vrrp").instance("VI_1")
    assert inst.version == 3
    assert inst.v3_checksum_pseudo_header is False
    assert inst.notify.timeout == 3.0
    # per-instance keys override, the rest comes from global.garp
    assert (inst.garp.master_delay, inst.garp.master_repeat, inst.garp.interval) == (1.0, 2, 0.05)


def test_address_owner_defaults_to_priority_255() -> None:
    data = {
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 1,
                "address_owner": True,
                "virtual_ipaddresses": ["10.0.0.1/24"],
            }
        ]
    }
    assert validate_data(data).section("vrrp").instance("VI_1").priority == 255


def test_vip_mapping_form_and_routes_and_vmac() -> None:
    data = {
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 7,
                "use_vmac": True,
                "virtual_ipaddresses": [
                    {"address": "10.0.0.1/24", "dev": "eth1", "label": "eth1:a", "scope": "site"}
                ],
                "virtual_routes": [
                    {"to": "default", "via": "10.0.0.254", "metric": 10, "table": 100},
                    {"to": "10.8.0.0/16", "dev": "eth1"},
                ],
            }
        ]
    }
    inst = validate_data(data).section("vrrp").instance("VI_1")
    vip = inst.vips[0]
    assert (vip.dev, vip.label, vip.scope) == ("eth1", "eth1:a", "site")
    assert inst.use_vmac == "vrrp.7"
    assert str(inst.routes[0].to) == "0.0.0.0/0"
    assert inst.routes[0].via == ipaddress.ip_address("10.0.0.254")
    assert (inst.routes[0].metric, inst.routes[0].table) == (10, 100)
    assert str(inst.routes[1].to) == "10.8.0.0/16"


def test_track_shorthands_and_weight_resolution() -> None:
    data = {
        "vrrp_scripts": {"chk": {"script": "/bin/true", "weight": -30}},
        "track_files": {"tf": {"file": "/run/vigil/tf"}},
        "track_processes": {"tp": {"process": "haproxy", "weight": 5}},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 1,
                "virtual_ipaddresses": ["10.0.0.1"],
                "track": {
                    "interfaces": ["eth1", {"name": "eth2", "weight": -20}],
                    "scripts": ["chk"],
                    "files": [{"name": "tf", "weight": -2, "weight_reverse": True}],
                    "processes": ["tp"],
                },
            }
        ],
    }
    config = validate_data(data)
    track = config.section("vrrp").instance("VI_1").track
    assert [(i.name, i.weight) for i in track.interfaces] == [("eth1", 0), ("eth2", -20)]
    assert (track.scripts[0].name, track.scripts[0].weight) == ("chk", -30)  # the script's
    assert (track.files[0].weight, track.files[0].weight_reverse) == (-2, True)  # override
    assert track.processes[0].weight == 5
    script = config.vrrp_scripts["chk"]
    assert script.argv == ("/bin/true",)
    assert script.timeout == script.interval == 1.0  # timeout defaults to the interval
    assert script.user == "nobody"  # global.script_user


def test_sync_group_model() -> None:
    data = {
        "vrrp_instances": [
            {"name": n, "interface": "eth0", "vrid": v, "virtual_ipaddresses": ["10.0.0.1"]}
            for n, v in (("A", 1), ("B", 2))
        ],
        "vrrp_sync_groups": [{"name": "G", "members": ["A", "B"]}],
    }
    config = validate_data(data)
    assert config.vrrp_sync_groups[0].members == ("A", "B")
    group = config.section("vrrp").sync_group_of("B")
    assert group is not None and group.name == "G"


def test_unknown_instance_lookup_names_the_known_ones(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(KeyError, match=r"VI_9.*VI_1"):
        config.section("vrrp").instance("VI_9")


# -- errors -------------------------------------------------------------------------------


EXPECTED_MISTAKES = {
    # path: (line, fragment of the message)
    "global.log_levle": (4, "unknown key; did you mean 'log_level'?"),
    "global.vrrp_version": (5, "must be one of 2, 3; got 4"),
    "vrrp_scripts.chk_web.intervall": (9, "did you mean 'interval'?"),
    "vrrp_scripts.chk_web.fall": (10, "must be at least 1"),
    "vrrp_instances[0].priority": (15, "priority 255 is reserved for the address owner"),
    "vrrp_instances[0].advert_interval": (16, "VRRPv2 advertises whole seconds"),
    "vrrp_instances[0].virtual_ipaddresses[1]": (19, "is IPv6 but the first VIP is IPv4"),
    "vrrp_instances[0].virtual_ipaddresses[2]": (
        20,
        "expected an IPv4 or IPv6 address with optional /prefix, got '10.0.0.300/24'",
    ),
    "vrrp_instances[0].track.scripts[0].name": (22, "did you mean 'chk_web'?"),
    "vrrp_instances[1].vrid": (25, "must be at most 255"),
    "vrrp_instances[1].prioirty": (26, "unknown key; did you mean 'priority'?"),
    "vrrp_instances[1].preempt": (27, "expected true or false, got 'maybe'"),
    "vrrp_instances[1].virtual_ipaddresses": (28, "must not be empty"),
    "vrrp_instances[2].authentication.password": (33, "at most 8"),
    "vrrp_instances[2].unicast.peers": (34, "must not be empty"),
    "vrrp_instances[3].vrid": (
        38,
        "VRID 52 is already used on eth0 for IPv4 by vrrp_instances[2] (VI_3); pick another VRID",
    ),
    "vrrp_instances[4].name": (41, "required key missing"),
    "vrrp_sync_groups[0].members[1]": (46, "no VRRP instance named 'VI_9'"),
    "vrrp_instance": (47, "did you mean 'vrrp_instances'?"),
}


def test_many_mistakes_are_all_reported_with_paths_and_lines() -> None:
    path = str(FIXTURES / "many_mistakes.yml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    issues = info.value.issues
    found = by_path(issues)
    assert sorted(found) == sorted(EXPECTED_MISTAKES)
    for key, (line, fragment) in EXPECTED_MISTAKES.items():
        assert found[key].line == line, key
        assert fragment in found[key].message, key
        assert found[key].file == path
    lines = [issue.line or 0 for issue in issues]
    assert lines == sorted(lines)  # reported in file order
    text = str(info.value).splitlines()
    assert f"{path}:25: vrrp_instances[1].vrid: must be at most 255" in text


def test_yaml_syntax_error_reports_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "global:\n  router_id: a\nvrrp_instances: [\n  {name: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (issue,) = info.value.issues
    assert issue.line == 5
    assert "YAML syntax error" in issue.message
    assert "started on line" in issue.message
    assert str(issue).startswith(f"{path}:5: YAML syntax error")


def test_tab_indentation_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "global:\n\trouter_id: a\n"))
    assert info.value.issues[0].line == 2
    assert "spaces, not tabs" in info.value.issues[0].message


def test_duplicate_keys_are_errors_with_both_lines(tmp_path: Path) -> None:
    text = MINIMAL + "    vrid: 52\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    (issue,) = info.value.issues
    assert issue.path == "vrrp_instances[0].vrid"
    assert issue.line == 6
    assert "duplicate key (first given on line 4)" in issue.message


def test_yaml_anchors_under_x_keys_and_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = """\
x-defaults: &defaults
  interface: eth0
  advert_interval: 2
vrrp_instances:
  - <<: *defaults
    name: VI_1
    vrid: 1
    advert_interval: 3
    virtual_ipaddresses: [10.0.0.1]
"""
    inst = load_config(write(tmp_path, text)).section("vrrp").instance("VI_1")
    assert (inst.interface, inst.advert_interval) == ("eth0", 3.0)  # the explicit key wins


def test_unknown_top_level_key_lists_the_allowed_ones() -> None:
    (issue,) = issues_of({"frobnicate": 1})
    assert issue.path == "frobnicate"
    assert "allowed keys: global, vrrp_scripts" in issue.message
    assert "x-* for YAML anchors" in issue.message


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.yml"))
    assert "cannot read the config" in info.value.issues[0].message
    bad = tmp_path / "bin.yml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    assert "not UTF-8" in info.value.issues[0].message


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ([1, 2], "", "must be a mapping at the top level"),
        ({"vrrp_instances": {"name": "x"}}, "vrrp_instances", "expected a list of VRRP instances"),
        ({"vrrp_scripts": ["x"]}, "vrrp_scripts", "expected a mapping of name -> vrrp_script"),
        ({"global": {"notify_timeout": "10s"}}, "global.notify_timeout", "plain number"),
        ({"global": {"log_level": "warn"}}, "global.log_level", "did you mean 'warning'?"),
        ({"global": {"script_security": "yes please"}}, "global.script_security", "true or false"),
        ({"global": {"router_id": 12}}, "global.router_id", "quote it: '12'"),
        ({"global": {"garp": {"master_repeat": 0}}}, "global.garp.master_repeat", "at least 1"),
        ({"global": 5}, "global", "expected a mapping of global settings"),
    ],
)
def test_top_level_and_global_errors(data: Any, path: str, message: str) -> None:
    found = by_path(issues_of(data, check_files=False))
    assert path in found, found
    assert message in found[path].message


def instance(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "VI_1",
        "interface": "eth0",
        "vrid": 51,
        "virtual_ipaddresses": ["10.0.0.100/24"],
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        ({"vrid": 0}, "vrid", "must be at least 1"),
        ({"vrid": "51"}, "vrid", "expected a whole number, got '51'"),
        ({"vrid": None}, "vrid", "required key missing"),
        ({"interface": "a-very-long-interface"}, "interface", "longer than 15"),
        ({"interface": "eth0:1"}, "interface", "not a valid interface name"),
        ({"priority": 256}, "priority", "must be at most 255"),
        ({"priority": True}, "priority", "expected a whole number, got true"),
        ({"version": 4}, "version", "must be one of 2, 3"),
        ({"advert_interval": 0}, "advert_interval", "must be at least 0.01"),
        ({"advert_interval": "1s"}, "advert_interval", "plain number of seconds"),
        ({"preempt_delay": 1001}, "preempt_delay", "must be at most 1000"),
        ({"virtual_ipaddresses": "10.0.0.1"}, "virtual_ipaddresses", "expected a list of VIPs"),
        ({"virtual_ipaddresses": [12]}, "virtual_ipaddresses[0]", "expected a VIP"),
        (
            {"virtual_ipaddresses": [{"address": "10.0.0.1", "scope": "world"}]},
            "virtual_ipaddresses[0].scope",
            "must be one of global, site, link, host",
        ),
        (
            {"virtual_ipaddresses": [{"dev": "eth1"}]},
            "virtual_ipaddresses[0].address",
            "required key missing",
        ),
        (
            {"virtual_ipaddresses": ["fe80::1%eth0"]},
            "virtual_ipaddresses[0]",
            "zone ids",
        ),
        (
            {"virtual_routes": [{"to": "10.1.2.3/16"}]},
            "virtual_routes[0].to",
            "host bits set; did you mean '10.1.0.0/16'?",
        ),
        ({"virtual_routes": [{"via": "10.0.0.1"}]}, "virtual_routes[0].to", "required key"),
        ({"unicast": {"peers": ["10.0.0.x"]}}, "unicast.peers[0]", "expected an IPv4 or IPv6"),
        ({"unicast": {"source": "10.0.0.1"}}, "unicast.peers", "required key missing"),
        (
            {"authentication": {"type": "ah", "password": "x"}},
            "authentication.type",
            "must be one of pass",
        ),
        (
            {"authentication": {"password": 1111}},
            "authentication.password",
            "quote it: '1111'",
        ),
        ({"use_vmac": 3}, "use_vmac", "macvlan interface name"),
        (
            {"track": {"interfaces": [{"name": "eth1", "weight": -254}]}},
            "track.interfaces[0].weight",
            "at least -253",
        ),
        ({"track": {"scrips": []}}, "track.scrips", "did you mean 'scripts'?"),
        ({"notify": {"master": ""}}, "notify.master", "must not be empty"),
        ({"notify": {"mastr": "/bin/true"}}, "notify.mastr", "did you mean 'master'?"),
        ({"garp": {"interval": -1}}, "garp.interval", "must be at least 0"),
        ({"name": "VI 1"}, "name", "contains whitespace"),
        ({"colour": "blue"}, "colour", "unknown key; allowed keys:"),
    ],
)
def test_instance_schema_errors(overrides: dict[str, Any], path: str, message: str) -> None:
    data = {"vrrp_instances": [instance(**overrides)]}  # a None override drops the key
    found = by_path(issues_of(data, check_files=False))
    full = f"vrrp_instances[0].{path}"
    assert full in found, found
    assert message in found[full].message


@pytest.mark.parametrize(
    ("section", "entry", "path", "message"),
    [
        ("vrrp_scripts", {"interval": 1}, "script", "required key missing"),
        ("vrrp_scripts", {"script": "/bin/true", "weight": 254}, "weight", "at most 253"),
        ("vrrp_scripts", {"script": "/bin/true", "rise": 0}, "rise", "at least 1"),
        ("vrrp_scripts", {"script": "/bin/true", "wieght": 1}, "wieght", "did you mean 'weight'?"),
        ("track_files", {"weight": 1}, "file", "required key missing"),
        ("track_files", {"file": "/x", "init_file": "zero"}, "init_file", "whole number"),
        ("track_processes", {"process": "x", "param_match": "full"}, "param_match", "one of"),
        ("track_processes", {"process": "x", "quorum": 0}, "quorum", "at least 1"),
    ],
)
def test_tracker_schema_errors(
    section: str, entry: dict[str, Any], path: str, message: str
) -> None:
    found = by_path(issues_of({section: {"t1": entry}}, check_files=False))
    full = f"{section}.t1.{path}"
    assert full in found, found
    assert message in found[full].message


def test_sync_group_schema_errors() -> None:
    data = {"vrrp_sync_groups": [{"name": "G", "members": []}, {"members": ["x"]}]}
    found = by_path(issues_of(data))
    assert "must not be empty" in found["vrrp_sync_groups[0].members"].message
    assert found["vrrp_sync_groups[1].name"].message == "required key missing"


def test_misspelled_required_key_is_reported_once() -> None:
    data = {"vrrp_instances": [instance(vrid=None, vird=5)]}
    found = by_path(issues_of(data))
    assert list(found) == ["vrrp_instances[0].vird"]
    assert found["vrrp_instances[0].vird"].message == "unknown key; did you mean 'vrid'?"


def test_salvage_cuts_each_bad_item_once() -> None:
    # two errors in VIP [1] and one in [3]: the salvaged instance keeps [0] and [2], so the
    # family check still sees the IPv6 VIP at index 2 and reports it by its original index
    vips = ["10.0.0.1", {"address": "10.0.0.300", "scope": "nowhere"}, "fd00::2", "bad"]
    found = by_path(issues_of({"vrrp_instances": [instance(virtual_ipaddresses=vips)]}))
    assert set(found) == {
        "vrrp_instances[0].virtual_ipaddresses[1].address",
        "vrrp_instances[0].virtual_ipaddresses[1].scope",
        "vrrp_instances[0].virtual_ipaddresses[3]",
        "vrrp_instances[0].virtual_ipaddresses[2]",
    }
    assert "fd00::2/128 is IPv6" in found["vrrp_instances[0].virtual_ipaddresses[2]"].message


def test_salvaged_sync_group_members_keep_their_indices() -> None:
    data = {
        "vrrp_instances": [instance()],
        "vrrp_sync_groups": [{"name": "G", "members": ["bad name", "VI_1", "VI_X"]}],
    }
    found = by_path(issues_of(data))
    assert set(found) == {"vrrp_sync_groups[0].members[0]", "vrrp_sync_groups[0].members[2]"}


def test_realtime_priority_is_checked_and_applied_by_policy(tmp_path: Path) -> None:
    """global.realtime_priority: 0..99 in the config; vigil.sched sets SCHED_RR (with
    reset-on-fork) for the calling thread and back. Run in a thread of its own so the
    test runner's thread keeps its policy; as root it must work, without it it must say
    why."""
    import os
    import threading

    from vigil.sched import apply_realtime_priority, current_policy

    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "global:\n  realtime_priority: 100\n"))
    assert "global.realtime_priority" in str(err.value) and "at most 99" in str(err.value)
    assert apply_realtime_priority(100) == "realtime_priority: must be 0..99, got 100"

    seen: dict[str, object] = {}

    def worker() -> None:
        seen["set"] = apply_realtime_priority(7)
        seen["policy"] = current_policy()
        seen["raw"] = os.sched_getscheduler(0)
        seen["back"] = apply_realtime_priority(0)
        seen["after"] = current_policy()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=10)
    if os.geteuid() != 0:
        assert isinstance(seen["set"], str) and "cannot set SCHED_RR" in seen["set"]
        return
    assert seen["set"] is None and seen["policy"] == ("rr", 7)
    assert seen["raw"] == os.SCHED_RR | os.SCHED_RESET_ON_FORK
    assert seen["back"] is None and seen["after"] == ("other", 0)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb:\n  - x: 1\n    y: [1, 2]\n  - x: 2\n    x: 3\nc: {d: e}\n",
        "base: &b {k: 1}\nuse:\n  <<: *b\n  k: 2\nlist: [*b, *b]\n",
        "a: 1\n\tb: 2\n",  # a syntax error: the pure-Python loader words it
        "a:" + " [" * 60 + " 1" + " ]" * 60 + "\n",  # too deep: the same
        "",
    ],
)
def test_libyaml_and_the_pure_python_loader_give_the_same_result(text: str) -> None:
    """vigil reads configs with libyaml when it is there (faster, less memory at start)
    and falls back to PyYAML's pure-Python loader for the wording of any problem: the
    data, the line of every path and the issues must not depend on which one ran."""
    from vigil.config import yamlload

    assert yamlload._CSafeLoader is not None, "PyYAML here is built with libyaml"
    fast = yamlload.load_yaml(text)
    slow = yamlload._load(yamlload._LineLoader(text))
    assert (fast.data, fast.lines, fast.issues) == (slow.data, slow.lines, slow.issues)
    broken = "\t" in text or "[" * 2 in text.replace(" ", "")
    if broken:
        assert fast.issues, "a broken document must report an issue"
    else:
        assert yamlload._load_fast(text) is not None, "a good document is libyaml's"


def test_config_strings_are_fresh_and_interned() -> None:
    """The data holds none of the composer's strings (they would pin the freed node
    tree's memory; see yamlload._Duplicates.construct_scalar): every key and text is an
    interned copy, so a repeated key is one object."""
    import sys

    from vigil.config import yamlload

    data = yamlload.load_yaml("servers:\n  - address: 10.0.0.1\n  - address: 10.0.0.2\n").data
    first, second = data["servers"]
    (k1,), (k2,) = first.keys(), second.keys()
    assert k1 is k2 and sys.intern("address") is k1
    assert sys.intern("10.0.0.2") is second["address"]
