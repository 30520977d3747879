"""``make demo``: a two-node vigil pair in network namespaces, shown and cleaned up.

Builds a switch, ``node1`` and ``node2`` (eth0 10.99.0.11/24 and .12/24, fd00:99::11/64
and ::12/64) and a ``client`` (10.99.0.2/24, fd00:99::2/64), starts vigild on both nodes
with examples/demo/node1.yml and node2.yml, waits for the election and prints ``vigilctl
status`` of each. Then a failover: the client probes the IPv4 VIP every 10 ms while node1's
agent is SIGKILLed and its cable pulled; node2's event stream is printed as it happens,
then node2's status and the outage the client measured. Finally node1's cable goes back
in, its agent restarts (removing the VIPs its crashed predecessor left), and node1
preempts back, again under a probe. Everything is removed on exit, on Ctrl-C and on
SIGTERM; this part takes about 20 s. Then the load-balancer act (tests/lab/demo_lb.py) runs
in the IPVS VM (2-4 minutes; ``--no-lb`` skips it, ``--lb-only`` runs only it).

The steps are plain functions of a ``Demo``; ``run(steps)`` runs a list of them, so a new
scenario (a failover with the client probing the VIP, say) is one more function::

    def failover(demo: Demo) -> None: ...
    run([show_status, failover, show_status])
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.client import ApiError, ApiUnreachable

from .agents import AgentHandle
from .lab import Lab
from .probe import REPO_ROOT, Probe, ProbeResult
from .waiting import wait_for

__all__ = [
    "NODES",
    "Demo",
    "EventPrinter",
    "build",
    "failover",
    "main",
    "preempt_back",
    "run",
    "show_status",
    "wait_elected",
    "wait_for_user",
]

DEMO_DIR = REPO_ROOT / "examples" / "demo"
#: node name -> addresses on eth0
NODES = {
    "node1": ["10.99.0.11/24", "fd00:99::11/64"],
    "node2": ["10.99.0.12/24", "fd00:99::12/64"],
}
CLIENT = ("client", ["10.99.0.2/24", "fd00:99::2/64"])
VIP4 = "10.99.0.100"
INSTANCES = ("VI_4", "VI_6")


@dataclass
class Demo:
    """The running demo: its lab and the agent of each node."""

    lab: Lab
    agents: dict[str, AgentHandle] = field(default_factory=dict)
    say: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)

    def stamp(self) -> str:
        """Seconds since the demo started, for lines that tell a story in time."""
        return f"[{time.monotonic() - self.started:6.2f}s]"


Step = Callable[[Demo], None]


def build(lab: Lab, *, say: Callable[[str], None] = print) -> Demo:
    """Switch, two nodes running vigild, one client; returns when both agents are ready."""
    demo = Demo(lab, say=say)
    lab.add_switch()
    for name, addrs in [*NODES.items(), CLIENT]:
        lab.add_namespace(name)
        lab.connect(name, addrs=addrs)
        say(f"  {name:7s} namespace {lab.node(name).ns}, eth0 {' '.join(addrs)}")
    for name in NODES:
        config = DEMO_DIR / f"{name}.yml"
        agent = lab.start_vigild(name, config, log_level="info")
        demo.agents[name] = agent
        say(f"  vigild on {name}: pid {agent.pid}, socket {agent.socket_path}")
    return demo


def show_status(demo: Demo, only: Sequence[str] | None = None) -> None:
    """Print ``vigilctl status`` of every agent (or of the nodes in ``only``)."""
    for name, agent in demo.agents.items():
        if only is not None and name not in only:
            continue
        res = agent.vigilctl("status")
        demo.say(f"\n$ ip netns exec {agent.node.ns} vigilctl --socket {agent.socket_path} status")
        demo.say((res.stdout + res.stderr).rstrip())
        if res.returncode != 0:
            raise RuntimeError(f"vigilctl status on {name} failed with exit {res.returncode}")


def states(agent: AgentHandle) -> dict[str, str]:
    """Instance name -> state, from the agent's API ({} while it does not answer)."""
    try:
        status, body = agent.client.get("/v1/vrrp/instances")
    except ApiUnreachable:
        return {}
    if status != 200:
        return {}
    return {i["name"]: i["state"] for i in body["vrrp"]["instances"]}


