"""The fleet (issue 14): six vigil pairs with BFD between each pair, on twelve
systemd-nspawn hosts, rolled out by one ``ansible-playbook vigil.ha.site``.

Once per module (in file order, each test leaving the fleet converged for the next):

1. site from scratch converges every pair: the role's own verification passes, each VIP
   is on exactly one host (read with ``ip`` over SSH), the preferred master (the first
   host of each pair) holds it, and both ends of every pair's BFD session are Up (read
   from each agent's API over SSH, not through the modules under test);
2. a second run reports changed=0 in its PLAY RECAP;
3. a rolling upgrade of the agent (a new wheel: the agent's sources with another version,
   ``-e vigil_agent_source=...``) keeps every VIP answering: the controller namespace
   probes all six VIPs every 10 ms during the run and no probe is lost; afterwards every
   agent runs the new version, every pair converged again and a rerun changes nothing.

``VIGIL_FLEET_PAIRS`` (1..6, default 6) runs fewer pairs (a quicker local check). The
Ansible runs use 12 forks so every host is worked on at once, as an operator would set
for a fleet. Marked ``fleet``: ``make test-fleet`` runs it; ``make test`` leaves it out to
stay within its time budget (bench.ansible --fleet measures the same steps).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.hosts.fixtures import hosts_rootfs, module_host_lab, stash_lab  # noqa: F401
from tests.hosts.hostlab import AnsibleResult, HostLab
from tests.hosts.scenario import (
    FLEET_MAX_PAIRS,
    agent_get,
    bfd_states,
    fleet_holders,
    fleet_hosts,
    fleet_inventory,
    fleet_vip,
    upgraded_agent_source,
)
from tests.lab.waiting import wait_for

pytestmark = [pytest.mark.hosts, pytest.mark.fleet]

PLAYBOOK_TIMEOUT = 900.0
PAIRS = int(os.environ.get("VIGIL_FLEET_PAIRS", str(FLEET_MAX_PAIRS)))
FORKS = ["--forks", str(2 * FLEET_MAX_PAIRS)]


class Fleet:
    def __init__(self, hl: HostLab, pairs: int) -> None:
        self.hl = hl
        self.pairs = pairs
        self.inventory = fleet_inventory(hl, pairs)
        self.runs: dict[str, AnsibleResult] = {}

    def site(self, *extra: str) -> AnsibleResult:
        return self.hl.playbook(
            self.inventory, "vigil.ha.site", *FORKS, *extra, timeout=PLAYBOOK_TIMEOUT
        )

    def assert_converged(self) -> None:
        holders = fleet_holders(self.hl, self.pairs)
        assert holders == {n: [f"h{2 * n - 1}"] for n in range(1, self.pairs + 1)}, holders
        for h in fleet_hosts(self.pairs):
            assert bfd_states(self.hl, h) == {"peer": "Up"}, h


@pytest.fixture(scope="module")
def fleet(module_host_lab: HostLab) -> Iterator[Fleet]:  # noqa: F811
    assert 1 <= PAIRS <= FLEET_MAX_PAIRS, f"VIGIL_FLEET_PAIRS={PAIRS}: use 1..{FLEET_MAX_PAIRS}"
    module_host_lab.boot(fleet_hosts(PAIRS), timeout=120)
    yield Fleet(module_host_lab, PAIRS)


def test_site_from_scratch_converges_every_pair(
    fleet: Fleet, request: pytest.FixtureRequest
) -> None:
    stash_lab(request, fleet.hl)
    res = fleet.site()
    fleet.runs["site"] = res
    assert res.returncode == 0, res.describe()
    assert len(res.recap) == 2 * fleet.pairs, res.recap
    assert res.total("failed") == 0 and res.total("unreachable") == 0
    assert res.total("changed") > 0  # it did install and configure
    fleet.assert_converged()


def test_rerun_changes_nothing(fleet: Fleet, request: pytest.FixtureRequest) -> None:
    stash_lab(request, fleet.hl)
    assert "site" in fleet.runs, "needs the rollout of the first test"
    res = fleet.site()
    fleet.runs["rerun"] = res
    assert res.returncode == 0, res.describe()
    assert res.total("changed") == 0, res.describe()
    fleet.assert_converged()


def test_rolling_upgrade_loses_no_probe(fleet: Fleet, request: pytest.FixtureRequest) -> None:
    stash_lab(request, fleet.hl)
    assert "site" in fleet.runs, "needs the rollout of the first test"
    hl = fleet.hl
    source, version = upgraded_agent_source(hl, "fleet1")
    probes = {
        n: hl.lab.probe("ctl", fleet_vip(n), interval=0.01, timeout=1.0, max_duration=900)
        for n in range(1, fleet.pairs + 1)
    }
    for probe in probes.values():
        probe.wait_received(50, timeout=20)
    res = fleet.site("-e", f"vigil_agent_source={source}")
    for probe in probes.values():
        probe.wait_received(50, timeout=20)
    results = {n: p.stop() for n, p in probes.items()}
    assert res.returncode == 0, res.describe()
    lost = {n: r.lost for n, r in results.items()}
    assert all(r.sent > 1000 for r in results.values()), {n: r.sent for n, r in results.items()}
    assert lost == dict.fromkeys(results, 0), lost
    for h in fleet_hosts(fleet.pairs):
        assert agent_get(hl, h, "/v1/status")["agent"]["version"] == version, h
    wait_for(
        lambda: (
            fleet_holders(hl, fleet.pairs)
            == {n: [f"h{2 * n - 1}"] for n in range(1, fleet.pairs + 1)}
        ),
        timeout=30,
        what="every VIP back on its preferred master",
    )
    fleet.assert_converged()
    again = fleet.site("-e", f"vigil_agent_source={source}")
    assert again.returncode == 0, again.describe()
    assert again.total("changed") == 0, again.describe()
