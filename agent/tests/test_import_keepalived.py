"""keepalived.conf -> vigil config: fields, unsupported keywords, validation, CLI exit codes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil.config import ConfigError
from vigil.keepalived import (
    ImportResult,
    Unsupported,
    import_keepalived,
    import_main,
    render_yaml,
)
from vigil.subsystems import check_command, validate_data

FIXTURES = Path(__file__).parent / "fixtures" / "keepalived"
VALID = [
    "haproxy_pair/lb1.conf",
    "haproxy_pair/lb2.conf",
    "multi_interface.conf",
    "unicast.conf",
    "ipv6.conf",
    "sync_groups.conf",
    "split/keepalived.conf",
    "lvs_director.conf",
    "checksum_v3_as_v2.conf",
]
INVALID = ["invalid_duplicate_vrid.conf", "invalid_priority.conf"]


def fixture(name: str) -> str:
    return str(FIXTURES / name)


def imported(name: str) -> ImportResult:
    return import_keepalived(fixture(name))


def instance(result: ImportResult, name: str) -> dict[str, Any]:
    for inst in result.config["vrrp_instances"]:
        if inst["name"] == name:
            return dict(inst)
    raise AssertionError(f"no instance {name} in {result.config['vrrp_instances']}")


def line_of(path: str, text: str) -> int:
    """1-based line of the first line of `path` containing `text` (fixture lines move)."""
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def run_main(path: str, fmt: str = "yaml") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = import_main(path, out=out, err=err, fmt=fmt)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", VALID)
def test_valid_fixture_converts_and_validates_clean(name: str) -> None:
    result = imported(name)
    assert result.errors == []
    config = validate_data(result.config, check_files=False)
    assert len(config.vrrp_instances) == len(result.config["vrrp_instances"]) >= 1


@pytest.mark.parametrize("name", VALID)
def test_cli_exits_0_and_prints_yaml_that_round_trips(name: str) -> None:
    code, out, err = run_main(fixture(name))
    assert code == 0, err
    assert out.startswith(f"# vigil config imported from {fixture(name)}")
    assert yaml.safe_load(out) == imported(name).config
    for line in err.splitlines():
        assert ": not carried over (" in line


def test_haproxy_pair_fields() -> None:
    lb1, lb2 = imported("haproxy_pair/lb1.conf"), imported("haproxy_pair/lb2.conf")
    g = lb1.config["global"]
    assert g == {
        "router_id": "lb1",
        "script_user": "root",
        "script_security": True,
        "garp": {"lower_prio_repeat": 5},
    }
    assert lb1.config["vrrp_scripts"] == {
        "chk_haproxy": {
            "script": "/usr/bin/pgrep -x haproxy",
            "interval": 2,
            "timeout": 3,
            "weight": -30,
            "fall": 2,
            "rise": 2,
        }
    }
    web1, web2 = instance(lb1, "VI_WEB"), instance(lb2, "VI_WEB")
    assert (web1["interface"], web1["vrid"], web1["priority"]) == ("eth0", 51, 150)
    assert web2["priority"] == 100 and web2["vrid"] == web1["vrid"]
    assert web1["advert_interval"] == 1
    assert web1["virtual_ipaddresses"][0] == {
        "address": "10.20.0.100/24",
        "dev": "eth0",
        "label": "eth0:web",
    }
    assert web1["track"] == {"scripts": ["chk_haproxy"]}
    assert web1["notify"] == {
        "master": "/etc/keepalived/notify.sh MASTER VI_WEB",
        "backup": "/etc/keepalived/notify.sh BACKUP VI_WEB",
        "fault": "/etc/keepalived/notify.sh FAULT VI_WEB",
        "stop": "/etc/keepalived/notify_stop.sh",
    }
    # `state` is a hint: a note, not an instance key and not a lost keyword
    assert "state" not in web1
    assert not any(u.keyword == "state" for u in lb1.unsupported)
    assert any("'state MASTER' is only a start-up hint" in n for n in lb1.notes)
    assert any("'state BACKUP' is only a start-up hint" in n for n in lb2.notes)


def test_haproxy_pair_email_settings_are_listed_with_lines() -> None:
    path = fixture("haproxy_pair/lb1.conf")
    found = {(u.keyword, u.line) for u in imported("haproxy_pair/lb1.conf").unsupported}
    for keyword in ("notification_email", "notification_email_from", "smtp_server"):
        assert (keyword, line_of(path, keyword + " ")) in found
    assert ("smtp_alert", line_of(path, "smtp_alert")) in found


def test_instance_key_order_is_readable() -> None:
    out = render_yaml(imported("multi_interface.conf"))
    block = out.split("- name: VI_PUB", 1)[1]
    keys = [line.split(":")[0].strip() for line in block.splitlines()[1:5]]
    assert keys == ["interface", "vrid", "priority", "advert_interval"]


def test_render_is_deterministic_and_lists_what_was_left_out() -> None:
    first = render_yaml(imported("lvs_director.conf"))
    assert first == render_yaml(imported("lvs_director.conf"))
    assert "# Not carried over:" in first
    assert "lvs_flush: not carried over (vigil never flushes the whole table" in first


def test_multi_interface_fields() -> None:
    result = imported("multi_interface.conf")
    garp = result.config["global"]["garp"]
    assert garp == {
        "master_delay": 10,
        "master_repeat": 3,
        "master_refresh": 60,
        "master_refresh_repeat": 2,
        "interval": 0.001,
        "lower_prio_repeat": 1,
        "lower_prio_delay": 10,
    }
    assert result.config["global"]["vrrp_version"] == 2
    assert result.config["track_files"] == {
        "maint_mode": {"file": "/var/run/keepalived/maintenance", "weight": -10, "init_file": 0}
    }
    assert result.config["track_processes"]["nginx"] == {
        "process": "nginx",
        "weight": 20,
        "quorum": 1,
        "delay": 2,
        "terminate_delay": 2,
    }
    pub = instance(result, "VI_PUB")
    assert pub["preempt"] is False and pub["advert_interval"] == 2
    assert pub["virtual_ipaddresses"] == [
        {"address": "10.0.10.10/24", "dev": "eth0", "scope": "global"},
        {"address": "10.0.10.11/24", "dev": "eth0", "label": "eth0:1"},
    ]
    assert pub["virtual_ipaddresses_excluded"] == [
        "10.0.10.50/24",
        {"address": "fd00:10::50/64", "dev": "eth0"},
    ]
    assert pub["track"] == {
        "interfaces": [{"name": "eth1", "weight": -40}],
        "files": ["maint_mode"],
        "processes": [{"name": "nginx", "weight": 25}],
    }
    assert pub["garp"] == {"master_delay": 5, "master_repeat": 2}
    priv = instance(result, "VI_PRIV")
    assert priv["preempt_delay"] == 30 and priv["use_vmac"] == "vrrp.20"
    assert priv["virtual_routes"] == [
        {"to": "10.8.0.0/16", "via": "10.1.20.254", "dev": "eth1"},
        {
            "to": "10.9.0.0/16",
            "via": "10.1.20.253",
            "dev": "eth1",
            "src": "10.1.20.1",
            "metric": 100,
            "table": 100,
        },
        {"to": "default", "via": "10.1.20.254", "dev": "eth1", "table": 200},
    ]
    assert priv["track"] == {"interfaces": ["eth0"]}
    # the standard broadcast is implied, so it is a note, not a loss
    assert any("brd 10.0.10.255 is the standard broadcast" in n for n in result.notes)
    path = fixture("multi_interface.conf")
    lost = {(u.keyword, u.line) for u in result.unsupported}
    assert lost == {
        ("lvs_flush", line_of(path, "lvs_flush")),
        ("dont_track_primary", line_of(path, "dont_track_primary")),
    }


def test_unicast_and_pass_auth() -> None:
    db = instance(imported("unicast.conf"), "VI_DB")
    assert db["unicast"] == {"source": "10.30.0.11", "peers": ["10.30.0.12", "10.30.0.13"]}
    assert db["authentication"] == {"type": "pass", "password": "s3cr3tpw"}
    assert db["notify"] == {"generic": "/etc/keepalived/notify_all.sh"}


def test_ipv6_instance_is_version_3() -> None:
    result = imported("ipv6.conf")
    v4, v6 = instance(result, "VI_V4"), instance(result, "VI_V6")
    assert result.config["global"]["vrrp_version"] == 3
    assert v6["version"] == 3 and v6["advert_interval"] == 0.1
    assert v6["virtual_ipaddresses"] == ["fd00:40::10/64", "fd00:40::11/64"]
    assert "version" not in v4 and v4["vrid"] == v6["vrid"] == 71
    assert any("native_ipv6" in n for n in result.notes)


def test_sync_groups_and_address_owner() -> None:
    result = imported("sync_groups.conf")
    groups = result.config["vrrp_sync_groups"]
    assert groups[0] == {
        "name": "VG_GW",
        "members": ["VI_OUT", "VI_IN"],
        "notify": {
            "master": "/etc/keepalived/gw_notify.sh master",
            "backup": "/etc/keepalived/gw_notify.sh backup",
            "fault": "/etc/keepalived/gw_notify.sh fault",
            "generic": "/etc/keepalived/gw_log.sh",
        },
    }
    assert groups[1] == {"name": "VG_DMZ", "members": ["VI_DMZ", "VI_DMZ6"]}
    dmz, dmz6 = instance(result, "VI_DMZ"), instance(result, "VI_DMZ6")
    assert dmz["priority"] == 255 and dmz["address_owner"] is True
    assert dmz6["address_owner"] is True and dmz6["version"] == 3
    assert result.unsupported == []


def test_split_config_reports_unsupported_inside_included_files() -> None:
    result = imported("split/keepalived.conf")
    assert [i["name"] for i in result.config["vrrp_instances"]] == ["VI_WEB", "VI_MAIL"]
    assert "chk_nginx" in result.config["vrrp_scripts"]
    assert instance(result, "VI_MAIL")["track"] == {
        "scripts": [{"name": "chk_nginx", "weight": -10}]
    }
    web = fixture("split/conf.d/20-web.conf")
    mail = fixture("split/conf.d/30-mail.conf")
    assert result.unsupported == [
        Unsupported(
            web, line_of(web, "garp_extra_if"), "garp_extra_if", result.unsupported[0].reason
        ),
        Unsupported(mail, line_of(mail, "smtp_alert"), "smtp_alert", result.unsupported[1].reason),
    ]
    code, _, err = run_main(fixture("split/keepalived.conf"))
    assert code == 0
    assert f"{web}:{line_of(web, 'garp_extra_if')}: garp_extra_if: not carried over (" in err
    assert len(result.files) == 4


def test_virtual_server_blocks_are_converted() -> None:
    """The IPVS part of the import (its details: agent/tests/test_ipvs_keepalived.py)."""
    result = imported("lvs_director.conf")
    assert [(vs["address"], vs["port"]) for vs in result.config["virtual_servers"]] == [
        ("10.70.0.10", 80),
        ("10.70.0.10", 443),
    ]
    assert result.config["ipvs_sync_daemon"] == {"interface": "eth0", "instance": "VI_LVS"}
    assert {u.keyword for u in result.unsupported} == {"lvs_flush"}
    assert instance(result, "VI_LVS")["vrid"] == 101


def test_v3_checksum_as_v2() -> None:
    inst = instance(imported("checksum_v3_as_v2.conf"), "VI_CISCO")
    assert inst["v3_checksum_pseudo_header"] is False


@pytest.mark.parametrize(
    ("name", "path", "text"),
    [
        ("invalid_duplicate_vrid.conf", "vrrp_instances[1].vrid", "virtual_router_id 51"),
        ("invalid_priority.conf", "vrrp_instances[0].priority", "priority 300"),
    ],
)
def test_invalid_fixture_exits_1_naming_path_and_keepalived_line(
    name: str, path: str, text: str
) -> None:
    code, out, err = run_main(fixture(name))
    assert code == 1
    assert out.startswith("# vigil config imported from")
    lines = [ln for ln in err.splitlines() if f": {path}: " in ln]
    assert lines, err
    # the line is the keepalived line of the offending keyword (the last match for VRIDs)
    numbers = [
        n for n, ln in enumerate(Path(fixture(name)).read_text().splitlines(), 1) if text in ln
    ]
    assert lines[0].startswith(f"{fixture(name)}:{numbers[-1]}: {path}: ")


def test_json_format() -> None:
    code, out, _ = run_main(fixture("lvs_director.conf"), fmt="json")
    doc = json.loads(out)
    assert code == 0 and doc["errors"] == []
    assert doc["config"]["vrrp_instances"][0]["name"] == "VI_LVS"
    assert doc["unsupported"][0] == {
        "file": fixture("lvs_director.conf"),
        "line": 5,
        "keyword": "lvs_flush",
        "reason": "vigil never flushes the whole table; it removes what it added (journal)",
    }
    code, out, _ = run_main(fixture("invalid_priority.conf"), fmt="json")
    assert code == 1
    assert any("vrrp_instances[0].priority" in e for e in json.loads(out)["errors"])


def test_parse_error_exits_2_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "keepalived.conf"
    bad.write_text("global_defs {\n  router_id x\n}\nvrrp_instance VI_1 {\n  priority 100\n")
    code, out, err = run_main(str(bad))
    assert code == 2 and out == ""
    assert err.startswith(f"{bad}:4: ")
    code, out, err = run_main(str(bad), fmt="json")
    assert code == 2 and json.loads(out)["errors"][0].startswith(f"{bad}:4: ")


def test_missing_file_and_missing_include_exit_2(tmp_path: Path) -> None:
    code, _, err = run_main(str(tmp_path / "absent.conf"))
    assert code == 2 and str(tmp_path / "absent.conf") in err
    main = tmp_path / "keepalived.conf"
    main.write_text("global_defs {\n}\ninclude /nonexistent-vigil-test/extra.conf\n")
    code, _, err = run_main(str(main))
    assert code == 2 and err.startswith(f"{main}:3: ")


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return str(path)


INSTANCE = """vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 5
    priority %s
    virtual_ipaddress {
        10.0.0.5/24
    }