def wait_roles(demo: Demo, master: str, backup: str, timeout: float = 15.0) -> None:
    """Wait until ``master`` is MASTER and ``backup`` BACKUP for every instance."""
    want = {master: "MASTER", backup: "BACKUP"}
    wait_for(
        lambda: all(
            states(demo.agents[node]) == dict.fromkeys(INSTANCES, role)
            for node, role in want.items()
        ),
        timeout=timeout,
        what=f"{master} MASTER and {backup} BACKUP",
        observe=lambda: {node: states(demo.agents[node]) for node in want},
    )


def wait_elected(demo: Demo) -> None:
    """Both agents start in BACKUP (as keepalived); wait until node1 has won the election."""
    demo.say("\nWaiting for the election (every instance starts in BACKUP) ...")
    wait_roles(demo, "node1", "node2")
    demo.say(f"{demo.stamp()} node1 is MASTER for VI_4 and VI_6, node2 is BACKUP")


class EventPrinter:
    """Prints an agent's live event stream (/v1/events?follow=1) from a background thread.

    The thread is a daemon and ends when the agent closes the stream (it stops, or the
    lab is torn down), so it never keeps the demo from exiting.
    """

    def __init__(self, demo: Demo, node: str, *, since: int | None = None) -> None:
        """Print ``node``'s events after seq ``since`` (None: only events from now on)."""
        self.demo = demo
        self.node = node
        agent = demo.agents[node]
        if since is None:
            status, body = agent.client.get("/v1/events")
            since = max((e["seq"] for e in body), default=0) if status == 200 else 0
        self.since = since
        self.count = 0
        self._stopped = threading.Event()
        demo.lab.add_cleanup(self.stop)  # quiet before the agents stop at teardown
        self._thread = threading.Thread(
            target=self._follow, args=(agent,), name=f"events-{node}", daemon=True
        )
        self._thread.start()

    def _follow(self, agent: AgentHandle) -> None:
        path = f"/v1/events?follow=1&since={self.since}"
        with contextlib.suppress(ApiUnreachable, ApiError, OSError):
            for msg in agent.client.stream(path, timeout=None):
                data: Any = msg.get("data")
                if self._stopped.is_set():
                    return
                if isinstance(data, dict) and "kind" in data:
                    self.count += 1
                    where = f"({data['instance']}) " if data.get("instance") else ""
                    self.demo.say(
                        f"{self.demo.stamp()} {self.node} event {data['kind']}: "
                        f"{where}{data.get('message', '')}"
                    )

    def stop(self) -> None:
        self._stopped.set()


def _outage(demo: Demo, result: ProbeResult) -> None:
    demo.say(
        f"client probe of {VIP4} every 10 ms: sent {result.sent}, lost {result.lost}, "
        f"longest outage {result.longest_outage_ms:.0f} ms"
    )


def failover(demo: Demo) -> None:
    """SIGKILL node1's agent and pull its cable while the client probes the VIP."""
    lab = demo.lab
    demo.say(
        "\nFailover: the client pings 10.99.0.100 every 10 ms; node1's vigild gets SIGKILL "
        "and its cable is pulled.\nnode2's event stream, live:"
    )
    EventPrinter(demo, "node2")
    probe = Probe(lab, "client", VIP4).start()
    probe.wait_received(20)
    lab.kill_group(demo.agents["node1"])
    lab.cable_pull("node1")
    demo.say(
        f"{demo.stamp()} node1: vigild killed (SIGKILL), cable pulled; node2 takes over "
        "when its Master_Down timer (3 x 1 s + skew 0.61 s) runs out after node1's last advert"
    )
    wait_for(
        lambda: states(demo.agents["node2"]) == dict.fromkeys(INSTANCES, "MASTER"),
        timeout=10,
        what="node2 to become MASTER",
    )
    probe.wait_received(50, timeout=5)
    _outage(demo, probe.stop())
    show_status(demo, only=["node2"])


def preempt_back(demo: Demo) -> None:
    """Plug node1 back in, restart its agent, and watch it preempt (it has priority 150)."""
    lab = demo.lab
    demo.say(
        "\nRecovery: node1's cable goes back in and vigild restarts there; with priority 150 "
        "it takes the VIPs back."
    )
    probe = Probe(lab, "client", VIP4).start()
    probe.wait_received(20)
    lab.cable_plug("node1")
    old = demo.agents["node1"]
    demo.agents["node1"] = lab.start_vigild("node1", old.config_path, log_level="info")
    demo.say(
        f"{demo.stamp()} node1: cable plugged, vigild restarted (pid {demo.agents['node1'].pid})"
    )
    EventPrinter(demo, "node1", since=0)  # from its start: the crash clean-up, the election
    wait_roles(demo, "node1", "node2")
    probe.wait_received(50, timeout=5)
    _outage(demo, probe.stop())
    show_status(demo)


