"""Reloads that never flap: a vigil pair in namespaces, reloaded over the API and by SIGHUP.

n1 (priority 150) is master of VI_1 and VI_2, n2 (priority 100) is backup, and a client
probes a VIP every 10 ms. What the tests observe is what an operator would: probe replies
(lost == 0), the master's adverts on the client's wire (no gap longer than 1.5 advert
intervals), the kernel's addresses in the nodes, and the agents' counters and events.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml

from tests.lab.agents import AgentHandle
from tests.lab.capture import Capture, Frame
from tests.lab.lab import Lab, Node
from tests.lab.probe import ProbeResult

pytestmark = pytest.mark.integration

INTERVAL = 0.2  # VRRPv3 advert interval of every instance here (seconds)
MAX_GAP = 1.5 * INTERVAL
N1_ADDR = "10.99.0.11"
VIP_1 = "10.99.0.100"
VIP_2 = "10.99.0.101"
VIP_X = "10.99.0.150"
RELOADS = 20


# ---------------------------------------------------------------------------- configs


def vrrp_instance(name: str, vrid: int, priority: int, vips: list[str], **extra: Any) -> dict:
    inst: dict[str, Any] = {
        "name": name,
        "interface": "eth0",
        "vrid": vrid,
        "priority": priority,
        "version": 3,
        "advert_interval": INTERVAL,
        "virtual_ipaddresses": [f"{v}/24" for v in vips],
    }
    inst.update(extra)
    return inst


def node_config(node: str, priority: int) -> dict[str, Any]:
    return {
        "global": {"router_id": node},
        "vrrp_instances": [
            vrrp_instance("VI_1", 51, priority, [VIP_1]),
            vrrp_instance("VI_2", 52, priority, [VIP_2]),
        ],
    }


def instance_cfg(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in cfg["vrrp_instances"] if i["name"] == name)


# ---------------------------------------------------------------------------- observation


def instance(agent: AgentHandle, name: str) -> dict[str, Any]:
    status, body = agent.client.get(f"/v1/vrrp/instances/{name}")
    assert status == 200, body
    return dict(body)


def last_seq(agent: AgentHandle) -> int:
    status, body = agent.client.get("/v1/status")
    assert status == 200, body
    return int(body["agent"]["last_event_seq"])


def events(agent: AgentHandle, since: int) -> list[dict[str, Any]]:
    status, body = agent.client.get(f"/v1/events?since={since}")
    assert status == 200, body
    return list(body)


def transitions(agent: AgentHandle, since: int, name: str) -> list[dict[str, Any]]:
    return [
        e for e in events(agent, since) if e["kind"] == "vrrp_transition" and e["instance"] == name
    ]


def running_config(agent: AgentHandle) -> dict[str, Any]:
    status, body = agent.client.get("/v1/config")
    assert status == 200, body
    return dict(body["config"])


def reload(lab: Lab, agent: AgentHandle, how: str, answer: list[Any] | None = None) -> dict:
    """Reload over the API or by SIGHUP; return the reload's event once it is published.

    The event (config_reloaded or reload_failed) is what both paths have in common: the
    API's answer is checked against it (and appended to ``answer``), SIGHUP has none.
    """
    seq = last_seq(agent)
    if how == "api":
        status, body = agent.reload()
        assert status in (200, 422), (status, body)
    elif how == "sighup":
        agent.sighup()
        status, body = 0, None
    else:
        raise ValueError(f"reload how={how!r}: 'api' or 'sighup'")
    found: list[dict[str, Any]] = []

    def reloaded() -> bool:
        found[:] = [
            e for e in events(agent, seq) if e["kind"] in ("config_reloaded", "reload_failed")
        ]
        return bool(found)

    lab.wait_for(reloaded, timeout=10, what=f"{agent.node} to finish a reload ({how})")
    assert len(found) == 1, found
    event = found[0]
    if how == "api":
        assert (status == 200) == (event["kind"] == "config_reloaded"), (status, body, event)
        if answer is not None:
            answer.append(body)
    return event


def vrrp_adverts(frames: list[Frame], src: str, vrid: int) -> list[tuple[float, int, list[str]]]:
    """(time, priority, addresses) of the IPv4 VRRPv3 adverts from ``src`` for ``vrid``."""
    out = []
    want = ipaddress.IPv4Address(src).packed
    for f in frames:
        d = f.data
        if len(d) < 14 + 20 + 8 or d[12:14] != b"\x08\x00" or d[23] != 112 or d[26:30] != want:
            continue
        vrrp = d[14 + (d[14] & 0x0F) * 4 :]
        if vrrp[1] != vrid:
            continue
        count = vrrp[3]
        addrs = [str(ipaddress.IPv4Address(vrrp[8 + 4 * i : 12 + 4 * i])) for i in range(count)]
        out.append((f.time, vrrp[2], addrs))
    return out


def received_after(moment: float) -> Callable[[Frame], bool]:
    """Match any frame the kernel received after ``moment`` (wall clock)."""
    return lambda frame: frame.time > moment


def longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@contextmanager
def watch_address(lab: Lab, node: Node, addr: str) -> Iterator[list[tuple[float, bool]]]:
    """Record (time, present) of ``addr`` in ``node`` every 20 ms while the block runs."""
    seen: list[tuple[float, bool]] = []
    stop = threading.Event()

    def run() -> None:
        for _ in range(5000):  # bounded: 5000 polls
            if stop.is_set():
                return
            present = lab.has_address(node, addr)
            seen.append((time.time(), present))  # stamped after the observation
            stop.wait(0.02)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join(timeout=10)


# ---------------------------------------------------------------------------- set-up


def start_pair(lab: Lab) -> tuple[Node, Node, Node, AgentHandle, AgentHandle]:
    n1 = lab.add_namespace("n1")
    n2 = lab.add_namespace("n2")
    client = lab.add_namespace("client")
    lab.connect(n1, addrs=[f"{N1_ADDR}/24"])
    lab.connect(n2, addrs=["10.99.0.12/24"])
    lab.connect(client, addrs=["10.99.0.20/24"])
    a1 = lab.start_vigild(n1, node_config("n1", 150), log_level="info")
    a2 = lab.start_vigild(n2, node_config("n2", 100), log_level="info")

    def settled() -> bool:
        return (
            lab.has_address(n1, VIP_1)
            and lab.has_address(n1, VIP_2)
            and all(instance(a1, n)["state"] == "MASTER" for n in ("VI_1", "VI_2"))
            and all(instance(a2, n)["state"] == "BACKUP" for n in ("VI_1", "VI_2"))
            and instance(a2, "VI_1")["master_address"] == N1_ADDR
        )

    lab.wait_for(settled, timeout=15, what="n1 master of VI_1/VI_2, n2 backup")
    return n1, n2, client, a1, a2


def assert_no_loss(result: ProbeResult, what: str) -> None:
    assert result.sent >= 40, f"{what}: the probe sent only {result.sent} probes"
    assert result.lost == 0, f"{what}: {result.lost} probes lost; outages {result.outages}"


# ---------------------------------------------------------------------------- tests


def unrelated_change(step: int, base: dict[str, Any]) -> tuple[dict[str, Any] | str, str]:
    """The config for reload number ``step``: never a change to VI_1 itself."""
    cfg = copy.deepcopy(base)
    kind = step % 5
    if kind == 0:  # another instance comes ...
        cfg["vrrp_instances"].append(vrrp_instance("VI_X", 60, 150, [VIP_X]))
        return cfg, "add VI_X"
    if kind == 1:  # ... and goes
        return cfg, "remove VI_X"
    if kind == 2:  # GARP settings of another instance
        instance_cfg(cfg, "VI_2")["garp"] = {"master_refresh": 1 + step, "master_repeat": 2}
        return cfg, "garp of VI_2"
    if kind == 3:  # a comment (the file differs, the config does not)
        return f"# reload {step}: nothing but this comment\n" + yaml.safe_dump(cfg), "comment"
    cfg["global"]["log_level"] = "info" if step % 2 else "debug"
    instance_cfg(cfg, "VI_2")["priority"] = 140 + step  # another instance's priority
    return cfg, "log level and VI_2 priority"


def test_twenty_reloads_with_unrelated_changes_never_flap(lab: Lab) -> None:
    _n1, _n2, client, a1, a2 = start_pair(lab)
    base = node_config("n1", 150)
    capture = Capture(lab, client)
    probe = lab.probe(client, VIP_1, interval=0.01)
    probe.wait_received(20)
    seq1, seq2 = last_seq(a1), last_seq(a2)
    before = instance(a1, "VI_1")["counters"]
    t_first = time.time()
    kinds = []
    for step in range(RELOADS):
        cfg, what = unrelated_change(step, base)
        a1.write_config(cfg)
        how = "api" if step % 2 == 0 else "sighup"
        event = reload(lab, a1, how)
        assert event["kind"] == "config_reloaded", (what, how, event)
        assert "VI_1" not in event["data"]["diff"]["vrrp"]["changed"], (what, event["data"]["diff"])
        kinds.append((what, how))
        # Each reload is followed by a few advert intervals so a late advert shows up.
        capture.wait(received_after(time.time() + 2 * INTERVAL), timeout=5)
    t_last = time.time()
    probe.wait_received(20)
    result = probe.stop()

    assert_no_loss(result, f"{RELOADS} reloads ({kinds})")
    after = instance(a1, "VI_1")
    assert after["state"] == "MASTER"
    for counter in ("became_master", "released_master", "priority_zero_sent"):
        assert after["counters"][counter] == before[counter], (counter, before, after)
    assert transitions(a1, seq1, "VI_1") == []
    assert transitions(a2, seq2, "VI_1") == []
    assert instance(a2, "VI_1")["state"] == "BACKUP"
    reloads = [e for e in events(a1, seq1) if e["kind"] == "config_reloaded"]
    assert len(reloads) == RELOADS

    adverts = vrrp_adverts(capture.read(), N1_ADDR, 51)
    times = [t for t, _, _ in adverts if t_first - INTERVAL <= t <= t_last + INTERVAL]
    assert len(times) >= (t_last - t_first) / INTERVAL * 0.8, (len(times), t_last - t_first)
    gap = longest_gap(times)
    assert gap <= MAX_GAP, f"VI_1's adverts stopped for {gap * 1000:.0f} ms during the reloads"
    assert {p for _, p, _ in adverts} == {150}


def test_vip_list_change_adds_and_removes_only_the_difference(lab: Lab) -> None:
    n1, n2, client, a1, a2 = start_pair(lab)
    capture = Capture(lab, client)
    probe = lab.probe(client, VIP_1, interval=0.01)
    probe.wait_received(20)
    seq1 = last_seq(a1)
    new_vips = [VIP_1, "10.99.0.102"]
    configs = {}
    for node, prio in (("n1", 150), ("n2", 100)):
        cfg = node_config(node, prio)
        instance_cfg(cfg, "VI_1")["virtual_ipaddresses"] = [f"{v}/24" for v in new_vips]
        instance_cfg(cfg, "VI_2")["virtual_ipaddresses"] = [f"{VIP_2}/24", "10.99.0.103/24"]
        configs[node] = cfg
    a2.write_config(configs["n2"])  # the backup first, as the runbook says
    assert reload(lab, a2, "sighup")["kind"] == "config_reloaded"
    a1.write_config(configs["n1"])
    event = reload(lab, a1, "api")
    details = event["data"]["diff"]["vrrp"]["details"]["VI_1"]
    assert details["vips_added"] == ["10.99.0.102/24"] and details["vips_removed"] == []
    lab.wait_address(n1, "10.99.0.102", timeout=5)
    lab.wait_address(n1, "10.99.0.103", timeout=5)
    assert not lab.has_address(n2, "10.99.0.102")

    # The new address list is advertised.
    t0 = time.time()
    capture.wait(lambda f: f.time > t0 + 2 * INTERVAL, timeout=5)
    latest = [a for t, _, a in vrrp_adverts(capture.read(), N1_ADDR, 51) if t > t0]
    assert latest and latest[-1] == new_vips

    # Now drop VIP_1's neighbour and keep VIP_1: only 10.99.0.102 goes.
    for node in ("n2", "n1"):
        cfg = configs[node]
        instance_cfg(cfg, "VI_1")["virtual_ipaddresses"] = [f"{VIP_1}/24"]
        (a1 if node == "n1" else a2).write_config(cfg)
    assert reload(lab, a2, "api")["kind"] == "config_reloaded"
    event = reload(lab, a1, "sighup")
    details = event["data"]["diff"]["vrrp"]["details"]["VI_1"]
    assert details["vips_removed"] == ["10.99.0.102/24"] and details["vips_added"] == []
    lab.wait_address(n1, "10.99.0.102", present=False, timeout=5)
    probe.wait_received(20)
    result = probe.stop()
    assert_no_loss(result, "VIP list changes")
    assert lab.has_address(n1, VIP_1) and lab.has_address(n1, "10.99.0.103")
    assert transitions(a1, seq1, "VI_1") == [] and transitions(a1, seq1, "VI_2") == []
    assert instance(a1, "VI_1")["vips"] == [
        {"address": f"{VIP_1}/24", "dev": "eth0", "present": True}
    ]


INVALID_CONFIGS: dict[str, Callable[[dict[str, Any]], dict[str, Any] | str]] = {
    "vrid out of range": lambda c: {
        **c,
        "vrrp_instances": [
            {**instance_cfg(c, "VI_1"), "vrid": 300},
            instance_cfg(c, "VI_2"),
        ],
    },
    "unknown key": lambda c: {**c, "vrrp_instancs": c["vrrp_instances"]},
    "not YAML": lambda c: "vrrp_instances: [\n  {name: VI_1\n",
}


@pytest.mark.parametrize("how", ["api", "sighup"])
def test_invalid_reload_changes_nothing(lab: Lab, how: str) -> None:
    n1, _n2, client, a1, _a2 = start_pair(lab)
    probe = lab.probe(client, VIP_1, interval=0.01)
    probe.wait_received(20)
    config_before = running_config(a1)
    status_before = instance(a1, "VI_1")
    addrs_before = sorted(lab.addresses(n1, "eth0"))
    seq = last_seq(a1)
    base = node_config("n1", 150)
    for label, make in INVALID_CONFIGS.items():
        a1.write_config(make(copy.deepcopy(base)))
        answer: list[Any] = []
        event = reload(lab, a1, how, answer)
        assert event["kind"] == "reload_failed", (label, event)
        if how == "api":
            assert answer[0]["error"]["issues"] == event["data"]["issues"], (label, answer)
        issues = event["data"]["issues"]
        assert issues and all(i.get("message") for i in issues), (label, issues)
        if label == "vrid out of range":
            assert any(i["path"] == "vrrp_instances[0].vrid" for i in issues), issues
        if label == "unknown key":
            assert any("vrrp_instancs" in (i.get("path") or "") for i in issues), issues
        assert running_config(a1) == config_before, label
        assert sorted(lab.addresses(n1, "eth0")) == addrs_before, label
    probe.wait_received(20)
    result = probe.stop()
    assert_no_loss(result, f"invalid reloads ({how})")
    after = instance(a1, "VI_1")
    assert after["state"] == "MASTER"
    assert after["counters"]["became_master"] == status_before["counters"]["became_master"]
    assert transitions(a1, seq, "VI_1") == [] and transitions(a1, seq, "VI_2") == []
    assert not [e for e in events(a1, seq) if e["kind"] == "config_reloaded"]


def test_removed_instance_sends_priority_zero_then_removes_its_vip(lab: Lab) -> None:
    n1, n2, client, a1, a2 = start_pair(lab)
    capture = Capture(lab, client)
    probe = lab.probe(client, VIP_1, interval=0.01)
    probe.wait_received(20)
    seq1, seq2 = last_seq(a1), last_seq(a2)
    cfg = node_config("n1", 150)
    cfg["vrrp_instances"] = [instance_cfg(cfg, "VI_1")]
    a1.write_config(cfg)
    with watch_address(lab, n1, VIP_2) as seen:
        event = reload(lab, a1, "api")
        lab.wait_for(lambda: any(not present for _, present in seen), 5, what="VIP_2 gone from n1")
    assert event["data"]["diff"]["vrrp"]["removed"] == ["VI_2"]
    zero = [t for t, p, _ in vrrp_adverts(capture.read(), N1_ADDR, 52) if p == 0]
    assert zero, "no priority-0 advert for VI_2 from n1"
    gone = next(t for t, present in seen if not present)
    assert zero[0] <= gone, "the VIP was removed before the priority-0 advert went out"
    # The peer took over at once (skew time), not after Master_Down.
    lab.wait_address(n2, VIP_2, timeout=5)
    took = instance(a2, "VI_2")
    assert took["state"] == "MASTER" and "priority 0" in took["last_transition"]["reason"]
    status, _ = a1.client.get("/v1/vrrp/instances/VI_2")
    assert status == 404
    probe.wait_received(20)
    assert_no_loss(probe.stop(), "removing VI_2")
    assert transitions(a1, seq1, "VI_1") == [] and transitions(a2, seq2, "VI_1") == []


def test_added_instance_starts_backup(lab: Lab) -> None:
    n1, n2, _client, a1, a2 = start_pair(lab)
    # n2 runs VI_3 alone first (it becomes master), then n1 gets it with a higher priority.
    cfg2 = node_config("n2", 100)
    cfg2["vrrp_instances"].append(vrrp_instance("VI_3", 53, 100, ["10.99.0.103"]))
    a2.write_config(cfg2)
    assert reload(lab, a2, "api")["data"]["diff"]["vrrp"]["added"] == ["VI_3"]
    lab.wait_address(n2, "10.99.0.103", timeout=5)
    seq1 = last_seq(a1)
    cfg1 = node_config("n1", 150)
    cfg1["vrrp_instances"].append(vrrp_instance("VI_3", 53, 150, ["10.99.0.103"]))
    a1.write_config(cfg1)
    assert reload(lab, a1, "sighup")["data"]["diff"]["vrrp"]["added"] == ["VI_3"]
    lab.wait_address(n1, "10.99.0.103", timeout=5)
    lab.wait_address(n2, "10.99.0.103", present=False, timeout=5)
    seen = transitions(a1, seq1, "VI_3")
    assert [e["data"]["new"] for e in seen[:2]] == ["BACKUP", "MASTER"], seen
    assert transitions(a1, seq1, "VI_1") == []


def test_changed_identity_recreates_and_priority_change_does_not_flap(lab: Lab) -> None:
    _n1, _n2, client, a1, a2 = start_pair(lab)
    capture = Capture(lab, client)
    probe = lab.probe(client, VIP_1, interval=0.01)
    probe.wait_received(20)
    seq1, seq2 = last_seq(a1), last_seq(a2)
    # A lower priority that is still the highest: advertised at once, no transition.
    cfg = node_config("n1", 150)
    instance_cfg(cfg, "VI_1")["priority"] = 120
    a1.write_config(cfg)
    event = reload(lab, a1, "sighup")
    assert event["data"]["diff"]["vrrp"]["details"]["VI_1"]["fields"] == ["priority"]
    lab.wait_for(lambda: instance(a2, "VI_1")["master_priority"] == 120, 5, what="n2 to see 120")
    assert instance(a1, "VI_1")["effective_priority"] == 120
    prio = [e for e in events(a1, seq1) if e["kind"] == "vrrp_priority"]
    assert [(e["data"]["old"], e["data"]["new"]) for e in prio] == [(150, 120)]
    t0 = time.time()
    capture.wait(lambda f: f.time > t0 + 2 * INTERVAL, timeout=5)
    assert {p for t, p, _ in vrrp_adverts(capture.read(), N1_ADDR, 51) if t > t0} == {120}
    probe.wait_received(20)
    assert_no_loss(probe.stop(), "priority change")
    assert transitions(a1, seq1, "VI_1") == [] and transitions(a2, seq2, "VI_1") == []

    # VI_2 moves to VRID 62 on both nodes: re-created, so it starts over in BACKUP.
    seq1 = last_seq(a1)
    for agent, node, node_prio in ((a2, "n2", 100), (a1, "n1", 150)):
        c = node_config(node, node_prio)
        instance_cfg(c, "VI_1")["priority"] = 120 if node == "n1" else 100
        instance_cfg(c, "VI_2")["vrid"] = 62
        agent.write_config(c)
        assert reload(lab, agent, "api")["kind"] == "config_reloaded"
    lab.wait_for(
        lambda: instance(a1, "VI_2")["state"] == "MASTER" and instance(a1, "VI_2")["vrid"] == 62,
        10,
        what="n1 master of VI_2 on VRID 62",
    )
    seen = transitions(a1, seq1, "VI_2")
    assert [e["data"]["new"] for e in seen][:3] == ["STOPPED", "BACKUP", "MASTER"], seen
    assert "vrid changed" in seen[0]["data"]["reason"], seen[0]
    assert transitions(a1, seq1, "VI_1") == []


def test_removed_vip_does_not_take_a_kept_one_in_the_same_subnet(lab: Lab) -> None:
    """VIPs in a subnet the interface has no address in: the first is the kernel's primary.

    Deleting a primary deletes its secondaries unless promote_secondaries is set, so a
    reload removing the first VIP must not take the second one (kept) with it.
    """
    n1 = lab.add_namespace("n1")
    lab.connect(n1, addrs=[f"{N1_ADDR}/24"])
    cfg = {
        "global": {"router_id": "n1"},
        "vrrp_instances": [vrrp_instance("VI_1", 51, 150, [])],
    }
    instance_cfg(cfg, "VI_1")["virtual_ipaddresses"] = ["10.99.5.1/24", "10.99.5.2/24"]
    a1 = lab.start_vigild(n1, cfg, log_level="info")
    lab.wait_address(n1, "10.99.5.2", timeout=10)
    shown = lab.ip(n1, "-4", "addr", "show", "dev", "eth0")
    assert "10.99.5.2/24" in shown and "secondary" in shown, shown
    seq = last_seq(a1)
    instance_cfg(cfg, "VI_1")["virtual_ipaddresses"] = ["10.99.5.2/24"]
    a1.write_config(cfg)
    with watch_address(lab, n1, "10.99.5.2") as seen:
        assert reload(lab, a1, "api")["kind"] == "config_reloaded"
        lab.wait_address(n1, "10.99.5.1", present=False, timeout=5)
    assert seen and all(present for _, present in seen), "10.99.5.2 left with 10.99.5.1"
    assert lab.has_address(n1, "10.99.5.2")
    assert not [e for e in events(a1, seq) if e["kind"] == "vip_restored"]
    # The sysctl is back as it was (vigil changes it only for the removal).
    out = lab.run(n1, ["sysctl", "-n", "net.ipv4.conf.eth0.promote_secondaries"]).stdout
    assert out.strip() == "0"


def test_reload_keeps_runtime_override_and_maintenance(lab: Lab) -> None:
    """Runtime control outlives a reload that changes the instance's own priority."""
    n1, n2, client, a1, a2 = start_pair(lab)
    probe = lab.probe(client, VIP_1, interval=0.01)
    probe.wait_received(20)
    a1.vigilctl("priority", "VI_1", "200", check=True)
    lab.wait_for(lambda: instance(a1, "VI_1")["effective_priority"] == 200, 5, what="200")
    seq1, seq2 = last_seq(a1), last_seq(a2)
    cfg = node_config("n1", 150)
    instance_cfg(cfg, "VI_1")["priority"] = 140
    a1.write_config(cfg)
    assert reload(lab, a1, "sighup")["data"]["diff"]["vrrp"]["changed"] == ["VI_1"]
    view = instance(a1, "VI_1")
    assert view["priority"] == 140
    assert view["priority_override"] == 200 and view["effective_priority"] == 200, view
    assert not [e for e in events(a1, seq1) if e["kind"] == "vrrp_priority"]
    a1.vigilctl("priority", "VI_1", "--clear", check=True)
    lab.wait_for(lambda: instance(a1, "VI_1")["effective_priority"] == 140, 5, what="140")

    # Maintenance: n2 serves; a reload of n1 (its own priority changes) must not bring
    # it back, and neither node transitions.
    a1.vigilctl("maintenance", "on", check=True)
    lab.wait_address(n2, VIP_1, timeout=5)
    seq1, seq2 = last_seq(a1), last_seq(a2)
    instance_cfg(cfg, "VI_1")["priority"] = 160
    a1.write_config(cfg)
    assert reload(lab, a1, "api")["kind"] == "config_reloaded"
    view = instance(a1, "VI_1")
    assert view["state"] == "BACKUP" and view["maintenance"] is True
    assert view["effective_priority"] == 1 and view["priority"] == 160
    # Several of n2's adverts later n1 is still backup and n2 still master.
    base = instance(a1, "VI_1")["counters"]["adverts_received"]
    lab.wait_for(
        lambda: instance(a1, "VI_1")["counters"]["adverts_received"] >= base + 5,
        5,
        what="five more adverts from n2",
    )
    assert transitions(a1, seq1, "VI_1") == [] and transitions(a2, seq2, "VI_1") == []
    assert lab.has_address(n2, VIP_1) and not lab.has_address(n1, VIP_1)
    probe.wait_received(20)
    assert_no_loss(probe.stop(), "override, maintenance and reloads")


