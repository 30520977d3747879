"""A vigil pair in namespaces: election, failover on every kind of failure, VIP care.

Two nodes (n1 priority 150, n2 priority 100) and a client on one bridge; every test
observes the kernel (addresses in the nodes), the wire (the client's probe) or the
agent's API, waiting on conditions with deadlines.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.lab.lab import Lab
from tests.lab.probe import Probe

VIP4 = "10.99.0.100"
VIP6 = "fd00:99::100"


def node_config(name: str, priority: int, **overrides: Any) -> dict[str, Any]:
    inst4: dict[str, Any] = {
        "name": "VI_4",
        "interface": "eth0",
        "vrid": 51,
        "priority": priority,
        "version": 3,
        "advert_interval": 0.1,
        "virtual_ipaddresses": [f"{VIP4}/24"],
    }
    inst6: dict[str, Any] = {
        "name": "VI_6",
        "interface": "eth0",
        "vrid": 52,
        "priority": priority,
        "version": 3,
        "advert_interval": 0.1,
        "virtual_ipaddresses": [f"{VIP6}/64"],
    }
    inst4.update(overrides.pop("vi4", {}))
    inst6.update(overrides.pop("vi6", {}))
    cfg: dict[str, Any] = {
        "global": {"router_id": name},
        "vrrp_instances": [inst4, inst6],
    }
    cfg.update(overrides)
    return cfg


def build(lab: Lab) -> tuple[Any, Any, Any]:
    n1 = lab.add_namespace("n1")
    n2 = lab.add_namespace("n2")
    client = lab.add_namespace("client")
    lab.connect(n1, addrs=["10.99.0.11/24", "fd00:99::11/64"])
    lab.connect(n2, addrs=["10.99.0.12/24", "fd00:99::12/64"])
    lab.connect(client, addrs=["10.99.0.20/24", "fd00:99::20/64"])
    return n1, n2, client


def instance(agent: Any, name: str) -> dict[str, Any]:
    status, body = agent.client.get(f"/v1/vrrp/instances/{name}")
    assert status == 200, body
    return dict(body)


def holders(lab: Lab, nodes: list[Any], addr: str) -> list[str]:
    return [str(n) for n in nodes if lab.has_address(n, addr)]


def start_pair(lab: Lab, **overrides: Any) -> tuple[Any, Any, Any, Any, Any]:
    n1, n2, client = build(lab)
    a1 = lab.start_vigild(n1, node_config("n1", 150, **copy.deepcopy(overrides)))
    a2 = lab.start_vigild(n2, node_config("n2", 100, **copy.deepcopy(overrides)))
    lab.wait_for(
        lambda: lab.has_address(n1, VIP4) and lab.has_address(n1, VIP6),
        timeout=10,
        what="n1 to hold both VIPs",
    )
    lab.wait_for(
        lambda: (
            instance(a2, "VI_4")["state"] == "BACKUP"
            and instance(a2, "VI_4")["master_address"] == "10.99.0.11"
            # Each instance sends on its own schedule: VI_6's first advert from n1 may
            # still be on its way when VI_4's has arrived.
            and instance(a2, "VI_6")["state"] == "BACKUP"
            and instance(a2, "VI_6")["master_address"] is not None
        ),
        timeout=5,
        what="n2 to be BACKUP and see n1 as master in both instances",
    )
    return n1, n2, client, a1, a2


def test_election_api_and_metrics(lab: Lab) -> None:
    n1, n2, _client, a1, a2 = start_pair(lab)
    assert holders(lab, [n1, n2], VIP4) == [str(n1)]
    assert holders(lab, [n1, n2], VIP6) == [str(n1)]

    m = instance(a1, "VI_4")
    assert m["state"] == "MASTER"
    assert m["priority"] == 150 and m["effective_priority"] == 150
    assert m["vips"] == [{"address": f"{VIP4}/24", "dev": "eth0", "present": True}]
    assert m["counters"]["adverts_sent"] > 0
    assert m["counters"]["became_master"] == 1

    b6 = instance(a2, "VI_6")
    assert b6["state"] == "BACKUP"
    assert b6["master_address"].startswith("fe80::")
    assert b6["master_priority"] == 150
    assert b6["vips"][0]["present"] is False
    assert b6["counters"]["adverts_received"] > 0

    status, body = a2.client.get("/v1/status")
    assert status == 200
    states = {i["name"]: i["state"] for i in body["vrrp"]["instances"]}
    assert states == {"VI_4": "BACKUP", "VI_6": "BACKUP"}

    out = a1.vigilctl("status", "-o", "json", check=True).stdout
    import json

    doc = json.loads(out)
    for inst in doc["vrrp"]["instances"]:
        for key in (
            "name",
            "state",
            "priority",
            "effective_priority",
            "master_address",
            "vips",
            "counters",
        ):
            assert key in inst, key

    status, metrics = a1.client.get("/metrics")
    assert status == 200
    assert 'vigil_vrrp_state{instance="VI_4",state="MASTER"} 1.0' in metrics
    assert 'vigil_vrrp_vip_present{address="10.99.0.100/24",instance="VI_4"} 1.0' in metrics

    status, body = a1.client.get("/v1/vrrp/instances/VI_9")
    assert status == 404
    assert "VI_4" in body["error"]["message"] and "VI_6" in body["error"]["message"]


@pytest.mark.parametrize("family", [4, 6])
def test_crash_of_master_moves_vips(lab: Lab, family: int) -> None:
    """SIGKILL of the master's whole process group plus a cable pull (its VIP stays behind)."""
    n1, n2, client, a1, a2 = start_pair(lab)
    vip = VIP4 if family == 4 else VIP6
    probe = Probe(lab, client, vip).start()
    probe.wait_received(5)
    lab.kill_group(a1)
    lab.cable_pull(n1)
    lab.wait_address(n2, vip, timeout=5)
    probe.wait_received(10, timeout=5)
    result = probe.stop()
    assert result.lost > 0, "a crash must cost some probes; the probe saw none lost"
    name = "VI_4" if family == 4 else "VI_6"
    inst = instance(a2, name)
    assert inst["state"] == "MASTER"
    assert inst["last_transition"]["reason"].startswith("master down timer expired")


