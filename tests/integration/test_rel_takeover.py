"""Issue 15, defect 2: a brief takeover must not leave clients on the wrong MAC.

Before: one spoofed priority-0 advert carrying the master's address made the backup take
over for a moment; when it stepped back nobody announced the VIP again, and a client lost
8.3 s (until its ARP entry went stale). A 5 s SIGSTOP of the master cost 6.6 s after it
resumed. With vigil's *default* config (no garp settings) both now cost the client at
most 200 ms after the injection, and the client ends on the master's MAC.

The scenarios are bench.takeover's, which also measures keepalived in the same two.

A master cut off behind the switch (it keeps its carrier and its sends succeed) never
learns that the backup took over: after the heal, whichever advert crosses first decides.
If n1's reached n2 first, n2 stepped back silently and the client stayed on n2's MAC
(6.8 s in bench.takeover at VRRPv2 1 s). Now n2 sends a step-back notice (one advert at its
own priority) and n1 answers it with its GARP burst, whoever spoke first.
"""

from __future__ import annotations

from typing import Any

from bench.takeover import VIP, cut_round, spoof_round, stall_round
from tests.lab import Lab, wait_for
from tests.lab.agents import AgentHandle
from tests.lab.spoof import spoof_advert

MAX_OUTAGE_AFTER_MS = 200.0


def node_config(name: str, priority: int) -> dict[str, Any]:
    return {
        "global": {"router_id": name},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 51,
                "priority": priority,
                "version": 3,
                "advert_interval": 0.1,
                "virtual_ipaddresses": [f"{VIP}/24"],
            }
        ],
    }


def state(agent: AgentHandle) -> str:
    return str(agent.client.get("/v1/vrrp/instances/VI_1")[1]["state"])


def start(lab: Lab, p1: int = 150, p2: int = 100) -> tuple[AgentHandle, AgentHandle, str]:
    lab.add_switch()
    for name, addr in (("n1", "10.99.0.11"), ("n2", "10.99.0.12"), ("client", "10.99.0.20")):
        lab.add_namespace(name)
        lab.connect(name, addrs=[f"{addr}/24"])
    a1 = lab.start_vigild("n1", node_config("n1", p1), log_level="info")
    a2 = lab.start_vigild("n2", node_config("n2", p2), log_level="info")
    wait_for(lambda: settled(lab, a1, a2), timeout=10, what="n1 master, n2 backup")
    return a1, a2, str(lab.link_info("n1")["address"])


def settled(lab: Lab, a1: AgentHandle, a2: AgentHandle) -> bool:
    return (
        lab.has_address("n1", VIP)
        and not lab.has_address("n2", VIP)
        and state(a1) == "MASTER"
        and state(a2) == "BACKUP"
    )


def masterships(agent: AgentHandle) -> int:
    return int(agent.client.get("/v1/vrrp/instances/VI_1")[1]["counters"]["became_master"])


def events(agent: AgentHandle, kind: str) -> list[dict[str, Any]]:
    return [e for e in agent.client.get("/v1/events?since=0")[1] if e["kind"] == kind]


def test_spoofed_priority_zero_with_the_masters_address(lab: Lab) -> None:
    # n2 at 250 has a skew time of 6/256 of an interval: it takes over on the spoof unless
    # n1's next advert comes sooner (2 % of the time), so the step back is what is tested.
    a1, a2, n1_mac = start(lab, 254, 250)
    out = spoof_round(
        lab,
        client="client",
        vrid=51,
        version=3,
        interval=0.1,
        n1_mac=n1_mac,
        settled=lambda: settled(lab, a1, a2),
        masterships=lambda: masterships(a2),
    )
    # The kernel drops an IPv4 packet from one of its own addresses before n1 sees it
    # (no accept_local), so n2 may take over for a moment: the master's answer to n2's
    # lower-priority advert re-announces the VIP (garp.lower_prio_repeat, 5 by default).
    assert out["outage_after_ms"] <= MAX_OUTAGE_AFTER_MS, out
    assert out["mac_is_master"], out


