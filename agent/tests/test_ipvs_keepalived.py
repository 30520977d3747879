"""keepalived's LVS configuration -> vigil's IPVS section (vigil.ipvs.keepalived).

The fixtures are a realistic director pair (fixtures/keepalived/lvs_pair/): a group of
NAT web services with persistence, quorum, hysteresis, a sorry server, alpha and omega, a
DR DNS service with ha_suspend, a fwmark service over a GUE tunnel, and SMTP, with every
checker keepalived has. The import must validate as it is, pass the pair checks the
Ansible collection runs, and name each keyword it leaves out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vigil.ipvs.checkers import (
    BfdCheck,
    DnsCheck,
    FileCheck,
    HttpCheck,
    MiscCheck,
    PingCheck,
    SmtpCheck,
    TcpCheck,
    UdpCheck,
)
from vigil.keepalived import ImportResult, import_keepalived
from vigil.subsystems import check_cluster, validate_data

PAIR = Path(__file__).parent / "fixtures" / "keepalived" / "lvs_pair"


def imported(name: str) -> ImportResult:
    return import_keepalived(str(PAIR / name))


def line_of(name: str, text: str) -> int:
    for number, line in enumerate((PAIR / name).read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {name}")


def servers(result: ImportResult) -> list[dict[str, Any]]:
    return list(result.config["virtual_servers"])


def test_the_pair_imports_validates_and_agrees() -> None:
    results = {name: imported(f"{name}.conf") for name in ("lvs1", "lvs2")}
    configs = {}
    for name, result in results.items():
        assert result.errors == [], result.errors
        configs[name] = validate_data(result.config, check_files=False, source=name)
    assert check_cluster(configs) == []
    ipvs = configs["lvs1"].section("ipvs")
    assert [vs.name for vs in ipvs.virtual_servers] == [
        "WEB_tcp",
        "udp_10.80.0.20_53",
        "fwmark_7",
        "tcp_10.80.0.30_25",
    ]
    assert [str(ep) for ep in ipvs.virtual_servers[0].services] == [
        "tcp 10.80.0.10:80",
        "tcp 10.80.0.11:80",
        "tcp 10.80.0.12:80",
        "fwmark 100",
    ]


def test_what_is_left_out_is_named_with_its_line() -> None:
    result = imported("lvs1.conf")
    left = {(u.keyword, u.line) for u in result.unsupported}
    assert left == {
        ("lvs_timeouts", line_of("lvs1.conf", "lvs_timeouts")),
        ("smtp_alert", line_of("lvs1.conf", "smtp_alert")),
        ("regex_options", line_of("lvs1.conf", "regex_options")),
    }
    reasons = {u.keyword: u.reason for u in result.unsupported}
    assert "ipvsadm --set" in reasons["lvs_timeouts"]


def test_virtual_server_settings() -> None:
    web, dns, mark, smtp = servers(imported("lvs1.conf"))
    assert {k: web[k] for k in ("group", "scheduler", "forwarding", "quorum", "hysteresis")} == {
        "group": "WEB",
        "scheduler": "wlc",
        "forwarding": "nat",
        "quorum": 2,
        "hysteresis": 1,
    }
    assert web["persistence"] == {"timeout": 300, "granularity": "255.255.255.0"}
    assert web["sorry_server"] == {"address": "10.81.0.99", "port": 80, "inhibit": True}
    assert (web["alpha"], web["omega"]) == (True, True)
    assert web["quorum_down"] == "/usr/local/bin/lvs-notify web down"
    assert dns["protocol"] == "udp" and dns["forwarding"] == "dr"
    assert dns["scheduler_flags"] == ["sh-port"] and dns["one_packet"] is True
    assert dns["ha_suspend"] == "VI_EXT"  # the instance that holds 10.80.0.20
    assert mark["tunnel"] == {"type": "gue", "port": 6080, "checksum": "csum"}
    assert mark["scheduler_flags"] == ["mh-fallback"] and "protocol" not in mark
    assert smtp["delay_loop"] == 15


def test_real_servers_and_every_checker() -> None:
    cfg = validate_data(imported("lvs1.conf").config, check_files=False).section("ipvs")
    web, dns, mark, smtp = cfg.virtual_servers
    rs11, rs12 = web.real_servers
    assert (rs11.weight, rs11.notify_up) == (2, "/usr/local/bin/lvs-notify rs11 up")
    (http,) = [c.settings for c in rs11.checks]
    assert isinstance(http, HttpCheck) and not http.tls
    assert [u.path for u in http.urls] == ["/health", "/"]
    assert http.urls[0].digest == "9b3a0c85a887a256d6939da88aabd8cd"
    assert http.urls[0].status_codes == ((200, 299),) and http.urls[1].regex == "ok"
    assert (http.retry, http.delay_before_retry, http.delay_loop) == (2, 2.0, 5.0)
    assert (rs12.inhibit_on_failure, rs12.upper_threshold, rs12.lower_threshold) == (
        True,
        100,
        50,
    )
    (https,) = [c.settings for c in rs12.checks]
    assert isinstance(https, HttpCheck) and https.tls and https.enable_sni
    assert https.virtualhost == "www.example.org"  # one URL: on the check itself
    dns_check, udp = (c.settings for c in dns.real_servers[0].checks)
    assert isinstance(dns_check, DnsCheck) and (dns_check.type, dns_check.query_name) == (
        "A",
        "example.org",
    )
    assert isinstance(udp, UdpCheck) and udp.payload == b"\x01\x02"
    assert udp.reply_pattern == b"\x01\x00" and udp.reply_mask == b"\xff\x00"
    ping, misc = (c.settings for c in mark.real_servers[0].checks)
    assert isinstance(ping, PingCheck)
    assert isinstance(misc, MiscCheck) and misc.misc_dynamic and misc.user == "nobody"
    assert misc.argv == ("/usr/local/bin/check-backend", "10.81.0.31")
    assert misc.misc_timeout == 5
    assert str(mark.real_servers[0].forwarding) == "tun (gue:6080/csum)"
    smtp_check, tcp, file, bfd = (c.settings for c in smtp.real_servers[0].checks)
    assert isinstance(smtp_check, SmtpCheck) and smtp_check.helo_name == "lb.example.org"
    assert isinstance(tcp, TcpCheck) and tcp.connect_port == 587
    assert isinstance(file, FileCheck) and file.path == "/run/lvs/maintenance"
    assert file.weight == 0
    # BFD_CHECK { name upstream } follows the session bfd_instance upstream became
    assert isinstance(bfd, BfdCheck) and bfd.session == "upstream" and not bfd.alpha
    assert bfd.timing().retry == 0


def test_bfd_check_needs_its_bfd_instance(tmp_path: Path) -> None:
    result = _one(
        tmp_path,
        """
        bfd_instance gw {
           neighbor_ip 10.9.1.254
           source_ip 10.9.1.10
        }
        virtual_server 10.9.0.1 80 {
           lb_algo rr
           real_server 10.9.1.1 80 {
              BFD_CHECK {
                 name gw
                 alpha
                 delay_loop 3
              }
              BFD_CHECK {
                 alpha
              }
           }
        }
        """,
    )
    checks = result.config["virtual_servers"][0]["real_servers"][0]["checks"]
    assert checks == [{"type": "bfd", "session": "gw", "alpha": True}]
    # keepalived's BFD_CHECK knows only name and alpha; one without a name is refused
    assert any(u.keyword == "delay_loop" for u in result.unsupported)
    assert any("BFD_CHECK" in e and "needs name" in e for e in result.errors)
    cfg = validate_data(result.config, check_files=False).section("ipvs")
    (check,) = cfg.virtual_servers[0].real_servers[0].checks
    assert isinstance(check.settings, BfdCheck) and check.settings.alpha


def test_sync_daemon_follows_the_named_instance() -> None:
    result = imported("lvs1.conf")
    assert result.config["ipvs_sync_daemon"] == {
        "interface": "eth1",
        "instance": "VI_INT",
        "syncid": 10,
        "maxlen": 1400,
        "port": 8848,
        "ttl": 1,
    }
    assert any("the sync daemon follows VI_INT" in note for note in result.notes)


def test_origins_point_back_into_keepalived_conf() -> None:
    result = imported("lvs1.conf")
    origin = result.origin_of("virtual_servers[1].real_servers[0].checks[0].query_name")
    assert origin is not None and origin[1] == line_of("lvs1.conf", "name example.org")


def _one(tmp_path: Path, text: str) -> ImportResult:
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return import_keepalived(str(path))


def test_small_cases(tmp_path: Path) -> None:
    result = _one(
        tmp_path,
        """
        virtual_server 10.9.0.1 443 {
           lb_algo rr
           persistence_timeout
           ha_suspend
           real_server 10.9.1.1 443 {
              TCP_CHECK { nb_get_retry 4 }
              weight 0
              unknown_thing 1
           }
        }
        virtual_server 10.9.0.1 {
           lb_algo rr
        }
        """,
    )
    first = result.config["virtual_servers"][0]
    assert first["persistence"] == {"timeout": 360}
    assert first["real_servers"][0]["checks"] == [{"type": "tcp", "retry": 4}]
    assert "ha_suspend" not in first  # no VRRP instance holds 10.9.0.1
    keywords = {u.keyword for u in result.unsupported}
    assert {"ha_suspend", "unknown_thing"} <= keywords
    assert any("a port is needed unless it is persistent" in e for e in result.errors)


@pytest.mark.parametrize(
    ("line", "keyword"),
    [
        ("lvs_flush", "lvs_flush"),
        ("lvs_notify_fifo /run/fifo", "lvs_notify_fifo"),
        ("checker_process_name chk", "checker_process_name"),
        ("lvs_something_new 1", "lvs_something_new"),
    ],
)
def test_global_lvs_keywords_are_named(tmp_path: Path, line: str, keyword: str) -> None:
    result = _one(tmp_path, f"global_defs {{\n   {line}\n}}\n")
    assert [u.keyword for u in result.unsupported] == [keyword]