def wait_for_user(demo: Demo) -> None:
    """Keep the lab up until Enter or Ctrl-C, with the commands to look around."""
    demo.say("\nThe lab is up. Try, in another shell:")
    for agent in demo.agents.values():
        demo.say(f"  ip netns exec {agent.node.ns} vigilctl -s {agent.socket_path} events")
    demo.say(f"  ip netns exec {demo.lab.node('client').ns} ping 10.99.0.100")
    demo.say("Press Enter (or Ctrl-C) to tear it down.")
    # Bounded: an hour at most, then the demo cleans up by itself.
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(["bash", "-c", "read -r -t 3600"], check=False)


def _serialized(say: Callable[[str], None]) -> Callable[[str], None]:
    """``say`` behind a lock: event printers run in threads, and lines must not interleave."""
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            say(line)

    return locked


def run(
    steps: Sequence[Step] = (show_status,),
    *,
    workdir: Path | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Build the demo, run ``steps`` in order, always tear down. Returns an exit code."""
    if os.geteuid() != 0:
        say("make demo needs root: it creates network namespaces (try `sudo make demo`)")
        return 2
    say = _serialized(say)
    workdir = workdir or REPO_ROOT / ".lab" / "demo"
    shutil.rmtree(workdir / "logs", ignore_errors=True)  # only this run's logs
    lab = Lab(workdir)
    try:
        say(f"vigil demo (lab {lab.lab_id}; logs in {workdir}/logs)")
        demo = build(lab, say=say)
        for step in steps:
            step(demo)
        return 0
    except KeyboardInterrupt:
        say("\ninterrupted")
        return 130
    finally:
        say("cleaning up ...")
        lab.close()
        wait_for(lambda: all(not Path("/run/netns", n.ns).exists() for n in lab.nodes.values()),
                 timeout=5, what="the demo namespaces to be gone")  # fmt: skip
        say("done: namespaces and processes removed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.demo", description=__doc__)
    parser.add_argument("--hold", action="store_true", help="keep the lab up until Enter or Ctrl-C")
    parser.add_argument(
        "--no-failover", action="store_true", help="only show the pair, skip the failover"
    )
    act = parser.add_mutually_exclusive_group()
    act.add_argument(
        "--no-lb", action="store_true", help="skip the load-balancer act (it boots the IPVS VM)"
    )
    act.add_argument("--lb-only", action="store_true", help="only the load-balancer act")
    args = parser.parse_args(argv)
    steps: list[Step] = [wait_elected, show_status]
    if not args.no_failover:
        steps += [failover, preempt_back]
    if args.hold:
        steps.append(wait_for_user)
    code = 0 if args.lb_only else run(steps)
    if code == 0 and not args.no_lb:
        code = lb_act()
    return code


#: the load-balancer act's bound in the VM (2-4 minutes on a quiet host)
LB_TIMEOUT = 1200.0


def lb_act(say: Callable[[str], None] = print) -> int:
    """The HA load-balancer act (tests/lab/demo_lb.py) in the IPVS VM, streamed here."""
    from .vm import VmError, run_in_vm

    if os.geteuid() != 0:
        say("make demo needs root: it boots a QEMU VM (try `sudo make demo`)")
        return 2
    say(
        "\nThe load-balancer act needs IPVS, which this kernel lacks: booting the IPVS VM "
        "(QEMU, Debian's cloud kernel; tests/lab/vm.py) ..."
    )
    env = {"PYTHONUNBUFFERED": "1"}  # the act's lines reach output.log, and here, live
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    try:
        result = run_in_vm(
            [sys.executable, "-m", "tests.lab.demo_lb"],
            cwd=REPO_ROOT,
            env=env,
            timeout=LB_TIMEOUT,
            stream=sys.stdout,
        )
    except VmError as exc:
        say(f"the IPVS VM failed: {exc}")
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted; the VM is stopped")
        return 130
    say(result.summary())
    return 124 if result.timed_out else result.returncode


if __name__ == "__main__":
    sys.exit(main())