def test_spoofed_priority_zero_from_the_masters_link_local_is_answered(lab: Lab) -> None:
    """IPv6 delivers a packet from the master's own link-local to it: the master logs it
    (once per burst) and answers at once, so the backup never takes over."""
    lab.add_switch()
    for name, addr in (("n1", "fd00:99::11"), ("n2", "fd00:99::12"), ("client", "fd00:99::20")):
        lab.add_namespace(name)
        lab.connect(name, addrs=[f"{addr}/64"])
    vip6 = "fd00:99::100"

    def cfg(name: str, prio: int) -> dict[str, Any]:
        c = node_config(name, prio)
        c["vrrp_instances"][0]["virtual_ipaddresses"] = [f"{vip6}/64"]
        return c

    a1 = lab.start_vigild("n1", cfg("n1", 150), log_level="info")
    a2 = lab.start_vigild("n2", cfg("n2", 100), log_level="info")
    wait_for(lambda: state(a1) == "MASTER" and state(a2) == "BACKUP", timeout=10, what="pair")
    n1_ll = a1.client.get("/v1/vrrp/instances/VI_1")[1]["source_address"]
    assert n1_ll.startswith("fe80::"), n1_ll
    spoof_advert(lab, "client", src=n1_ll, vrid=51, priority=0, vips=[vip6], interval=0.1)
    own = wait_for(
        lambda: [e for e in events(a1, "vrrp_rejected") if e["data"].get("reason") == "own"],
        timeout=5,
        what="n1 to report the advert with its own address",
    )
    assert len(own) == 1 and "own address" in own[0]["message"], own
    assert "answered" in own[0]["message"], own
    base = a2.client.get("/v1/vrrp/instances/VI_1")[1]["counters"]["adverts_received"]
    wait_for(
        lambda: (
            a2.client.get("/v1/vrrp/instances/VI_1")[1]["counters"]["adverts_received"] >= base + 10
        ),
        timeout=5,
        what="n2 to hear 10 more adverts from n1",
    )
    assert a2.client.get("/v1/vrrp/instances/VI_1")[1]["counters"]["became_master"] == 0


def test_five_second_stall_of_the_master(lab: Lab) -> None:
    a1, a2, n1_mac = start(lab)
    out = stall_round(
        lab,
        client="client",
        stop_group=lambda sig: a1.process.signal_group(sig),
        n1_mac=n1_mac,
        settled=lambda: settled(lab, a1, a2),
        masterships=lambda: masterships(a2),
    )
    assert out["took_over"], "n2 must take over while n1 is stopped"
    assert out["outage_after_ms"] <= MAX_OUTAGE_AFTER_MS, out
    assert out["mac_is_master"], out
    stalled = events(a1, "vrrp_stalled")
    assert stalled and stalled[0]["data"]["late"] > 3.0, stalled
    # the loop's own measure (its selector's wait overran by the stop) saw it too
    status, text = a1.client.get("/metrics")
    assert status == 200
    stalls = [ln for ln in str(text).splitlines() if ln.startswith("vigil_event_loop_stalls ")]
    assert stalls and float(stalls[0].split()[1]) >= 1, stalls
    assert "(not running: starved of CPU, stopped or blocked)" in a1.log(tail=None), a1.log()


def test_a_master_cut_off_behind_the_switch_wins_its_clients_back(lab: Lab) -> None:
    """Three cuts: in each, who speaks first after the heal is a coin toss (the two
    masters' advert phases); before the step-back notice about half the rounds left the
    client on n2's MAC for seconds."""
    a1, a2, n1_mac = start(lab)
    for round_no in range(3):
        out = cut_round(
            lab,
            client="client",
            node="n1",
            n1_mac=n1_mac,
            settled=lambda: settled(lab, a1, a2),
            masterships=lambda: masterships(a2),
        )
        assert out["took_over"], (round_no, out)
        assert out["outage_after_ms"] <= MAX_OUTAGE_AFTER_MS, (round_no, out)
        assert out["mac_is_master"], (round_no, out)