def test_unicast_peer_list_changes_in_place(lab: Lab) -> None:
    """Adding a unicast peer (a third node joining) is an update, not a re-created instance."""
    n1 = lab.add_namespace("n1")
    n2 = lab.add_namespace("n2")
    client = lab.add_namespace("client")
    lab.connect(n1, addrs=[f"{N1_ADDR}/24"])
    lab.connect(n2, addrs=["10.99.0.12/24"])
    lab.connect(client, addrs=["10.99.0.20/24"])

    def unicast_cfg(node: str, prio: int, peers: list[str]) -> dict[str, Any]:
        cfg = node_config(node, prio)
        cfg["vrrp_instances"] = [instance_cfg(cfg, "VI_1") | {"unicast": {"peers": peers}}]
        return cfg

    a1 = lab.start_vigild(n1, unicast_cfg("n1", 150, ["10.99.0.12"]), log_level="info")
    a2 = lab.start_vigild(n2, unicast_cfg("n2", 100, [N1_ADDR]), log_level="info")
    lab.wait_for(
        lambda: (
            instance(a1, "VI_1")["state"] == "MASTER"
            and instance(a2, "VI_1")["state"] == "BACKUP"
            and instance(a2, "VI_1")["master_address"] == N1_ADDR
        ),
        timeout=15,
        what="n1 unicast master, n2 backup",
    )
    probe = lab.probe(client, VIP_1, interval=0.01)
    probe.wait_received(20)
    seq1, seq2 = last_seq(a1), last_seq(a2)
    a1.write_config(unicast_cfg("n1", 150, ["10.99.0.12", "10.99.0.13"]))
    event = reload(lab, a1, "api")
    assert event["data"]["diff"]["vrrp"]["details"]["VI_1"]["fields"] == ["unicast"]
    assert instance(a1, "VI_1")["unicast_peers"] == ["10.99.0.12", "10.99.0.13"]
    # n2 keeps hearing n1 after the reload, several adverts in a row.
    base = instance(a2, "VI_1")["counters"]["adverts_received"]
    lab.wait_for(
        lambda: instance(a2, "VI_1")["counters"]["adverts_received"] >= base + 5,
        5,
        what="five more adverts from n1 on n2",
    )
    probe.wait_received(20)
    assert_no_loss(probe.stop(), "unicast peer added")
    assert transitions(a1, seq1, "VI_1") == [] and transitions(a2, seq2, "VI_1") == []
    assert instance(a1, "VI_1")["counters"]["priority_zero_sent"] == 0
