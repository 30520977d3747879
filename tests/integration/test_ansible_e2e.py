"""The vigil.ha collection end to end against real hosts (issue 5 "Done when").

Two systemd-nspawn Debian hosts (tests/hosts) are rolled out from scratch with
``ansible-playbook vigil.ha.site`` once per module; the tests then look at that pair from
every side, in file order, each leaving the pair converged for the next:

1. site converges the pair with one master, a second run reports changed=0;
2. ``vigil.ha.vrrp_info`` ad hoc returns the same master from both hosts;
3. check mode on a changed inventory predicts the change and changes nothing;
4. a broken inventory (duplicate VRID, VIPs that differ between nodes, a priority tie)
   fails before anything is written, naming the host and the field;
5. ``vigil.ha.failover`` moves the VIP with zero lost probes (the controller namespace
   probes it every 10 ms) and a second run changes nothing;
6. SIGKILL of the agent on the master moves the VIP to the backup; systemd restarts the
   agent and the VIP never has two holders.

The state of the pair is always read from the hosts themselves (``ip``, systemd, the files)
over SSH, not through the modules under test.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hosts.fixtures import hosts_rootfs, module_host_lab, stash_lab  # noqa: F401
from tests.hosts.hostlab import AnsibleResult, HostLab
from tests.hosts.scenario import (
    GROUP,
    HOSTS,
    VIP,
    ad_hoc_results,
    agent_get,
    agent_pid,
    base_cluster,
    file_digest,
    pair_inventory,
    vip_holders,
)
from tests.lab.waiting import wait_for

pytestmark = pytest.mark.hosts

PLAYBOOK_TIMEOUT = 600.0


class Pair:
    """The module's pair: the host lab, its inventory, and what the first rollout did."""

    def __init__(self, hl: HostLab) -> None:
        self.hl = hl
        self.inventory = pair_inventory(hl)
        self.site_runs: list[AnsibleResult] = []

    def site(self, *extra: str, inventory: Any = None) -> AnsibleResult:
        return self.hl.playbook(
            inventory or self.inventory, "vigil.ha.site", *extra, timeout=PLAYBOOK_TIMEOUT
        )

    def master(self) -> str:
        """The single VIP holder (fails with what it saw otherwise)."""
        holders = wait_for(
            lambda: (h := vip_holders(self.hl)) and len(h) == 1 and h,
            timeout=30,
            interval=0.5,
            what=f"exactly one holder of {VIP}",
            observe=lambda: vip_holders(self.hl),
        )
        return str(holders[0])

    def digests(self) -> dict[str, str]:
        return {h: file_digest(self.hl, h) for h in HOSTS}


@pytest.fixture(scope="module")
def pair(module_host_lab: HostLab) -> Iterator[Pair]:  # noqa: F811
    module_host_lab.boot(list(HOSTS))
    p = Pair(module_host_lab)
    yield p


@pytest.fixture(autouse=True)
def _logs(request: pytest.FixtureRequest, module_host_lab: HostLab) -> None:  # noqa: F811
    stash_lab(request, module_host_lab)


def test_site_converges_a_pair_and_a_rerun_changes_nothing(pair: Pair) -> None:
    first = pair.site()
    pair.site_runs.append(first)
    assert first.returncode == 0, first.describe()
    assert set(first.recap) == set(HOSTS), first.describe()
    assert first.total("changed") > 0, (
        "a rollout from scratch changed nothing?\n" + first.describe()
    )
    assert pair.master() == "h1", "h1 has the highest priority (first host of the group)"
    for h in HOSTS:
        pid, state = agent_pid(pair.hl, h)
        assert state == "active" and pid > 0, f"{h}: vigild is {state} (pid {pid})"
        # the role's vigil_realtime_priority (10): SCHED_RR, or, where the container's
        # cgroup refuses it, the normal policy with the reason shown (never silently)
        sched = agent_get(pair.hl, h, "/v1/status")["agent"]["scheduling"]
        assert sched == {"policy": "rr", "priority": 10} or (
            sched["policy"] == "other" and "global.realtime_priority 10" in sched["problem"]
        ), (h, sched)
        print(f"{h}: scheduling {sched}")
    second = pair.site()
    pair.site_runs.append(second)
    assert second.returncode == 0, second.describe()
    assert second.total("changed") == 0, "second run of site.yml changed something\n" + (
        second.describe(tail=200)
    )
    assert vip_holders(pair.hl) == ["h1"]
    print(f"site.yml from scratch {first.seconds:.1f} s, rerun {second.seconds:.1f} s")


