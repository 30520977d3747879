"""vigild measures its event loop's lag from the loop's selector, without a timer of its
own (vigil.looplag): an idle agent wakes for its own work only. A 20 Hz timer had cost it
three quarters of its idle CPU, and far more under QEMU's emulation, where the IPVS
directors run in the tests."""

from __future__ import annotations

import time

from tests.lab import Lab, wait_for
from tests.lab.configs import one_instance

VIP = "10.97.0.100"


def wakeups(pid: int) -> int:
    """Times the process's threads gave up the CPU of their own accord (each wait)."""
    total = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def test_an_idle_agent_wakes_for_its_own_work_only(lab: Lab) -> None:
    lab.add_switch()
    lab.add_namespace("n1")
    lab.connect("n1", addrs=["10.97.0.11/24"])
    config = one_instance("n1", 53, VIP, advert_interval=1)
    agent = lab.start_vigild("n1", config, log_level="info")
    wait_for(lambda: lab.has_address("n1", VIP), timeout=10, what="n1 MASTER with the VIP")
    wait_for(
        lambda: agent.client.get("/v1/vrrp/instances/VI_1")[1]["counters"]["adverts_sent"] >= 3,
        timeout=10,
        what="three adverts sent",
    )
    pid = agent.pid
    before, started = wakeups(pid), time.monotonic()
    # an observation window, not a wait for a condition: count what the agent does in it
    time.sleep(5.0)
    woke = wakeups(pid) - before
    seconds = time.monotonic() - started
    # its own work in 5 s: 5 adverts, one link reconciliation, the journal; a 20 Hz lag
    # timer alone would be 100
    print(f"{woke} wake-ups in {seconds:.1f} s")
    assert woke < 10 * seconds, f"{woke} wake-ups in {seconds:.1f} s"
    # and the measure is on: the metric exists and the loop is not late
    status, text = agent.client.get("/metrics")
    assert status == 200
    lag = [ln for ln in str(text).splitlines() if ln.startswith("vigil_event_loop_lag_seconds ")]
    assert lag and float(lag[0].split()[1]) < 0.25, lag