def test_clean_stop_sends_priority_zero(lab: Lab) -> None:
    n1, n2, client, a1, a2 = start_pair(lab)
    before = instance(a2, "VI_4")["counters"]["priority_zero_received"]
    probe = Probe(lab, client, VIP4).start()
    probe.wait_received(5)
    assert a1.stop() == 0
    lab.wait_address(n2, VIP4, timeout=5)
    assert not lab.has_address(n1, VIP4), "a clean stop must remove the VIP"
    probe.wait_received(10, timeout=5)
    probe.stop()
    after = instance(a2, "VI_4")
    assert after["counters"]["priority_zero_received"] > before
    assert "priority 0" in after["last_transition"]["reason"] or after["state"] == "MASTER"


def test_link_down_faults_and_preempts_back(lab: Lab) -> None:
    n1, n2, _client, a1, a2 = start_pair(lab)
    lab.link_down(n1)
    lab.wait_for(lambda: instance(a1, "VI_4")["state"] == "FAULT", 5, what="n1 VI_4 FAULT")
    lab.wait_address(n2, VIP4, timeout=5)
    assert not lab.has_address(n1, VIP4)
    assert "eth0" in (instance(a1, "VI_4")["fault_reason"] or "")
    lab.link_up(n1)
    lab.wait_address(n1, VIP4, timeout=10)
    lab.wait_address(n2, VIP4, present=False, timeout=5)
    assert instance(a1, "VI_4")["state"] == "MASTER"
    assert instance(a2, "VI_4")["state"] == "BACKUP"


def test_deleted_vip_is_restored_with_an_event(lab: Lab) -> None:
    n1, _n2, _client, a1, _a2 = start_pair(lab)
    lab.del_addr(n1, "eth0", f"{VIP4}/24")
    lab.wait_address(n1, VIP4, timeout=5)
    status, events = a1.client.get("/v1/events?since=0")
    assert status == 200
    kinds = [(e["kind"], e.get("instance")) for e in events]
    assert ("vip_restored", "VI_4") in kinds


def test_restart_after_crash_removes_leftover_vip(lab: Lab) -> None:
    """A crashed master leaves its VIP; the restarted agent removes it (journal) first."""
    n1, n2, _client, a1, _a2 = start_pair(lab)
    lab.kill_group(a1)
    assert lab.has_address(n1, VIP4), "SIGKILL should leave the VIP behind"
    lab.wait_address(n2, VIP4, timeout=5)
    # Restart n1 as a low-priority node so it must not become master again.
    low = node_config("n1", 50)
    a1b = lab.start_vigild(n1, low)  # same name: same state dir and socket
    lab.wait_address(n1, VIP4, present=False, timeout=5)
    assert instance(a1b, "VI_4")["state"] == "BACKUP"
    status, events = a1b.client.get("/v1/events?since=0")
    assert status == 200
    assert any(e["kind"] == "vip_cleanup" for e in events)


def journal_addresses(agent: Any) -> dict[str, list[list[str]]]:
    path = agent.state_dir / "vrrp-journal.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {name: e["addresses"] for name, e in data["entries"].items()}


