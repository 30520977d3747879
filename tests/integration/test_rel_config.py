"""Reliability of config loading (issue 15, defects 4 and 5), with real vigild processes.

Every path that loads a config (start, ``vigild --check``, POST /v1/reload, SIGHUP) gives
the same typed error for a config it refuses, with a ``reload_failed`` event and the
failure metric for reloads, one log line per issue and never a traceback.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from vigil.config.loader import MAX_CONFIG_BYTES

from tests.lab import Lab, wait_for
from tests.lab.agents import AgentHandle, bin_path

VIP = "10.99.0.100"


def config(**glob: Any) -> dict[str, Any]:
    return {
        "global": {"router_id": "n1", **glob},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 51,
                "priority": 150,
                "version": 3,
                "advert_interval": 0.1,
                "virtual_ipaddresses": [f"{VIP}/24"],
            }
        ],
    }


def one(lab: Lab) -> AgentHandle:
    lab.add_switch()
    lab.add_namespace("n1")
    lab.connect("n1", addrs=["10.99.0.11/24"])
    agent = lab.start_vigild("n1", config(), log_level="info")
    wait_for(lambda: lab.has_address("n1", VIP), timeout=5, what="n1 to hold the VIP")
    return agent


def failures(agent: AgentHandle) -> float:
    status, text = agent.client.get("/metrics")
    assert status == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vigil_config_reloads_total" and sample.labels == {
                "result": "failure"
            }:
                return float(sample.value)
    raise AssertionError("vigil_config_reloads_total{result=failure} is missing")


def reload_failed_after(agent: AgentHandle, seq: int) -> list[dict[str, Any]]:
    status, events = agent.client.get(f"/v1/events?since={seq}")
    assert status == 200
    return [e for e in events if e["kind"] == "reload_failed"]


def last_seq(agent: AgentHandle) -> int:
    return int(agent.client.get("/v1/events")[1][-1]["seq"])


def deep_yaml(levels: int = 600) -> str:
    return "a:\n" + "".join("  " * i + f"b{i}:\n" for i in range(1, levels))


def test_deep_nesting_is_the_same_typed_error_everywhere(lab: Lab) -> None:
    agent = one(lab)
    text = deep_yaml()
    agent.write_config(text)

    check = subprocess.run(
        [bin_path("vigild"), "--check", "--format", "json", "-c", str(agent.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 1, check
    assert "Traceback" not in check.stdout + check.stderr
    (expected,) = json.loads(check.stdout)["errors"]
    assert "nested more than 50 levels" in expected["message"]

    before = failures(agent)
    seq = last_seq(agent)
    status, body = agent.reload()
    assert status == 422, body
    assert [i["message"] for i in body["error"]["issues"]] == [expected["message"]]
    events = wait_for(lambda: reload_failed_after(agent, seq), what="reload_failed (API)")
    assert events[0]["data"]["issues"][0]["message"] == expected["message"]
    assert failures(agent) == before + 1

    seq = last_seq(agent)
    agent.sighup()
    events = wait_for(lambda: reload_failed_after(agent, seq), what="reload_failed (SIGHUP)")
    assert events[0]["data"]["issues"][0]["message"] == expected["message"]
    wait_for(lambda: failures(agent) == before + 2, what="the failure metric after SIGHUP")

    # The agent runs on with its config, and said so in a few lines, not thousands.
    assert lab.has_address("n1", VIP)
    assert agent.health()[0] == 200
    log = agent.log(tail=None)
    assert "Traceback" not in log
    assert sum("nested more than" in line for line in log.splitlines()) <= 4, log[-3000:]


def test_oversized_config_is_refused_by_reload(lab: Lab) -> None:
    agent = one(lab)
    agent.write_config("# " + "x" * (MAX_CONFIG_BYTES + 1024) + "\n")
    status, body = agent.reload()
    assert status == 422, body
    assert f"larger than {MAX_CONFIG_BYTES >> 20} MiB" in body["error"]["issues"][0]["message"]
    assert lab.has_address("n1", VIP)


def test_empty_config_is_refused_and_stopping_everything_needs_confirmation(lab: Lab) -> None:
    """Issue 15, defect 4: a truncated vigil.yml passed --check and its reload stopped
    every instance. Now it is an error unless it says allow_empty_config, and even then a
    reload that stops every running instance needs --confirm-stop-all."""
    agent = one(lab)
    agent.write_config("")  # truncated to nothing
    check = subprocess.run(
        [bin_path("vigild"), "--check", "-c", str(agent.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 1, check
    assert "allow_empty_config" in check.stdout
    status, body = agent.reload()
    assert status == 422, body
    assert "allow_empty_config" in body["error"]["issues"][0]["message"]
    assert lab.has_address("n1", VIP)

    # Explicitly empty: valid, but the reload would stop VI_1 -> refused without confirming.
    agent.write_config({"global": {"router_id": "n1", "allow_empty_config": True}})
    seq = last_seq(agent)
    status, body = agent.reload()
    assert status == 409, body
    assert "VI_1" in body["error"]["message"] and "--confirm-stop-all" in body["error"]["message"]
    assert reload_failed_after(agent, seq), "a refused reload must publish reload_failed"
    res = agent.vigilctl("reload")
    assert res.returncode == 1 and "409" in res.stdout + res.stderr, res
    seq = last_seq(agent)
    agent.sighup()  # SIGHUP cannot confirm
    wait_for(lambda: reload_failed_after(agent, seq), what="reload_failed after SIGHUP")
    assert lab.has_address("n1", VIP)
    assert agent.client.get("/v1/status")[1]["vrrp"]["instances"][0]["state"] == "MASTER"

    res = agent.vigilctl("reload", "--confirm-stop-all")
    assert res.returncode == 0, res
    wait_for(lambda: not lab.has_address("n1", VIP), timeout=5, what="the VIP to go")
    assert agent.client.get("/v1/status")[1]["vrrp"]["instances"] == []
