"""``make demo``'s load-balancer act: an LVS director pair in the IPVS VM, shown and cleaned up.

It runs inside the VM (``python -m tests.lab.vm -- python -m tests.lab.demo_lb``; ``make
demo`` and ``python -m tests.lab.demo`` start it after the VRRP acts) because only the
VM's kernel has IPVS. It builds the HA lab of the VM tests (tests/lab/ipvs.py,
``build_ha_lab``: ``d1`` and ``d2``, three web servers ``rs1``-``rs3`` running busybox
httpd, a sorry server, a client) and an echo service on rs1 and rs2, starts vigild on
both directors with examples/demo/director1.yml and director2.yml, and then:

1. shows ``vigilctl ipvs status`` of the master and the client's requests spread over the
   three servers by round robin;
2. kills rs2's web server: the master takes it out of the pool (its event stream is
   printed live) and every request after that succeeds; rs2 comes back when it answers;
3. opens a long-lived echo connection through the VIP, waits until the master's sync
   daemon has sent it to the backup, then crashes the master (vigild SIGKILLed, cable
   pulled) while the client keeps sending requests: d2 takes over, the same connection
   still echoes, and the client's requests carry on; ``vigilctl ipvs status`` of d2.

Everything is removed on exit, on Ctrl-C and on SIGTERM; the act takes 2-4 minutes in the
VM (vigild starting under TCG is most of it). Each step is bounded in time.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vigil.cli import main as vigilctl

from .agents import AgentHandle
from .demo import Demo, EventPrinter, _serialized
from .ipvs import CLIENT, HA_VIPS, EchoServers, HaLab, Session, build_ha_lab
from .lab import Lab
from .probe import REPO_ROOT
from .waiting import wait_for

__all__ = ["main", "run"]

DEMO_DIR = REPO_ROOT / "examples" / "demo"
VIP = HA_VIPS["nat"]
STEP_TIMEOUT = 60.0
#: vigild under TCG on a busy host may take minutes to answer ready
AGENT_START = 600.0


@dataclass
class LbDemo:
    demo: Demo
    ha: HaLab

    @property
    def say(self) -> Callable[[str], None]:
        return self.demo.say

    def agent(self, name: str) -> AgentHandle:
        return self.demo.agents[name]


def _state(agent: AgentHandle) -> str | None:
    try:
        status, body = agent.client.get("/v1/vrrp/instances/VI_LB")
    except Exception:
        return None
    return body.get("state") if status == 200 else None


def _ipvs_status(lb: LbDemo, name: str) -> None:
    """``vigilctl ipvs status`` of one director: vigilctl's entry point, in this process
    (a vigilctl process takes long to start in the VM), over the agent's socket."""
    agent = lb.agent(name)
    out, err = io.StringIO(), io.StringIO()
    vigilctl(["--socket", str(agent.socket_path), "--timeout", "60", "ipvs", "status"], out, err)
    lb.say(f"\n$ vigilctl --socket {agent.socket_path} ipvs status      # on {name}")
    lb.say((out.getvalue() + err.getvalue()).rstrip())


def _requests(lb: LbDemo, count: int) -> list[str]:
    got = []
    for _ in range(count):
        try:
            got.append(lb.ha.get(VIP, timeout=3))
        except OSError as exc:
            got.append(f"failed ({exc})")
    lb.say(f"{lb.demo.stamp()} client: {count} requests to http://{VIP}/ answered by: "
           f"{' '.join(got)}")  # fmt: skip
    return got


class RequestLoop:
    """The client requests http://VIP/ every 0.1 s from a thread (bounded: 120 s)."""

    def __init__(self, lb: LbDemo) -> None:
        self.lb = lb
        self.ok = 0
        self.failed = 0
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="requests", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_ok = time.monotonic()
        deadline = last_ok + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.lb.ha.get(VIP, timeout=1)
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last_ok)
                last_ok = now
                self.ok += 1
            except OSError:
                self.failed += 1
            self._stop.wait(0.1)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=10)
        return (
            f"client requests every 0.1 s: {self.ok} answered, {self.failed} failed, "
            f"longest time without an answer {self.longest_gap:.1f} s"
        )


