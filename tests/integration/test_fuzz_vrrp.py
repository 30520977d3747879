"""Fuzz at the socket, small: 20,000 malformed VRRP packets at a running vigild pair.

The full run (a million packets, for docs/reliability.md) is ``python -m bench.fuzz_vrrp``;
this one proves the tool works and holds the agents to what does not depend on the
machine's speed: no crash, no internal error, no state change, memory flat, every kind of
malformation counted under its reason. The advert gap is measured and recorded but not
asserted here (a timing on a shared machine; the full run reports it).
"""

from __future__ import annotations

from pathlib import Path

from bench import fuzz_vrrp
from tests.lab.lab import Lab

#: reasons the agents must have counted (each is produced by several kinds of mutant)
REASONS = {"length", "version", "checksum", "ttl", "type", "auth", "interval", "addresses", "own"}


def test_fuzz_20k_packets_at_a_pair(lab: Lab, tmp_path: Path) -> None:
    args = fuzz_vrrp.parse_args(["--count", "20000", "--rate", "10000", "--seed", "7"])
    result = fuzz_vrrp.FuzzRun(args, tmp_path).run(lab)

    assert result["sender"]["sent"] == 20000, result["sender"]
    assert set(result["sender"]["kinds"]) >= {"spoofed", "garbage", "ip_header", "ttl"}
    assert result["crashes"] == []
    assert result["transitions"] == [], result["transitions"]
    assert result["vip_changes"] == [], result["vip_changes"]
    assert result["state_changes"] == [], result["state_changes"]
    for name, agent in result["agents"].items():
        assert agent["alive"], name
        assert agent["tracebacks"] == 0, f"{name} logged a traceback"
        assert agent["rss_drift_kb"] is not None
        assert agent["rss_drift_kb"] <= fuzz_vrrp.RSS_DRIFT_LIMIT_KB, (name, agent)
        assert set(agent["rejected"]) >= REASONS, (name, agent["rejected"])
        assert agent["unknown_vrid"] > 0
        # Bad IPv6 checksums never reach the agent: the kernel checks them (IPV6_CHECKSUM).
        assert agent["kernel_drops"]["raw6_socket_drops"] > 0
    assert set(result["advert_gaps"]) == {"IPv4/51", "IPv4/53", "IPv6/52"}
