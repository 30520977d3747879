"""Semantic checks: each rule of docs/configuration.md fails with a message naming the fix."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from vigil.config import ConfigError, Issue
from vigil.subsystems import validate_data


def inst(name: str = "VI_1", vrid: int = 51, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "interface": "eth0",
        "vrid": vrid,
        "virtual_ipaddresses": ["10.0.0.100/24"],
    }
    data.update(extra)
    return data


def issues(data: dict[str, Any], *, check_files: bool = False) -> dict[str, Issue]:
    with pytest.raises(ConfigError) as info:
        validate_data(data, check_files=check_files)
    return {issue.path: issue for issue in info.value.issues}


def only_issue(data: dict[str, Any], *, check_files: bool = False) -> Issue:
    found = issues(data, check_files=check_files)
    assert len(found) == 1, found
    return next(iter(found.values()))


def test_instance_names_are_unique() -> None:
    issue = only_issue({"vrrp_instances": [inst(), inst(vrid=52)]})
    assert issue.path == "vrrp_instances[1].name"
    assert "'VI_1' is already used by vrrp_instances[0]" in issue.message


def test_sync_group_names_are_unique() -> None:
    data = {
        "vrrp_instances": [inst("A", 1), inst("B", 2)],
        "vrrp_sync_groups": [{"name": "G", "members": ["A"]}, {"name": "G", "members": ["B"]}],
    }
    issue = only_issue(data)
    assert issue.path == "vrrp_sync_groups[1].name"
    assert "already used" in issue.message


def test_vrid_once_per_interface_and_family() -> None:
    issue = only_issue({"vrrp_instances": [inst("VI_1"), inst("VI_2")]})
    assert issue.path == "vrrp_instances[1].vrid"
    assert issue.message == (
        "VRID 51 is already used on eth0 for IPv4 by vrrp_instances[0] (VI_1); pick another VRID"
    )


def test_same_vrid_is_fine_on_another_interface_or_family() -> None:
    other_if = inst("VI_2", interface="eth1")
    other_family = inst("VI_3", virtual_ipaddresses=["fd00::1/64"])
    config = validate_data({"vrrp_instances": [inst(), other_if, other_family]})
    assert [i.vrid for i in config.vrrp_instances] == [51, 51, 51]


def test_priority_255_needs_address_owner() -> None:
    issue = only_issue({"vrrp_instances": [inst(priority=255)]})
    assert issue.path == "vrrp_instances[0].priority"
    assert "address_owner: true" in issue.message


def test_address_owner_needs_priority_255() -> None:
    issue = only_issue({"vrrp_instances": [inst(priority=200, address_owner=True)]})
    assert issue.path == "vrrp_instances[0].address_owner"
    assert "priority 255" in issue.message


def test_ipv6_with_explicit_version_2_is_refused() -> None:
    data = {"vrrp_instances": [inst(version=2, virtual_ipaddresses=["fd00::1"])]}
    issue = only_issue(data)
    assert issue.path == "vrrp_instances[0].version"
    assert "set version: 3" in issue.message


def test_ipv6_is_version_3_even_when_global_default_is_2() -> None:
    data = {
        "global": {"vrrp_version": 2},
        "vrrp_instances": [inst(virtual_ipaddresses=["fd00::1"])],
    }
    assert validate_data(data).vrrp_instances[0].version == 3


def test_advertised_vips_are_one_family_but_excluded_may_mix() -> None:
    issue = only_issue({"vrrp_instances": [inst(virtual_ipaddresses=["10.0.0.1", "fd00::1"])]})
    assert issue.path == "vrrp_instances[0].virtual_ipaddresses[1]"
    assert "virtual_ipaddresses_excluded" in issue.message
    mixed = inst(virtual_ipaddresses_excluded=["fd00::1/64"])
    assert validate_data({"vrrp_instances": [mixed]}).vrrp_instances[0].family == 4


@pytest.mark.parametrize("interval", [0.5, 1.5])
def test_v2_interval_is_whole_seconds(interval: float) -> None:
    issue = only_issue({"vrrp_instances": [inst(advert_interval=interval)]})
    assert issue.path == "vrrp_instances[0].advert_interval"
    assert "set version: 3" in issue.message


def test_v3_interval_limits() -> None:
    too_long = only_issue({"vrrp_instances": [inst(version=3, advert_interval=41)]})
    assert "at most 40.95" in too_long.message
    fine_grain = only_issue({"vrrp_instances": [inst(version=3, advert_interval=0.015)]})
    assert "whole centiseconds" in fine_grain.message
    ok = validate_data({"vrrp_instances": [inst(version=3, advert_interval=0.07)]})
    assert ok.vrrp_instances[0].advert_interval == pytest.approx(0.07)


def test_unicast_peers_not_empty() -> None:
    issue = only_issue({"vrrp_instances": [inst(unicast={"peers": []})]})
    assert issue.path == "vrrp_instances[0].unicast.peers"
    assert "remove unicast" in issue.message


def test_unicast_peers_and_source_of_vip_family() -> None:
    unicast = {"source": "fd00::2", "peers": ["10.0.0.2", "fd00::3", "10.0.0.2"]}
    found = issues({"vrrp_instances": [inst(unicast=unicast)]})
    assert "peers must be of the VIP family" in found["vrrp_instances[0].unicast.peers[1]"].message
    twice = found["vrrp_instances[0].unicast.peers[2]"].message
    assert twice == "10.0.0.2 is listed twice (first as unicast.peers[0]); remove one"
    assert "is IPv6" in found["vrrp_instances[0].unicast.source"].message


def test_authentication_only_with_version_2() -> None:
    auth = {"type": "pass", "password": "secret"}
    issue = only_issue({"vrrp_instances": [inst(version=3, authentication=auth)]})
    assert issue.path == "vrrp_instances[0].authentication"
    assert "only in VRRPv2" in issue.message
    ok = validate_data({"vrrp_instances": [inst(authentication=auth)]})
    auth_cfg = ok.vrrp_instances[0].authentication
    assert auth_cfg is not None and auth_cfg.password == "secret"


@pytest.mark.parametrize(
    ("kind", "section", "entry"),
    [
        ("scripts", "vrrp_scripts", {"script": "/bin/true"}),
        ("files", "track_files", {"file": "/run/vigil/x"}),
        ("processes", "track_processes", {"process": "haproxy"}),
    ],
)
def test_tracked_objects_exist_with_did_you_mean(
    kind: str, section: str, entry: dict[str, Any]
) -> None:
    data = {section: {"chk_haproxy": entry}, "vrrp_instances": [inst(track={kind: ["chk_haprxy"]})]}
    issue = only_issue(data)
    assert issue.path == f"vrrp_instances[0].track.{kind}[0].name"
    assert issue.message == (f"no {section} entry named 'chk_haprxy'; did you mean 'chk_haproxy'?")
    data = {"vrrp_instances": [inst(track={kind: ["zzz"]})]}
    assert f"define it under {section}" in only_issue(data).message


def test_a_tracker_with_its_own_error_is_not_also_missing() -> None:
    data = {
        "vrrp_scripts": {"chk": {"script": "/bin/true", "fall": 0}},
        "vrrp_instances": [inst(track={"scripts": ["chk"]})],
    }
    assert list(issues(data)) == ["vrrp_scripts.chk.fall"]


def test_tracked_twice() -> None:
    data = {"vrrp_instances": [inst(track={"interfaces": ["eth1", {"name": "eth1"}]})]}
    issue = only_issue(data)
    assert issue.path == "vrrp_instances[0].track.interfaces[1]"
    assert issue.message == "'eth1' is tracked twice (first as track.interfaces[0]); remove one"


def test_address_owner_cannot_use_tracking_weights() -> None:
    data = {
        "vrrp_scripts": {"chk": {"script": "/bin/true", "weight": -10}},
        "vrrp_instances": [inst(address_owner=True, track={"scripts": ["chk"]})],
    }
    issue = only_issue(data)
    assert issue.path == "vrrp_instances[0].track.scripts[0].weight"
    assert "use weight 0" in issue.message


def test_sync_group_members_exist_and_belong_to_one_group() -> None:
    data = {
        "vrrp_instances": [inst("VI_1", 1), inst("VI_2", 2)],
        "vrrp_sync_groups": [
            {"name": "G1", "members": ["VI_1", "VI_3"]},
            {"name": "G2", "members": ["VI_2", "VI_1"]},
            {"name": "G3", "members": ["VI_2", "VI_2"]},
        ],
    }
    found = issues(data)
    missing = found["vrrp_sync_groups[0].members[1]"].message
    assert missing.startswith("no VRRP instance named 'VI_3'")
    twice = found["vrrp_sync_groups[1].members[1]"].message
    assert "already a member of sync group 'G1'" in twice
    assert "one group only" in twice
    assert "vrrp_sync_groups[2].members[0]" in found  # VI_2 already in G2
    assert len(found) == 4


def test_vip_labels() -> None:
    v6 = inst(virtual_ipaddresses=[{"address": "fd00::1", "label": "eth0:x"}])
    assert "only for IPv4" in only_issue({"vrrp_instances": [v6]}).message
    wrong = inst(virtual_ipaddresses=[{"address": "10.0.0.1", "label": "eth1:x"}])
    assert "start with 'eth0:'" in only_issue({"vrrp_instances": [wrong]}).message


def test_vip_listed_twice() -> None:
    data = inst(virtual_ipaddresses=["10.0.0.1/24"], virtual_ipaddresses_excluded=["10.0.0.1/32"])
    issue = only_issue({"vrrp_instances": [data]})
    assert issue.path == "vrrp_instances[0].virtual_ipaddresses_excluded[0]"


def test_route_families() -> None:
    route = {"to": "10.1.0.0/16", "via": "fd00::1"}
    issue = only_issue({"vrrp_instances": [inst(virtual_routes=[route])]})
    assert issue.path == "vrrp_instances[0].virtual_routes[0].via"


def test_vmac_names_are_unique() -> None:
    a = inst("A", 1, use_vmac="vip0")
    b = inst("B", 2, interface="eth1", use_vmac="vip0")
    issue = only_issue({"vrrp_instances": [a, b]})
    assert issue.path == "vrrp_instances[1].use_vmac"


def test_track_process_rules() -> None:
    data = {
        "track_processes": {
            "long": {"process": "a-process-name-longer-than-15"},
            "q": {"process": "x", "quorum": 3, "quorum_max": 2},
        }
    }
    found = issues(data)
    assert "full_command: true" in found["track_processes.long.process"].message
    assert "at least quorum (3)" in found["track_processes.q.quorum_max"].message


def test_track_file_path_is_absolute() -> None:
    issue = only_issue({"track_files": {"tf": {"file": "relative/path"}}})
    assert issue.path == "track_files.tf.file"


def test_script_command_quotes() -> None:
    issue = only_issue({"vrrp_scripts": {"s": {"script": "/bin/echo 'unbalanced"}}})
    assert "check its quotes" in issue.message


# -- checks against this host ----------------------------------------------------------------


def test_programs_must_exist(tmp_path: Path) -> None:
    data = {
        "vrrp_scripts": {"s": {"script": str(tmp_path / "missing.sh") + " arg"}},
        "vrrp_instances": [inst(notify={"master": "no-such-program-here --x"})],
        "vrrp_sync_groups": [{"name": "G", "members": ["VI_1"], "notify": {"fault": "bin/x"}}],
    }
    found = issues(data, check_files=True)
    assert "does not exist" in found["vrrp_scripts.s.script"].message
    assert "give its absolute path" in found["vrrp_instances[0].notify.master"].message
    assert "absolute path" in found["vrrp_sync_groups[0].notify.fault"].message
    # the controller cannot see the target host: check_files=False skips all of it
    assert validate_data(data, check_files=False).vrrp_scripts["s"].argv[-1] == "arg"


def test_program_must_be_executable(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    issue = only_issue({"vrrp_scripts": {"s": {"script": str(script)}}}, check_files=True)
    assert "not executable" in issue.message


def test_root_owned_system_programs_pass_script_security() -> None:
    data = {
        "vrrp_scripts": {"s": {"script": "true"}},  # found on the safe PATH
        "vrrp_instances": [inst(notify={"generic": "/bin/true --flag"})],
    }
    config = validate_data(data, check_files=True)
    assert config.vrrp_scripts["s"].argv == ("true",)


def _insecure_script(tmp_path: Path) -> Path:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    # group-writable: insecure whoever runs the test (as non-root it is also not root-owned)
    script.chmod(0o775)
    return script


def test_script_security_refuses_writable_scripts(tmp_path: Path) -> None:
    script = _insecure_script(tmp_path)
    data: dict[str, Any] = {"vrrp_scripts": {"s": {"script": str(script)}}}
    issue = only_issue(data, check_files=True)
    assert issue.path == "vrrp_scripts.s.script"
    assert issue.message.startswith(f"refusing '{script}'")
    assert "script_security: false" in issue.message
    data["global"] = {"script_security": False}
    assert validate_data(data, check_files=True).vrrp_scripts["s"].script == str(script)


def test_script_security_checks_parent_directories(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable, no sticky bit: anyone can swap the script
    script = shared / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    issue = only_issue({"vrrp_scripts": {"s": {"script": str(script)}}}, check_files=True)
    if os.geteuid() == 0:
        assert f"'{shared}' is writable by its group and everyone" in issue.message
    else:  # the file itself is owned by the test user
        assert "not root" in issue.message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create root-owned files")
def test_script_security_owner_must_be_root(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    os.chown(script, 65534, 65534)
    issue = only_issue({"vrrp_scripts": {"s": {"script": str(script)}}}, check_files=True)
    assert "not root" in issue.message
    os.chown(script, 0, 0)
    assert tmp_path.stat().st_mode & stat.S_IWOTH == 0
    assert validate_data({"vrrp_scripts": {"s": {"script": str(script)}}}, check_files=True)


def test_users_must_exist() -> None:
    data = {
        "global": {"script_user": "no-such-user-vigil"},
        "vrrp_scripts": {"s": {"script": "/bin/true", "user": "nobody:no-such-group-vigil"}},
    }
    found = issues(data, check_files=True)
    assert "does not exist on this host" in found["global.script_user"].message
    assert "group 'no-such-group-vigil'" in found["vrrp_scripts.s.user"].message


def test_script_security_follows_symlinks(tmp_path: Path) -> None:
    # a link to a root-owned system program: the link itself is what a user could swap
    link = tmp_path / "check"
    link.symlink_to("/bin/true")
    data = {"vrrp_scripts": {"s": {"script": str(link)}}}
    if os.geteuid() == 0:
        assert validate_data(data, check_files=True).vrrp_scripts["s"].script == str(link)
    else:
        assert "not root" in only_issue(data, check_files=True).message
    # a root-owned link to an insecure target is refused because of the target
    target = _insecure_script(tmp_path)
    link2 = tmp_path / "check2"
    link2.symlink_to(target)
    issue = only_issue({"vrrp_scripts": {"s": {"script": str(link2)}}}, check_files=True)
    assert str(target) in issue.message


def test_script_security_checks_interpreted_scripts(tmp_path: Path) -> None:
    script = _insecure_script(tmp_path)
    data = {"vrrp_instances": [inst(notify={"master": f"/bin/sh {script} --now"})]}
    issue = only_issue(data, check_files=True)
    assert issue.path == "vrrp_instances[0].notify.master"
    assert issue.message.startswith(f"refusing '{script}'")