def test_vrrp_info_ad_hoc_returns_the_same_master_from_both_hosts(pair: Pair) -> None:
    res = pair.hl.ansible(
        "ansible", ["-i", str(pair.inventory), GROUP, "-o", "-m", "vigil.ha.vrrp_info"],
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.describe()
    results = ad_hoc_results(res)
    assert set(results) == set(HOSTS), res.describe()
    masters = {}
    for h, (status, body) in results.items():
        assert status == "SUCCESS" and body.get("changed") is False, (h, status, body)
        (inst,) = [i for i in body["instances"] if i["name"] == "VI_1"]
        masters[h] = inst["master_address"]
        assert inst["state"] == ("MASTER" if h == "h1" else "BACKUP"), (h, inst)
    assert masters == {"h1": pair.hl.host("h1").address, "h2": pair.hl.host("h1").address}


def test_check_mode_predicts_a_change_and_changes_nothing(pair: Pair) -> None:
    cluster = base_cluster()
    cluster["vrrp_instances"][0]["virtual_ipaddresses"].append("10.77.0.101/24")
    changed_inv = pair_inventory(pair.hl, cluster=cluster, name="inventory-changed.yml")
    before = pair.digests()
    pids = {h: agent_pid(pair.hl, h) for h in HOSTS}
    res = pair.site("--check", "--diff", inventory=changed_inv)
    assert res.returncode == 0, res.describe()
    for h in HOSTS:
        assert res.recap[h]["changed"] >= 1, f"check mode did not predict a change on {h}\n" + (
            res.describe()
        )
    assert "10.77.0.101" in res.stdout, "the diff does not show the new VIP\n" + res.describe()
    assert pair.digests() == before, "check mode wrote the config"
    assert {h: agent_pid(pair.hl, h) for h in HOSTS} == pids, "check mode restarted an agent"
    assert not any("10.77.0.101" in pair.hl.ssh(h, "ip -o addr").stdout for h in HOSTS), (
        "check mode added the VIP"
    )


def _dup_vrid() -> tuple[dict[str, Any], dict[str, Any]]:
    cluster = base_cluster()
    second = dict(cluster["vrrp_instances"][0], name="VI_2", virtual_ipaddresses=["10.77.0.110/24"])
    cluster["vrrp_instances"].append(second)
    return cluster, {}


def _vips_differ() -> tuple[dict[str, Any], dict[str, Any]]:
    nodes = {"h2": {"instances": {"VI_1": {"virtual_ipaddresses": ["10.77.0.105/24"]}}}}
    return base_cluster(), nodes


def _priority_tie() -> tuple[dict[str, Any], dict[str, Any]]:
    return base_cluster(), {"h1": {"priority": 140}, "h2": {"priority": 140}}


@pytest.mark.parametrize(
    ("broken", "field"),
    [(_dup_vrid, "vrid"), (_vips_differ, "virtual_ipaddresses"), (_priority_tie, "priority")],
    ids=["duplicate-vrid", "vips-differ", "priority-tie"],
)
def test_broken_inventory_fails_before_anything_is_written(
    pair: Pair, broken: Any, field: str
) -> None:
    cluster, nodes = broken()
    inv = pair_inventory(pair.hl, cluster=cluster, nodes=nodes, name=f"inventory-{field}.yml")
    before = pair.digests()
    pids = {h: agent_pid(pair.hl, h) for h in HOSTS}
    res = pair.site(inventory=inv)
    assert res.returncode != 0, "a broken inventory was rolled out\n" + res.describe()
    # The message names a host of the pair and the field to fix.
    named = re.search(rf"host (h1|h2)\b[^\n]*{field}", res.stdout)
    assert named, f"no message naming the host and {field!r}\n" + res.describe()
    assert res.total("changed") == 0, "a task changed something before the failure\n" + (
        res.describe(tail=200)
    )
    assert pair.digests() == before, "a config file was written"
    assert {h: agent_pid(pair.hl, h) for h in HOSTS} == pids, "an agent was restarted"
    assert vip_holders(pair.hl) == ["h1"]


def test_failover_moves_the_vip_without_losing_a_probe_and_is_idempotent(pair: Pair) -> None:
    assert pair.master() == "h1"
    probe = pair.hl.lab.probe("ctl", VIP, interval=0.01, timeout=1.0, max_duration=300)
    probe.wait_received(50, timeout=10)
    res = pair.hl.playbook(
        pair.inventory, "vigil.ha.failover", "-e", f"vigil_hosts={GROUP}", timeout=PLAYBOOK_TIMEOUT
    )
    probe.wait_received(50, timeout=10)
    result = probe.stop()
    assert res.returncode == 0, res.describe()
    assert vip_holders(pair.hl) == ["h2"], res.describe()
    assert result.sent > 100 and result.lost == 0, (
        f"failover lost {result.lost} of {result.sent} probes: {result.outages}"
    )
    again = pair.hl.playbook(
        pair.inventory, "vigil.ha.failover", "-e", f"vigil_hosts={GROUP}", timeout=PLAYBOOK_TIMEOUT
    )
    assert again.returncode == 0, again.describe()
    assert again.total("changed") == 0, "a second failover changed something\n" + again.describe()
    assert vip_holders(pair.hl) == ["h2"]
    print(f"failover.yml {res.seconds:.1f} s, {result.sent} probes, 0 lost")
    print(f"failover.yml again {again.seconds:.1f} s")


def test_sigkill_of_the_master_agent_moves_the_vip_and_systemd_restarts_it(pair: Pair) -> None:
    master = pair.master()
    backup = next(h for h in HOSTS if h != master)
    old_pid, state = agent_pid(pair.hl, master)
    assert state == "active" and old_pid > 0
    pair.hl.ssh(master, f"kill -KILL {old_pid}")
    # The backup takes over once the master's adverts stop; the crashed node's VIP is
    # removed by the unit's ExecStopPost clean-up, so there is never a second holder.
    seen: list[list[str]] = []

    def moved() -> bool:
        holders = vip_holders(pair.hl)
        seen.append(holders)
        return holders == [backup]

    wait_for(
        moved, timeout=30, interval=0.2, what=f"{VIP} on {backup} only", observe=lambda: seen[-1:]
    )
    assert all(len(h) <= 1 for h in seen), f"two VIP holders at once: {seen}"

    def restarted() -> bool:
        pid, st = agent_pid(pair.hl, master)
        return st == "active" and pid not in (0, old_pid)

    wait_for(restarted, timeout=30, interval=0.2, what=f"systemd restarting vigild on {master}")
    # Once back, the restarted agent may take the VIP back (h1 preempts) but never shares it.
    deadline = time.monotonic() + 6.0
    for _ in range(100):
        if time.monotonic() > deadline:
            break
        holders = vip_holders(pair.hl)
        seen.append(holders)
        assert len(holders) <= 1, f"two VIP holders after the restart: {seen[-5:]}"
    final = pair.master()
    assert final in HOSTS
    res = pair.hl.ssh(master, "systemctl show -p NRestarts vigild")
    assert res.stdout.strip() == "NRestarts=1", res.stdout
