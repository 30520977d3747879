"""IPVS's config section: schema, semantic checks, inheritance, model, diff, cluster checks.

Each rule of docs/configuration.md ("virtual_servers") fails with a message naming the
fix, at the dotted path of the offending key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil.config import ConfigError, Issue
from vigil.ipvs.checkers import DnsCheck, FileCheck, HttpCheck, MiscCheck, TcpCheck, UdpCheck
from vigil.ipvs.config import IpvsConfig
from vigil.subsystems import check_cluster, diff_configs, validate_data

VIP = "10.0.0.100"


def vrrp(name: str = "VI_1") -> dict[str, Any]:
    return {
        "name": name,
        "interface": "eth0",
        "vrid": 51,
        "virtual_ipaddresses": [f"{VIP}/24"],
    }


def vs(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "web",
        "address": VIP,
        "port": 80,
        "real_servers": [{"address": "10.0.1.11"}, {"address": "10.0.1.12"}],
    }
    data.update(extra)
    return data


def load(*servers: dict[str, Any], **top: Any) -> IpvsConfig:
    model: IpvsConfig = validate_data(
        {"vrrp_instances": [vrrp()], "virtual_servers": list(servers), **top}, check_files=False
    ).section("ipvs")
    return model


def issues(*servers: dict[str, Any], check_files: bool = False, **top: Any) -> dict[str, str]:
    data = {"vrrp_instances": [vrrp()], "virtual_servers": list(servers), **top}
    with pytest.raises(ConfigError) as info:
        validate_data(data, check_files=check_files)
    return {issue.path: issue.message for issue in info.value.issues}


def one(*servers: dict[str, Any], **top: Any) -> tuple[str, str]:
    found = issues(*servers, **top)
    assert len(found) == 1, found
    return next(iter(found.items()))


# ---------------------------------------------------------------------------- the model


def test_defaults_and_names() -> None:
    unnamed = vs()
    del unnamed["name"]
    cfg = load(unnamed, {"fwmark": 5, "real_servers": []})
    web, mark = cfg.virtual_servers
    assert (web.name, mark.name) == ("tcp_10.0.0.100_80", "fwmark_5")
    assert (web.scheduler, web.forwarding.method, web.quorum, web.delay_loop) == (
        "wlc",
        "nat",
        1,
        60.0,
    )
    assert [rs.label for rs in web.real_servers] == ["10.0.1.11:80", "10.0.1.12:80"]
    assert [str(ep) for ep in mark.services] == ["fwmark 5"]


def test_checkers_inherit_from_real_server_then_virtual_server() -> None:
    cfg = load(
        vs(
            delay_loop=3,
            retry=2,
            connect_timeout=2,
            virtualhost="www.example",
            real_servers=[
                {
                    "address": "10.0.1.11",
                    "delay_loop": 5,
                    "checks": [
                        {"type": "http", "path": "/h", "status_codes": [200, "300-399"]},
                        {"type": "tcp", "retry": 0},
                        {"type": "dns", "query_type": "A", "query_name": "example.org"},
                        {"type": "udp", "payload": "ab 01", "reply_pattern": "abxx"},
                        {"type": "misc", "command": "/bin/true x", "dynamic": True},
                        {"type": "file", "path": "/run/w", "weight": 3},
                    ],
                }
            ],
        )
    )
    checks = [c.settings for c in cfg.virtual_servers[0].real_servers[0].checks]
    http, tcp, dns, udp, misc, file = checks
    assert isinstance(http, HttpCheck) and http.delay_loop == 5 and http.retry == 2
    assert http.connect_timeout == 2 and http.virtualhost == "www.example"
    assert http.urls[0].path == "/h" and http.urls[0].status_codes == ((200, 200), (300, 399))
    assert isinstance(tcp, TcpCheck) and tcp.retry == 0
    assert isinstance(dns, DnsCheck) and dns.qtype == 1 and dns.query_name == "example.org"
    assert isinstance(udp, UdpCheck) and udp.payload == b"\xab\x01" and udp.require_reply
    assert udp.reply_mask == b"\xff\x00"
    assert isinstance(misc, MiscCheck) and misc.argv == ("/bin/true", "x") and misc.misc_dynamic
    assert misc.user == "nobody"
    # FILE checks take none of the inherited schedule: they poll every second
    assert isinstance(file, FileCheck) and file.delay_loop == 1.0 and file.weight == 3


def test_file_check_by_track_file_name() -> None:
    cfg = validate_data(
        {
            "track_files": {"w": {"file": "/run/w", "weight": -2}},
            "virtual_servers": [
                vs(real_servers=[{"address": "10.0.1.11", "checks": [{"type": "file",
                                                                       "track_file": "w"}]}])
            ],
        },
        check_files=False,
    ).section("ipvs")  # fmt: skip
    check = cfg.virtual_servers[0].real_servers[0].checks[0].settings
    assert isinstance(check, FileCheck) and (check.path, check.weight) == ("/run/w", -2)


def test_forwarding_inheritance_tunnel_and_sorry_server() -> None:
    cfg = load(
        vs(
            forwarding="tun",
            tunnel={"type": "gue", "port": 6080, "checksum": "csum"},
            sorry_server={"address": "10.0.1.99", "forwarding": "nat", "inhibit": True},
            real_servers=[{"address": "10.0.1.11"}, {"address": "10.0.1.12", "forwarding": "dr"}],
        )
    )
    web = cfg.virtual_servers[0]
    assert str(web.real_servers[0].forwarding) == "tun (gue:6080/csum)"
    assert str(web.real_servers[1].forwarding) == "dr"
    assert web.sorry_server is not None and web.sorry_server.label == "10.0.1.99:80"
    assert web.sorry_server.forwarding.method == "nat" and web.sorry_server.inhibit


def test_groups_expand_to_every_member() -> None:
    cfg = load(
        {"group": "g", "persistence": 300, "real_servers": [{"address": "10.0.1.11"}]},
        virtual_server_groups=[
            {
                "name": "g",
                "members": [
                    {"address": "10.0.0.1-3", "port": 80},
                    {"address": "10.0.0.8/30", "port": 443},
                    {"address": "10.0.0.20"},
                    {"fwmark": 9},
                ],
            }
        ],
    )
    assert [str(ep) for ep in cfg.virtual_servers[0].services] == [
        "tcp 10.0.0.1:80",
        "tcp 10.0.0.2:80",
        "tcp 10.0.0.3:80",
        "tcp 10.0.0.8:443",
        "tcp 10.0.0.9:443",
        "tcp 10.0.0.10:443",
        "tcp 10.0.0.11:443",
        "tcp 10.0.0.20:0",
        "fwmark 9",
    ]


def test_persistence_granularity_and_the_sync_daemon_syncid() -> None:
    cfg = load(
        vs(persistence={"timeout": 600, "granularity": "255.255.255.0", "engine": "sip"}),
        ipvs_sync_daemon={"interface": "eth0", "instance": "VI_1"},
    )
    p = cfg.virtual_servers[0].persistence
    assert p is not None and (p.timeout, p.prefix, p.engine) == (600, 24, "sip")
    sync = cfg.ipvs_sync_daemon
    assert sync is not None and sync.syncid == 51  # the instance's VRID by default


def test_to_dict_validates_again_and_keeps_only_what_was_written() -> None:
    data = {
        "vrrp_instances": [vrrp()],
        "virtual_servers": [
            vs(
                delay_loop=2,
                real_servers=[{"address": "10.0.1.11", "checks": [{"type": "tcp"}]}],
            )
        ],
        "ipvs_sync_daemon": {"interface": "eth0", "instance": "VI_1"},
    }
    first = validate_data(data, check_files=False)
    again = validate_data(yaml.safe_load(yaml.safe_dump(first.to_dict())), check_files=False)
    assert again.section("ipvs") == first.section("ipvs")
    rs = first.to_dict()["virtual_servers"][0]["real_servers"][0]
    assert "delay_loop" not in rs and rs["checks"] == [{"type": "tcp"}]


# ---------------------------------------------------------------------------- errors


def test_unknown_keys_get_did_you_mean() -> None:
    assert one(vs(schedular="rr")) == (
        "virtual_servers[0].schedular",
        "unknown key; did you mean 'scheduler'?",
    )
    path, message = one(vs(real_servers=[{"address": "10.0.1.11", "checks": [{"type": "htp"}]}]))
    assert path == "virtual_servers[0].real_servers[0].checks[0]"
    assert message.endswith("got 'htp'; did you mean 'http'?")


def test_every_problem_is_reported_at_once() -> None:
    found = issues(
        vs(
            scheduler="wlc",
            scheduler_flags=["sh-port"],
            one_packet=True,
            quorum=5,
            ha_suspend="VI_9",
            real_servers=[
                {"address": "fd00::1"},
                {"address": "10.0.1.12", "forwarding": "dr", "port": 81, "lower_threshold": 5},
            ],
        )
    )
    assert found == {
        "virtual_servers[0].scheduler_flags[0]": "sh-port belongs to the sh scheduler, not "
        "wlc; remove it or use scheduler: sh",
        "virtual_servers[0].one_packet": "one-packet scheduling is for UDP services; remove "
        "it or use protocol: udp",
        "virtual_servers[0].real_servers[0].address": "fd00::1 is IPv6 but the virtual server "
        "is IPv4; only tunnelled real servers may differ (forwarding: tun)",
        "virtual_servers[0].real_servers[1].port": "direct routing cannot change the port: "
        "the real server gets the packet as sent to port 80; use port 80 or leave port out",
        "virtual_servers[0].real_servers[1].lower_threshold": "has no effect without "
        "upper_threshold; set both or neither",
        "virtual_servers[0].quorum": "5 can never be reached: the real servers' weights add "
        "up to 2; lower quorum or raise the weights",
        "virtual_servers[0].ha_suspend": "no VRRP instance named 'VI_9'; did you mean 'VI_1'?",
    }


@pytest.mark.parametrize(
    ("server", "path", "text"),
    [
        (vs(address=None), "virtual_servers[0]", "an address (with port), a fwmark or a group"),
        (vs(fwmark=3), "virtual_servers[0]", "got address and fwmark"),
        (vs(port=0), "virtual_servers[0].port", "port 0 (every port) needs persistence"),
        (vs(hysteresis=1), "virtual_servers[0].hysteresis", "must be smaller than quorum (1)"),
        (vs(tunnel={"type": "gre"}), "virtual_servers[0].tunnel", "only for forwarding: tun"),
        (
            vs(forwarding="tun", tunnel={"type": "gue"}),
            "virtual_servers[0].tunnel.port",
            "required for a gue tunnel",
        ),
        (
            vs(forwarding="tun", tunnel={"type": "gre", "checksum": "remcsum"}),
            "virtual_servers[0].tunnel.checksum",
            "gre tunnels take nocsum or csum",
        ),
        (
            vs(persistence={"granularity": 40}),
            "virtual_servers[0].persistence.granularity",
            "IPv4 prefix length 0..32",
        ),
        (
            vs(sorry_server="10.0.1.11"),
            "virtual_servers[0].sorry_server",
            "is also a real server of this virtual server",
        ),
        (
            vs(real_servers=[{"address": "10.0.1.11"}, {"address": "10.0.1.11"}]),
            "virtual_servers[0].real_servers[1]",
            "is listed twice (first as real_servers[0])",
        ),
        (
            {"name": "fw", "fwmark": 62, "forwarding": "dr",
             "real_servers": [{"address": "10.0.1.11", "port": 80},
                              {"address": "10.0.1.11", "port": 443}]},
            "virtual_servers[0].real_servers[1].address",
            "10.0.1.11 is already real_servers[0]; with forwarding dr the kernel holds one "
            "destination per address",
        ),
        (
            vs(real_servers=[{"address": "10.0.1.11", "upper_threshold": 5,
                              "lower_threshold": 9}]),
            "virtual_servers[0].real_servers[0].lower_threshold",
            "must not exceed upper_threshold (5)",
        ),
        (
            vs(real_servers=[{"address": "10.0.1.11",
                              "checks": [{"type": "http", "urls": ["/a"], "path": "/b"}]}]),
            "virtual_servers[0].real_servers[0].checks[0]",
            "give the URL either on the check or in urls, not both",
        ),
        (
            vs(real_servers=[{"address": "10.0.1.11",
                              "checks": [{"type": "http", "digest": "abc"}]}]),
            "virtual_servers[0].real_servers[0].checks[0]",
            "digest: must be 32 hex digits",
        ),
        (
            vs(real_servers=[{"address": "10.0.1.11",
                              "checks": [{"type": "http", "enable_sni": True}]}]),
            "virtual_servers[0].real_servers[0].checks[0].enable_sni",
            "unknown key",
        ),
        (
            vs(real_servers=[{"address": "10.0.1.11",
                              "checks": [{"type": "file", "track_file": "nope"}]}]),
            "virtual_servers[0].real_servers[0].checks[0]",
            "no track_files entry named 'nope'",
        ),
    ],
)  # fmt: skip
def test_semantic_rules(server: dict[str, Any], path: str, text: str) -> None:
    found = issues(server)
    assert path in found, found
    assert text in found[path], found[path]


def test_a_fwmark_real_server_without_a_port_needs_connect_port() -> None:
    path, message = one(
        {"fwmark": 3, "real_servers": [{"address": "10.0.1.11", "checks": ["tcp"]}]}
    )
    assert path == "virtual_servers[0].real_servers[0].checks[0]"
    assert "needs a port" in message and "set connect_port" in message


def test_services_and_names_are_unique_across_virtual_servers() -> None:
    found = issues(vs(), vs(name="web2"), vs(name="web", address="10.0.0.101"))
    assert found["virtual_servers[1]"].startswith(
        "tcp 10.0.0.100:80 is already served by virtual_servers[0] (web)"
    )
    assert found["virtual_servers[2].name"].startswith("virtual server name 'web' is already")


def test_group_problems() -> None:
    found = issues(
        {"group": "g", "real_servers": []},
        {"group": "nope", "real_servers": []},
        virtual_server_groups=[
            {"name": "g", "members": [{"address": "10.0.0.1"}, {"address": "fd00::1",
                                                               "port": 80}]}
        ],
    )  # fmt: skip
    assert "a group serves one address family" in found["virtual_server_groups[0].members"]
    assert "needs persistence" in found["virtual_servers[0].group"]
    assert "no virtual server group named 'nope'" in found["virtual_servers[1].group"]


def test_sync_daemon_must_follow_a_known_instance() -> None:
    path, message = one(vs(), ipvs_sync_daemon={"interface": "eth0", "instance": "VI_X"})
    assert path == "ipvs_sync_daemon.instance" and "no VRRP instance named 'VI_X'" in message


def test_host_checks_name_missing_programs(tmp_path: Path) -> None:
    found = issues(
        vs(
            quorum_down="/nonexistent/quorum-down",
            real_servers=[
                {
                    "address": "10.0.1.11",
                    "notify_up": "/nonexistent/up",
                    "checks": [{"type": "misc", "command": "/nonexistent/check"}],
                }
            ],
        ),
        check_files=True,
    )
    assert set(found) == {
        "virtual_servers[0].quorum_down",
        "virtual_servers[0].real_servers[0].notify_up",
        "virtual_servers[0].real_servers[0].checks[0].command",
    }


# ---------------------------------------------------------------------------- diff, cluster


def test_diff_names_virtual_and_real_servers() -> None:
    base = {"vrrp_instances": [vrrp()], "virtual_servers": [vs(), vs(name="api", port=8080)]}
    old = validate_data(base, check_files=False)
    new_data = copy.deepcopy(base)
    new_data["virtual_servers"][0]["real_servers"].append({"address": "10.0.1.13"})
    new_data["virtual_servers"][0]["real_servers"][0]["weight"] = 3
    del new_data["virtual_servers"][1]
    new_data["virtual_servers"].append(vs(name="mail", port=25))
    diff = diff_configs(old, validate_data(new_data, check_files=False)).section("ipvs")
    assert diff is not None
    assert (diff.added, diff.removed, diff.changed) == (("mail",), ("api",), ("web",))
    change = diff.details["web"]
    assert change.rs_added == ("10.0.1.13:80",) and change.rs_changed == ("10.0.1.11:80",)
    assert "web real servers +1 ~1" in diff.summary()


def test_cluster_checks_between_directors() -> None:
    def director(name: str = "d1", **changes: Any) -> Any:
        data = {
            "global": {"router_id": name},
            "vrrp_instances": [vrrp()],
            "virtual_servers": [vs(scheduler=changes.get("scheduler", "rr"))],
            "ipvs_sync_daemon": {
                "interface": "eth0",
                "instance": "VI_1",
                **changes.get("sync", {}),
            },
        }
        return validate_data(data, check_files=False)

    assert check_cluster({"d1": director(), "d2": director("d2")}) == []
    found = check_cluster(
        {"d1": director(), "d2": director("d2", scheduler="wrr", sync={"syncid": 9})}
    )
    assert (
        Issue(
            "virtual_servers[0].scheduler",
            "web: scheduler is wrr here but rr on d1; clients would be spread differently",
            file="d2",
        )
        in found
    )
    assert any(i.path == "ipvs_sync_daemon.syncid" and i.file == "d2" for i in found)
    lonely = validate_data(
        {"global": {"router_id": "d2"}, "vrrp_instances": [vrrp()]}, check_files=False
    )
    found = check_cluster({"d1": director(), "d2": lonely})
    assert any("not on d2; after a failover nobody would serve it" in i.message for i in found)
    assert any(i.path == "ipvs_sync_daemon" and i.file == "d2" for i in found)