%s}
"""


def test_priority_255_sets_address_owner(tmp_path: Path) -> None:
    result = import_keepalived(write(tmp_path, INSTANCE % ("255", "")))
    inst = instance(result, "VI_1")
    assert inst["address_owner"] is True and inst["priority"] == 255
    validate_data(result.config, check_files=False)


def test_unknown_keyword_and_vip_options_are_listed(tmp_path: Path) -> None:
    extra = (
        "    frobnicate 3\n    virtual_ipaddress_excluded {\n        10.0.0.6/24 no_track\n    }\n"
    )
    result = import_keepalived(write(tmp_path, INSTANCE % ("100", extra)))
    got = {(u.keyword, u.line) for u in result.unsupported}
    assert ("frobnicate", 8) in got
    assert ("no_track (VIP option)", 10) in got


def test_ah_auth_and_strict_mode_are_unsupported(tmp_path: Path) -> None:
    text = "global_defs {\n  vrrp_strict\n}\n" + INSTANCE % (
        "100",
        "    authentication {\n      auth_type AH\n      auth_pass x\n    }\n",
    )
    result = import_keepalived(write(tmp_path, text))
    kinds = {u.keyword for u in result.unsupported}
    assert {"vrrp_strict", "auth_type AH"} <= kinds
    assert "authentication" not in instance(result, "VI_1")


def test_long_password_is_cut_to_8_like_keepalived(tmp_path: Path) -> None:
    auth = "    authentication {\n      auth_type PASS\n      auth_pass 0123456789\n    }\n"
    result = import_keepalived(write(tmp_path, INSTANCE % ("100", auth)))
    assert instance(result, "VI_1")["authentication"]["password"] == "01234567"
    assert any("first 8 characters" in n for n in result.notes)


def test_bad_number_is_an_error_with_location(tmp_path: Path) -> None:
    path = write(tmp_path, INSTANCE % ("high", ""))
    code, _, err = run_main(path)
    assert code == 1
    assert f"{path}:4: priority: 'high' is not a whole number" in err


def test_weight_reverse_and_track_options(tmp_path: Path) -> None:
    text = (
        "vrrp_script chk {\n  script /bin/true\n  weight 10 reverse\n  init_fail\n"
        "  user nobody nogroup\n}\n"
        + INSTANCE
        % (
            "100",
            "    track_script {\n        chk weight -5 reverse\n    }\n    track_bfd {\n"
            "        b1\n    }\n",
        )
    )
    result = import_keepalived(write(tmp_path, text))
    assert result.config["vrrp_scripts"]["chk"] == {
        "script": "/bin/true",
        "weight": 10,
        "weight_reverse": True,
        "init_fail": True,
        "user": "nobody:nogroup",
    }
    assert instance(result, "VI_1")["track"]["scripts"] == [
        {"name": "chk", "weight": -5, "weight_reverse": True}
    ]
    assert instance(result, "VI_1")["track"]["bfd"] == ["b1"]
    assert not any(u.keyword == "track_bfd" for u in result.unsupported)
    # keepalived's bfd_instance b1 is not in this file: the reference is named
    with pytest.raises(ConfigError, match="no BFD session named 'b1'"):
        validate_data(result.config, check_files=False)


def test_scripts_without_user_settings_run_as_root_without_security(tmp_path: Path) -> None:
    text = INSTANCE % ("100", '    notify_master "/etc/keepalived/up.sh VI_1"\n')
    result = import_keepalived(write(tmp_path, text))
    assert result.config["global"] == {
        "script_user": "root",
        "script_security": False,
        "garp": {"lower_prio_repeat": 5},
    }
    assert sum("keepalived" in n for n in result.notes) >= 2


def test_sync_group_members_lose_track_weights_like_keepalived(tmp_path: Path) -> None:
    text = (
        "vrrp_script chk {\n  script /bin/true\n  weight -20\n}\n"
        "vrrp_sync_group G {\n  group {\n    VI_1\n  }\n}\n"
        + INSTANCE
        % ("100", "    track_script {\n        chk\n    }\n")
    )
    result = import_keepalived(write(tmp_path, text))
    assert instance(result, "VI_1")["track"]["scripts"] == [{"name": "chk", "weight": 0}]
    assert any("sync group" in n and "chk" in n for n in result.notes)


def test_imported_pair_passes_check_command(tmp_path: Path) -> None:
    for node in ("lb1", "lb2"):
        code, out, err = run_main(fixture(f"haproxy_pair/{node}.conf"))
        assert code == 0, err
        target = tmp_path / f"{node}.yml"
        target.write_text(out)
        report = io.StringIO()
        assert check_command(str(target), out=report, check_files=False) == 0, report.getvalue()
        assert report.getvalue() == f"{target}: OK (1 VRRP instance)\n"


def test_lower_priority_garp_follows_keepalived_defaults(tmp_path: Path) -> None:
    text = "global_defs {\n  vrrp_garp_master_repeat 2\n  vrrp_garp_master_delay 7\n}\n"
    result = import_keepalived(write(tmp_path, text + INSTANCE % ("100", "")))
    assert result.config["global"]["garp"] == {
        "master_repeat": 2,
        "master_delay": 7,
        "lower_prio_repeat": 2,
        "lower_prio_delay": 7,
    }


def test_repeated_keyword_keeps_the_last_value_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, INSTANCE % ("100\n    priority 400", ""))
    result = import_keepalived(path)
    assert instance(result, "VI_1")["priority"] == 400
    code, _, err = run_main(path)
    assert code == 1 and f"{path}:5: vrrp_instances[0].priority: " in err


def test_notify_user_words_are_not_part_of_the_command(tmp_path: Path) -> None:
    text = INSTANCE % ("100", "    notify_master /etc/keepalived/up.sh root\n")
    result = import_keepalived(write(tmp_path, text))
    assert instance(result, "VI_1")["notify"] == {"master": "/etc/keepalived/up.sh"}
    assert [(u.keyword, u.line) for u in result.unsupported] == [("notify_master root", 8)]


def test_blackhole_route_is_skipped_not_imported_as_unicast(tmp_path: Path) -> None:
    routes = (
        "    virtual_routes {\n        blackhole 10.9.0.0/16\n        10.8.0.0/16 dev eth0\n    }\n"
    )
    result = import_keepalived(write(tmp_path, INSTANCE % ("100", routes)))
    assert instance(result, "VI_1")["virtual_routes"] == [{"to": "10.8.0.0/16", "dev": "eth0"}]
    assert [(u.keyword, u.line) for u in result.unsupported] == [("blackhole (route type)", 9)]


def test_authentication_with_vrrp3_is_dropped_like_keepalived(tmp_path: Path) -> None:
    auth = "    version 3\n    authentication {\n      auth_type PASS\n      auth_pass abc\n    }\n"
    path = write(tmp_path, INSTANCE % ("100", auth))
    result = import_keepalived(path)
    assert "authentication" not in instance(result, "VI_1")
    assert [(u.keyword, u.line) for u in result.unsupported] == [("authentication", 9)]
    assert run_main(path)[0] == 0


def test_conditional_and_parameter_lines_are_reported_at_any_depth(tmp_path: Path) -> None:
    extra = "    @lb1 nopreempt\n    $EXTRA=1\n"
    result = import_keepalived(
        write(tmp_path, "@lb2 global_defs {\n}\n" + INSTANCE % ("100", extra))
    )
    assert [(u.keyword, u.line) for u in result.unsupported] == [
        ("@lb2", 1),
        ("@lb1", 10),
        ("$EXTRA=1", 11),
    ]
    assert "preempt" not in instance(result, "VI_1")


def test_vigilctl_import_keepalived_runs_the_importer() -> None:
    from vigil.cli import main

    out, err = io.StringIO(), io.StringIO()
    assert main(["import-keepalived", fixture("lvs_director.conf")], out, err) == 0
    assert yaml.safe_load(out.getvalue()) == imported("lvs_director.conf").config
    assert "lvs_flush: not carried over" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert main(["import-keepalived", fixture("invalid_priority.conf")], out, err) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="script security wants root-owned scripts")
def test_imported_pair_passes_check_command_with_file_checks(tmp_path: Path) -> None:
    """As vigild --check would run on the node: scripts must exist and be root-only."""
    scripts = tmp_path / "scripts"
    scripts.mkdir(mode=0o755)
    for name in ("notify.sh", "notify_stop.sh"):
        (scripts / name).write_text("#!/bin/sh\nexit 0\n")
        (scripts / name).chmod(0o755)
    for node in ("lb1", "lb2"):
        text = Path(fixture(f"haproxy_pair/{node}.conf")).read_text()
        conf = tmp_path / f"{node}.conf"
        conf.write_text(text.replace("/etc/keepalived/", f"{scripts}/"))
        code, out, err = run_main(str(conf))
        assert code == 0, err
        target = tmp_path / f"{node}.yml"
        target.write_text(out)
        report = io.StringIO()
        assert check_command(str(target), out=report) == 0, report.getvalue()