def test_journal_is_written_before_a_takeover_and_emptied_by_a_stop(lab: Lab) -> None:
    """A backup has journaled its VIPs before it could need them, so a takeover does not
    wait for the file; leaving master keeps them there; a clean stop empties it."""
    n1, n2, _client, a1, a2 = start_pair(lab)
    expected = {
        "VI_4": [["eth0", f"{VIP4}/24"]],
        "VI_6": [["eth0", f"{VIP6}/64"]],
    }
    # Written within the journal's batching delay (50 ms) of the start; never master yet.
    lab.wait_for(lambda: journal_addresses(a2) == expected, timeout=5, what="n2's journal")
    assert journal_addresses(a1) == expected
    lab.kill_group(a1)
    lab.cable_pull(n1)
    lab.wait_address(n2, VIP4, timeout=5)
    assert journal_addresses(a2) == expected
    assert a2.stop() == 0
    assert not lab.has_address(n2, VIP4) and not lab.has_address(n2, VIP6)
    assert journal_addresses(a2) == {}


def test_unicast_pair(lab: Lab) -> None:
    n1, n2, _client = build(lab)
    c1 = node_config("n1", 150)
    c2 = node_config("n2", 100)
    c1["vrrp_instances"] = c1["vrrp_instances"][:1]
    c2["vrrp_instances"] = c2["vrrp_instances"][:1]
    c1["vrrp_instances"][0]["unicast"] = {
        "source": "10.99.0.11",
        "peers": ["10.99.0.12"],
    }
    c2["vrrp_instances"][0]["unicast"] = {
        "source": "10.99.0.12",
        "peers": ["10.99.0.11"],
    }
    a1 = lab.start_vigild(n1, c1)
    a2 = lab.start_vigild(n2, c2)
    lab.wait_address(n1, VIP4, timeout=10)
    lab.wait_for(
        lambda: instance(a2, "VI_4")["master_address"] == "10.99.0.11",
        5,
        what="n2 sees n1",
    )
    assert not lab.has_address(n2, VIP4)
    lab.kill_group(a1)
    lab.cable_pull(n1)
    lab.wait_address(n2, VIP4, timeout=5)


def test_auth_mismatch_is_counted_and_both_become_master(lab: Lab) -> None:
    """VRRPv2 PASS mismatch: as with keepalived, each side ignores the other."""
    n1, n2, _client = build(lab)
    common = {"version": 2, "advert_interval": 1}
    c1 = node_config(
        "n1",
        150,
        vi4={**common, "authentication": {"type": "pass", "password": "secret1"}},
    )
    c2 = node_config(
        "n2",
        100,
        vi4={**common, "authentication": {"type": "pass", "password": "secret2"}},
    )
    for c in (c1, c2):
        c["vrrp_instances"] = c["vrrp_instances"][:1]
    a1 = lab.start_vigild(n1, c1)
    a2 = lab.start_vigild(n2, c2)
    lab.wait_address(n1, VIP4, timeout=10)
    lab.wait_address(n2, VIP4, timeout=10)
    lab.wait_for(
        lambda: instance(a2, "VI_4")["counters"]["rejected"].get("auth", 0) > 0,
        5,
        what="n2 to count rejected (auth) adverts",
    )
    assert instance(a1, "VI_4")["counters"]["rejected"].get("auth", 0) > 0


def test_reload_of_the_password_applies_to_the_very_next_advert(lab: Lab) -> None:
    """A backup skips decoding an advert identical to the last one it accepted; a reload
    that changes what it accepts must end that at once, whatever the bytes."""
    n1, n2, _client = build(lab)
    common = {"version": 2, "advert_interval": 1}

    def config(name: str, priority: int, password: str) -> dict[str, Any]:
        c = node_config(
            name, priority, vi4={**common, "authentication": {"type": "pass", "password": password}}
        )
        c["vrrp_instances"] = c["vrrp_instances"][:1]
        return c

    lab.start_vigild(n1, config("n1", 150, "secret1"))
    a2 = lab.start_vigild(n2, config("n2", 100, "secret1"))
    lab.wait_address(n1, VIP4, timeout=10)
    lab.wait_for(
        lambda: instance(a2, "VI_4")["counters"]["adverts_received"] >= 2,
        5,
        what="n2 to accept two adverts from n1 (the second one from the cache)",
    )
    assert instance(a2, "VI_4")["state"] == "BACKUP"
    assert instance(a2, "VI_4")["counters"]["rejected"].get("auth", 0) == 0
    a2.write_config(config("n2", 100, "secret2"))
    status, body = a2.reload()
    assert status == 200, body
    lab.wait_for(
        lambda: instance(a2, "VI_4")["counters"]["rejected"].get("auth", 0) >= 1,
        5,
        what="n2 to reject n1's unchanged adverts after its password changed",
    )
    lab.wait_address(n2, VIP4, timeout=10)  # no advert of n1's counts any more
    received = instance(a2, "VI_4")["counters"]["adverts_received"]
    rejected = instance(a2, "VI_4")["counters"]["rejected"]["auth"]
    lab.wait_for(
        lambda: instance(a2, "VI_4")["counters"]["rejected"]["auth"] >= rejected + 2,
        5,
        what="n2 to go on rejecting n1's adverts",
    )
    assert instance(a2, "VI_4")["counters"]["adverts_received"] == received
