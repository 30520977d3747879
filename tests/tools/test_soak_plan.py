"""The chaos soak's pure parts: detection windows, the seeded schedule, the unit's
settings, outage attribution. No lab, no timing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.soak.cluster import UnitSettings
from bench.soak.injections import INJECTIONS, InjectionRecord
from bench.soak.model import default_groups, master_down_interval
from bench.soak.runner import attribute_outages
from bench.soak.schedule import Step, make_schedule


def test_master_down_interval_is_rfc_5798() -> None:
    # 3 x interval + (256 - priority) x interval / 256
    assert master_down_interval(3, 1.0, 100) == pytest.approx(3 + 156 / 256)
    assert master_down_interval(3, 0.1, 50) == pytest.approx(0.3 + 206 * 0.1 / 256)
    # VRRPv2: the skew is in seconds whatever the interval
    assert master_down_interval(2, 2.0, 100) == pytest.approx(6 + 156 / 256)


def test_windows_come_from_the_config() -> None:
    pair, trio = default_groups(0.1)
    vi4 = trio.primary
    # The lowest priority (50) waits longest; one interval and the margin on top.
    assert trio.window(vi4) == pytest.approx(master_down_interval(3, 0.1, 50) + 0.1 + 0.5)
    v2 = next(i for i in pair.instances if i.version == 2)
    assert pair.max_window == pytest.approx(pair.window(v2))
    assert pair.settle_s == pytest.approx(2 * pair.window(v2))
    cfg = pair.config(pair.nodes[0], extra_vip=True)
    first = cfg["vrrp_instances"][0]
    assert first["virtual_ipaddresses"] == ["10.61.0.100/24", "10.61.0.101/24"]
    assert cfg["vrrp_instances"][2]["authentication"]["type"] == "pass"
    assert {i["vrid"] for i in cfg["vrrp_instances"]} >= {i.vrid for i in trio.instances}


def test_schedule_is_seeded_bounded_and_alternates() -> None:
    groups = default_groups()
    a = make_schedule(7, 600, groups, INJECTIONS)
    assert a == make_schedule(7, 600, groups, INJECTIONS)
    assert a != make_schedule(8, 600, groups, INJECTIONS)
    assert 600 / 5 - 5 <= len(a) <= 600 / 2 + 1
    assert all(s.at < 600 for s in a)
    assert [s.group for s in a[:4]] == ["pair", "trio", "pair", "trio"]
    assert {s.kind for s in a} == set(INJECTIONS)  # ten minutes draw every kind
    only = make_schedule(7, 120, groups, INJECTIONS, only=["kill", "stop"])
    assert {s.kind for s in only} <= {"kill", "stop"}


@pytest.mark.parametrize("kind", sorted(INJECTIONS))
def test_every_injection_plans_sane_parameters(kind: str) -> None:
    inj = INJECTIONS[kind]
    groups = [g for g in default_groups() if inj.applies_to(g)]
    assert groups, f"{kind} applies to no group of the soak"
    for group in groups:
        for seed in range(20):
            params = inj.plan(random.Random(seed), group)
            assert params["role"] in {"master", "backup", "any"}
            low, high = inj.duration
            assert low <= params["duration"] <= high


def test_bfd_and_ipvs_join_the_groups_configs() -> None:
    """The pair's nodes run a BFD session to each other, named in the IPv4 instances'
    fast_takeover_bfd; the trio tracks its sessions to an upstream router and runs an IPVS
    virtual server whose quorum one dead real server loses. Both configs pass vigil's
    own validation."""
    from vigil.subsystems import validate_data

    pair, trio = default_groups(0.1)
    a1 = pair.config(pair.nodes[0])
    assert a1["bfd"]["sessions"] == [
        {"name": "peer", "peer": "10.61.0.12", "local": "10.61.0.11", "interface": "eth0",
         "min_tx": 0.1, "min_rx": 0.1, "multiplier": 3},
    ]  # fmt: skip
    fast = {i["name"]: i.get("fast_takeover_bfd") for i in a1["vrrp_instances"]}
    assert fast == {"VI_4": "peer", "VI_6": None, "VI_2": "peer"}
    b2 = trio.config(trio.nodes[1])
    assert [s["peer"] for s in b2["bfd"]["sessions"]] == ["10.62.0.254"]
    assert all(i["track"] == {"bfd": ["upstream"]} for i in b2["vrrp_instances"])
    (vs,) = b2["virtual_servers"]
    assert vs["quorum"] == len(vs["real_servers"]) == 2
    assert trio.ipvs is not None and trio.ipvs.real_server_names == (
        "10.62.0.31:80",
        "10.62.0.32:80",
    )
    for group in (pair, trio):
        for node in group.nodes:
            validate_data(group.config(node, extra_vip=True), check_files=False)


def test_unit_settings_follow_the_unit_file(tmp_path: Path) -> None:
    unit = tmp_path / "vigild.service"
    unit.write_text(
        "[Service]\nRestartSec=2s\nLimitNOFILE=65536\n# LimitNOFILE=1\n"
        "StartLimitBurst=3\nStartLimitIntervalSec=1min\n"
    )
    s = UnitSettings.from_unit(unit)
    assert (s.nofile_soft, s.nofile_hard) == (65536, 65536)
    assert s.restart_sec == 2.0 and s.start_limit_burst == 3 and s.start_limit_interval == 60.0
    defaults = UnitSettings.from_unit(tmp_path / "missing.service")
    assert (defaults.nofile_soft, defaults.nofile_hard) == (1024, 524288)


def test_outages_are_attributed_to_the_injection_in_effect() -> None:
    pair, trio = default_groups()
    groups = {"pair": pair, "trio": trio}
    rec = InjectionRecord(Step(3, 10.0, "pair", "kill", {"role": "master", "duration": 0}))
    rec.started, rec.healed = 110.0, 112.0
    other = InjectionRecord(Step(4, 12.0, "trio", "stop", {"role": "master", "duration": 1}))
    other.started, other.healed = 113.0, 114.0
    probes = {
        "10.61.0.100": {
            "group": "pair",
            "raw": {
                "t0_monotonic": 100.0,
                "outages": [
                    {"start": 5.0, "end": 5.1, "lost": 5, "duration_ms": 100.0},  # before
                    {"start": 11.0, "end": 11.4, "lost": 20, "duration_ms": 400.0},
                    {"start": 14.0, "end": 14.2, "lost": 10, "duration_ms": 200.0},
                    {"start": 80.0, "end": 80.1, "lost": 5, "duration_ms": 100.0},  # long after
                ],
            },
        }
    }
    out = attribute_outages(probes, [rec, other], groups, t_start=108.0)
    assert [(o["injection"], o["duration_ms"]) for o in out] == [
        ("kill", 400.0),
        ("kill", 200.0),  # 2 s after the heal: within the pair's settle time
        (None, 100.0),
    ]
