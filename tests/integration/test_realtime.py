"""global.realtime_priority on a real vigild: SCHED_RR for its event loop where the process
may have it, and where it may not (no CAP_SYS_NICE, as under a unit without it) the agent
runs on at the normal policy and says why in /v1/status and `vigilctl status`."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from tests.lab import Lab, wait_for
from tests.lab.agents import AgentHandle
from tests.lab.configs import one_instance

VIP = "10.98.0.100"


def _try_rr(queue: Any) -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        queue.put(None)
    except OSError as exc:
        queue.put(exc.strerror)


def rr_allowed_here() -> str | None:
    """Whether a root process started from here may take SCHED_RR (None) or why not: a
    cgroup without a real-time budget refuses it even to root."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_try_rr, args=(queue,))
    proc.start()
    proc.join(timeout=10)
    why: str | None = queue.get(timeout=5)
    return why


def agent(lab: Lab, name: str, wrapper: tuple[str, ...] = ()) -> AgentHandle:
    config = one_instance(name, 52, VIP, realtime_priority=10)
    return lab.start_vigild(name, config, log_level="info", wrapper=wrapper)


def scheduling(handle: AgentHandle) -> dict[str, Any]:
    status, body = handle.client.get("/v1/status")
    assert status == 200, body
    return dict(body["agent"]["scheduling"])


def test_realtime_priority_is_in_force_or_the_agent_says_why(lab: Lab) -> None:
    lab.add_switch()
    for name, addr in (("n1", "10.98.0.11"), ("n2", "10.98.0.12")):
        lab.add_namespace(name)
        lab.connect(name, addrs=[f"{addr}/24"])
    allowed = rr_allowed_here()
    n1 = agent(lab, "n1")
    # the same, without CAP_SYS_NICE: what a unit with RestrictRealtime / no SYS_NICE gives
    n2 = agent(lab, "n2", ("setpriv", "--bounding-set=-sys_nice", "--inh-caps=-sys_nice"))
    wait_for(lambda: lab.has_address("n1", VIP) or lab.has_address("n2", VIP), timeout=10,
             what="a master")  # fmt: skip

    one = scheduling(n1)
    if allowed is None:
        assert one == {"policy": "rr", "priority": 10}, one
        line = next(
            ln for ln in n1.vigilctl("status").stdout.splitlines() if ln.startswith("sched:")
        )
        assert line.split() == ["sched:", "rr", "10"], line
    else:  # this machine refuses SCHED_RR to root in this cgroup: the agent must say so
        assert one["policy"] == "other" and "rt_runtime_us" in one["problem"], (allowed, one)

    two = scheduling(n2)
    assert two["policy"] == "other" and two["priority"] == 0, two
    assert two["problem"].startswith("global.realtime_priority 10: cannot set SCHED_RR"), two
    assert "CAP_SYS_NICE" in two["problem"], two
    out = n2.vigilctl("status").stdout
    assert "sched:     other (global.realtime_priority 10: cannot set SCHED_RR" in out, out
    assert "normal policy instead" in n2.log(), n2.log()
    # it still does its job at the normal policy: both run VRRP, one of them is master
    assert n2.client.get("/v1/vrrp/instances/VI_1")[1]["state"] in ("MASTER", "BACKUP")