def build(lab: Lab, say: Callable[[str], None]) -> LbDemo:
    say("Building the load-balancer lab: d1, d2, rs1-rs3, a sorry server, a client ...")
    ha = build_ha_lab(lab)
    EchoServers(lab, ha.servers[:2])
    demo = Demo(lab, say=say)
    for n in (1, 2):
        name = f"d{n}"
        demo.agents[name] = lab.start_vigild(
            ha.directors[n - 1], DEMO_DIR / f"director{n}.yml", wait=False, log_level="info"
        )
    for name, agent in demo.agents.items():
        agent.wait_ready(timeout=AGENT_START)
        agent.client.timeout = 60
        say(f"  vigild on {name}: pid {agent.pid}, config examples/demo/director{name[1]}.yml")
    lb = LbDemo(demo, ha)
    wait_for(lambda: _state(lb.agent("d1")) == "MASTER", timeout=STEP_TIMEOUT, what="d1 MASTER")
    wait_for(lambda: _state(lb.agent("d2")) == "BACKUP", timeout=STEP_TIMEOUT, what="d2 BACKUP")
    say(f"{demo.stamp()} d1 is MASTER for VI_LB (it holds {VIP}), d2 is BACKUP")
    return lb


def show_pool(lb: LbDemo) -> None:
    _ipvs_status(lb, "d1")
    _requests(lb, 6)


def backend_dies(lb: LbDemo) -> None:
    ha = lb.ha
    lb.say("\nrs2's web server is killed; d1's event stream, live:")
    printer = EventPrinter(lb.demo, "d1")
    ha.kill_httpd(ha.servers[1])
    wait_for(lambda: "10.62.1.12:80" not in ha.ipvsadm(0, "-Ln"), timeout=STEP_TIMEOUT,
             interval=0.3, what="rs2 out of the pool")  # fmt: skip
    _requests(lb, 4)
    lb.say(f"{lb.demo.stamp()} rs2's web server starts again")
    ha.start_httpd(ha.servers[1])
    wait_for(lambda: "10.62.1.12:80" in ha.ipvsadm(0, "-Ln"), timeout=STEP_TIMEOUT,
             interval=0.3, what="rs2 back in the pool")  # fmt: skip
    _requests(lb, 3)
    printer.stop()


def director_crash(lb: LbDemo) -> None:
    ha, lab = lb.ha, lb.demo.lab
    session = Session(ha.client, VIP, source=CLIENT)
    lb.say(f"\nA long-lived connection: {session} (echo on a web server), "
           f"first exchange: {session.exchange()}")  # fmt: skip

    def synced() -> bool:
        return session.local in ha.ipvsadm(1, "-Lnc")

    wait_for(synced, timeout=STEP_TIMEOUT, interval=0.3, what="the connection synced to d2")
    lb.say(f"{lb.demo.stamp()} d1's sync daemon has sent it to d2 (`ipvsadm -Lnc` on d2 lists it)")
    lb.say("\nd1 crashes: vigild SIGKILLed and its cable pulled. d2's event stream, live:")
    printer = EventPrinter(lb.demo, "d2")
    loop = RequestLoop(lb)
    wait_for(lambda: loop.ok >= 5, timeout=STEP_TIMEOUT, what="the client's requests answered")
    lb.agent("d1").kill()
    lab.cable_pull(ha.directors[0])
    lb.say(f"{lb.demo.stamp()} d1 is gone; d2 takes over when its Master_Down timer runs out")
    wait_for(lambda: _state(lb.agent("d2")) == "MASTER", timeout=STEP_TIMEOUT, what="d2 MASTER")
    mark = loop.ok
    wait_for(lambda: loop.ok >= mark + 5, timeout=STEP_TIMEOUT, interval=0.2,
             what="the client's requests answered by d2")  # fmt: skip
    lb.say(f"{lb.demo.stamp()} {loop.stop()}")
    lb.say(f"{lb.demo.stamp()} the long-lived connection after the failover: "
           f"{session.exchange()}, and again: {session.exchange()}")  # fmt: skip
    session.close()
    printer.stop()
    _ipvs_status(lb, "d2")


def run(say: Callable[[str], None] = print) -> int:
    if os.geteuid() != 0:
        say("the load-balancer act needs root (network namespaces, IPVS)")
        return 2
    say = _serialized(say)
    workdir = REPO_ROOT / ".lab" / "demo-lb"
    lab = Lab(workdir)
    try:
        say(f"vigil demo, load-balancer act (lab {lab.lab_id}; logs in {workdir}/logs)")
        lb = build(lab, say)
        show_pool(lb)
        backend_dies(lb)
        director_crash(lb)
        return 0
    except KeyboardInterrupt:
        say("\ninterrupted")
        return 130
    finally:
        say("cleaning up ...")
        lab.close()
        say("done: namespaces and processes removed")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m tests.lab.demo_lb", description=__doc__).parse_args(
        argv
    )
    if isinstance(sys.stdout, io.TextIOWrapper):  # in the VM stdout is a file: show it live
        sys.stdout.reconfigure(line_buffering=True)
    return run()


if __name__ == "__main__":
    sys.exit(main())
