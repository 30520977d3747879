"""``make demo``: a two-node vigil pair in network namespaces, shown and cleaned up.

Builds a switch, ``node1`` and ``node2`` (eth0 10.99.0.11/24 and .12/24, fd00:99::11/64
and ::12/64) and a ``client`` (10.99.0.2/24, fd00:99::2/64), starts vigild on both nodes
with examples/demo/node1.yml and node2.yml, prints ``vigilctl status`` of each, and removes
everything on exit, on Ctrl-C and on SIGTERM.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .agents import AgentHandle
from .lab import Lab
from .probe import REPO_ROOT
from .waiting import wait_for

__all__ = ["NODES", "Demo", "build", "main", "run", "show_status", "wait_for_user"]

DEMO_DIR = REPO_ROOT / "examples" / "demo"
#: node name -> addresses on eth0
NODES = {
    "node1": ["10.99.0.11/24", "fd00:99::11/64"],
    "node2": ["10.99.0.12/24", "fd00:99::12/64"],
}
CLIENT = ("client", ["10.99.0.2/24", "fd00:99::2/64"])


@dataclass
class Demo:
    """The running demo: its lab and the agent of each node."""

    lab: Lab
    agents: dict[str, AgentHandle] = field(default_factory=dict)
    say: Callable[[str], None] = print


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


def show_status(demo: Demo) -> None:
    """Print ``vigilctl status`` of every agent."""
    for name, agent in demo.agents.items():
        res = agent.vigilctl("status")
        demo.say(f"\n$ ip netns exec {agent.node.ns} vigilctl --socket {agent.socket_path} status")
        demo.say((res.stdout + res.stderr).rstrip())
        if res.returncode != 0:
            raise RuntimeError(f"vigilctl status on {name} failed with exit {res.returncode}")


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
    args = parser.parse_args(argv)
    steps: list[Step] = [show_status]
    if args.hold:
        steps.append(wait_for_user)
    return run(steps)


if __name__ == "__main__":
    sys.exit(main())
