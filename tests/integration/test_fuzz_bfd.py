"""Fuzz at the socket, small: 20,000 malformed BFD packets at a vigild pair with live sessions.

The full run (a million packets, for docs/reliability.md) is ``python -m bench.fuzz_bfd``;
this one proves the tool works and holds the agents to what does not depend on the
machine's speed: no crash, no internal error, no session or VRRP state change, memory
flat, the malformations counted under their reasons (per session, and as packets no
session was found for). Gaps on the wire are recorded, not asserted (timing on a shared
machine; the full run reports them).
"""

from __future__ import annotations

from pathlib import Path

from bench import fuzz_bfd
from tests.lab.lab import Lab

#: reasons the agents must have counted for packets no session took
UNMATCHED = {"version", "length", "truncated", "detect_mult", "multipoint", "my_discriminator",
             "your_discriminator", "no_session", "address"}  # fmt: skip
#: and per session (the TTL of neutralized packets, auth on the keyed session)
SESSION = {"p4/ttl", "p6/ttl", "a4/ttl", "a4/auth_missing", "a4/auth_key_id"}


def test_fuzz_20k_bfd_packets_at_a_pair(lab: Lab, tmp_path: Path) -> None:
    args = fuzz_bfd.parse_args(["--count", "20000", "--rate", "10000", "--seed", "7"])
    result = fuzz_bfd.BfdFuzzRun(args, tmp_path).run(lab)

    assert result["sender"]["sent"] == 20000, result["sender"]
    assert set(result["sender"]["kinds"]) >= {"src_address", "garbage", "ttl", "auth_digest"}
    assert result["crashes"] == []
    assert result["transitions"] == [], result["transitions"]
    assert result["vip_changes"] == [], result["vip_changes"]
    assert result["state_changes"] == [], result["state_changes"]
    for name, agent in result["agents"].items():
        assert agent["alive"], name
        assert agent["tracebacks"] == 0, f"{name} logged a traceback"
        assert agent["rss_drift_kb"] is not None
        assert agent["rss_drift_kb"] <= fuzz_bfd.RSS_DRIFT_LIMIT_KB, (name, agent)
        assert {k for k, v in agent["unmatched"].items() if v} >= UNMATCHED, agent["unmatched"]
        assert set(agent["session_rejects"]) >= SESSION, agent["session_rejects"]
        assert all(s == "Up" for s in agent["states"].values()), agent["states"]
    assert set(result["bfd_tx_gaps"]) == {"10.99.0.12", "10.99.1.12", "fd00:99::12"}
