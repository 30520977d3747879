"""The soak's lab: groups of vigild nodes run as systemd would run them, and observers.

Each agent node gets:

- a tiny tmpfs as its state directory (``Lab.mount_tmpfs``), so a "full state dir" is a
  real ENOSPC;
- the unit's limits: ``prlimit --nofile`` with packaging/vigild.service's ``LimitNOFILE``
  (systemd's default 1024:524288 when the unit sets none);
- a supervisor that does what systemd does with the unit: when vigild exits (killed by an
  injection, or a crash nobody asked for), it runs ``ExecStopPost`` (``vigild --cleanup``),
  waits ``RestartSec`` and starts it again with the same config, socket and state dir,
  honouring ``StartLimitBurst`` in ``StartLimitIntervalSec``;
- ``net.ipv6.conf.eth0.keep_addr_on_down=1``, so a link flap does not take the node's own
  IPv6 address away for good (the lab's addresses are static; the VIPs are the agent's).

Subsystems: a group with BFD in ``track`` mode gets its upstream router (FRR bfdd, a real
peer, in its own namespace on the segment); a group with IPVS gets its real servers, one
namespace each running ``tests.lab.check_servers`` (HTTP; ``control/status`` makes it
answer 500), which the IPVS injection kills and revives. This host's kernel has no IPVS:
the agents run their virtual servers with the kernel marked unavailable.

Observers (tests.lab.observe): an rtnetlink address watch over every agent namespace, an
event-stream follower per node (it survives restarts), a probe per VIP from the group's
client, and /proc samples.
"""

from __future__ import annotations

import contextlib
import re
import resource
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from vigil.client import ApiClient, ApiUnreachable

from bench.soak.model import GroupSpec, NodeSpec
from tests.lab.agents import AgentHandle, bin_path
from tests.lab.bfd import FrrBfdPeer, frr_bfd_conf
from tests.lab.lab import Lab
from tests.lab.observe import AddressWatch, EventFollower, ProcSample, proc_sample
from tests.lab.peers import PeerHandle
from tests.lab.probe import Probe
from tests.lab.procs import ProcessHandle

__all__ = ["Cluster", "NodeRuntime", "Supervisor", "UnitSettings"]

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO_ROOT / "packaging" / "vigild.service"
STATE_TMPFS_SIZE = "256k"


def _seconds(text: str) -> float:
    """A systemd time span: "1s", "100ms", "2min", "5" (seconds)."""
    total = 0.0
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "": 1.0}
    for value, unit in re.findall(r"([\d.]+)\s*([a-z]*)", text.strip()):
        total += float(value) * units.get(unit, 1.0)
    return total


@dataclass(frozen=True)
class UnitSettings:
    """What of the systemd unit the supervisor imitates (systemd's defaults otherwise)."""

    nofile_soft: int = 1024
    nofile_hard: int = 524288
    restart_sec: float = 0.1
    start_limit_burst: int = 5
    start_limit_interval: float = 10.0
    source: str = "systemd defaults"

    @classmethod
    def from_unit(cls, path: Path = UNIT_FILE) -> UnitSettings:
        try:
            text = path.read_text()
        except OSError:
            return cls()
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
        soft, hard = cls.nofile_soft, cls.nofile_hard
        if "LimitNOFILE" in values:
            parts = values["LimitNOFILE"].split(":")
            soft = int(parts[0])
            hard = int(parts[1]) if len(parts) > 1 else soft
        return cls(
            nofile_soft=soft,
            nofile_hard=hard,
            restart_sec=_seconds(values.get("RestartSec", "100ms")),
            start_limit_burst=int(values.get("StartLimitBurst", cls.start_limit_burst)),
            start_limit_interval=_seconds(values.get("StartLimitIntervalSec", "10s")),
            source=str(path.relative_to(REPO_ROOT))
            if path.is_relative_to(REPO_ROOT)
            else str(path),
        )

    def effective_nofile(self) -> tuple[int, int]:
        """The unit's limits, the hard one capped at ours (only root in the init namespace
        may raise it; a container's may be lower than systemd's default)."""
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        top = self.nofile_hard if hard == resource.RLIM_INFINITY else min(self.nofile_hard, hard)
        return min(self.nofile_soft, top), top

    def wrapper(self) -> list[str]:
        soft, hard = self.effective_nofile()
        return ["prlimit", f"--nofile={soft}:{hard}", "--"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "LimitNOFILE": f"{self.nofile_soft}:{self.nofile_hard}",
            "LimitNOFILE_effective": "{}:{}".format(*self.effective_nofile()),
            "RestartSec": self.restart_sec,
            "StartLimitBurst": self.start_limit_burst,
            "StartLimitIntervalSec": self.start_limit_interval,
            "from": self.source,
        }


@dataclass
class NodeRuntime:
    """One agent node: its spec, config file, state dir and the vigild running now."""

    lab: Lab
    group: GroupSpec
    spec: NodeSpec
    config_path: Path
    state_dir: Path
    socket_path: Path
    agent: AgentHandle | None = None
    extra_vip: bool = False
    expect_exit: bool = False
    #: a statedir_full injection filled the state dir: a start-up that exits 1 because
    #: it cannot write its journal is the promised behaviour then, not a crash
    state_full: bool = False
    restarting: bool = False
    generation: int = 0
    exits: list[dict[str, Any]] = field(default_factory=list)
    cleanups: list[dict[str, Any]] = field(default_factory=list)
    starts: deque[float] = field(default_factory=deque)
    samples: list[ProcSample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        a = self.agent
        return a.pid if a is not None else None

    @property
    def client(self) -> ApiClient:
        return ApiClient(str(self.socket_path), timeout=5.0)

    def good_config(self) -> str:
        return yaml.safe_dump(
            self.group.config(self.spec, extra_vip=self.extra_vip), sort_keys=False
        )

    def write_config(self, text: str) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)

    def healthy(self) -> bool:
        try:
            status, body = self.client.get("/v1/health")
        except ApiUnreachable:
            return False
        return status == 200 and isinstance(body, dict) and body.get("ready") is True


class Supervisor:
    """systemd's part: restart vigild after it exits, clean-up first (ExecStopPost)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self.start_limit_hits: list[dict[str, Any]] = []

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=40)

    def _run(self) -> None:
        while not self._stop.is_set():
            for node in self.cluster.nodes.values():
                if self._stop.is_set():
                    return
                agent = node.agent
                if agent is None or node.restarting or agent.process.alive():
                    continue
                self._restart(node, agent)
            self._stop.wait(0.05)

    def _restart(self, node: NodeRuntime, agent: AgentHandle) -> None:
        lab = self.cluster.lab
        unit = self.cluster.unit
        node.restarting = True
        try:
            with node.lock:
                expected, node.expect_exit = node.expect_exit, False
            if not expected and node.state_full and agent.process.returncode == 1:
                expected = "the state journal cannot be written" in agent.log(tail=40)
            node.exits.append(
                {
                    "time": time.monotonic(),
                    "pid": agent.pid,
                    "code": agent.process.returncode,
                    "expected": expected,
                    "log_tail": "" if expected else agent.log(tail=40),
                }
            )
            res = lab.run(
                node.spec.name,
                [bin_path("vigild"), "--cleanup", "--state-dir", str(node.state_dir)],
                check=False,
                timeout=30,
            )
            node.cleanups.append(
                {
                    "time": time.monotonic(),
                    "code": res.returncode,
                    "output": (res.stdout + res.stderr)[-2000:],
                }
            )
            now = time.monotonic()
            while node.starts and now - node.starts[0] > unit.start_limit_interval:
                node.starts.popleft()
            if len(node.starts) >= unit.start_limit_burst:
                # systemd marks the unit failed; an operator (here: the soak) tries later.
                self.start_limit_hits.append({"node": node.name, "time": now})
                self._stop.wait(unit.start_limit_interval)
                node.starts.clear()
            self._stop.wait(unit.restart_sec)
            if self._stop.is_set():
                return
            node.starts.append(time.monotonic())
            self.cluster.start_agent(node, wait=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not self._stop.is_set():
                new = node.agent
                if new is None or not new.process.alive() or node.healthy():
                    break
                self._stop.wait(0.05)
        finally:
            node.restarting = False


class Cluster:
    """The groups in a lab, with a supervisor and the observers."""

    def __init__(self, lab: Lab, groups: tuple[GroupSpec, ...], unit: UnitSettings) -> None:
        self.lab = lab
        self.groups = {g.name: g for g in groups}
        self.unit = unit
        self.nodes: dict[str, NodeRuntime] = {}
        self.watch: AddressWatch | None = None
        self.followers: dict[str, EventFollower] = {}
        self.probes: dict[str, tuple[str, Probe]] = {}  # address -> (group, probe)
        self.supervisor = Supervisor(self)
        self.routers: dict[str, PeerHandle] = {}  # group -> its upstream BFD router
        self.real_servers: dict[str, ProcessHandle | None] = {}  # namespace -> its server
        self.rs_control: dict[str, Path] = {}
        self.max_seconds = 0.0

    # ------------------------------------------------------------------ building

    def build(self, *, probe_interval: float, max_seconds: float) -> None:
        lab = self.lab
        self.max_seconds = max_seconds
        for group in self.groups.values():
            lab.add_switch(group.switch)
            extra = []
            if group.bfd is not None and group.bfd.router is not None:
                extra.append(group.bfd.router)
            if group.ipvs is not None:
                extra.extend(group.ipvs.real_servers)
            for spec in (*group.nodes, group.client, *extra):
                lab.add_namespace(spec.name)
                lab.connect(
                    spec.name, addrs=[spec.ipv4, spec.ipv6], switch=group.switch, mac=spec.mac
                )
            self._build_subsystems(group)
            for spec in group.nodes:
                lab.sysctl(spec.name, **{"net.ipv6.conf.eth0.keep_addr_on_down": 1})
                base = lab.node_dir(spec.name, short=True) / "vigild"
                state = lab.mount_tmpfs(base / "state", size=STATE_TMPFS_SIZE)
                node = NodeRuntime(
                    lab=lab,
                    group=group,
                    spec=spec,
                    config_path=lab.node_dir(spec.name) / "vigil.yml",
                    state_dir=state,
                    socket_path=base / "vigil.sock",
                )
                node.write_config(node.good_config())
                self.nodes[spec.name] = node
        for node in self.nodes.values():
            self.start_agent(node, wait=True)
        self.watch = AddressWatch(lab)
        for node in self.nodes.values():
            self.watch.watch(node.name)
            self.followers[node.name] = EventFollower(node.name, node.socket_path).start()
        lab.add_cleanup(self.close_observers)
        for group in self.groups.values():
            for inst in group.instances:
                for addr in inst.addresses:
                    probe = Probe(
                        lab,
                        group.client.name,
                        addr,
                        interval=probe_interval,
                        timeout=0.5,
                        max_duration=max_seconds,
                        realtime=True,
                    ).start()
                    self.probes[addr] = (group.name, probe)
        self.supervisor.start()
        lab.add_cleanup(self.supervisor.close)

    def _build_subsystems(self, group: GroupSpec) -> None:
        lab = self.lab
        bfd = group.bfd
        if bfd is not None and bfd.router is not None:
            ms = round(bfd.interval * 1000)
            peers = [
                FrrBfdPeer(
                    n.ipv4.split("/")[0],
                    bfd.router.ipv4.split("/")[0],
                    rx_ms=ms,
                    tx_ms=ms,
                    multiplier=bfd.multiplier,
                )
                for n in group.nodes
            ]
            self.routers[group.name] = lab.start_frr(bfd.router.name, frr_bfd_conf(peers))
        if group.ipvs is not None:
            for rs in group.ipvs.real_servers:
                control = lab.node_dir(rs.name) / "control"
                control.mkdir(parents=True, exist_ok=True)
                self.rs_control[rs.name] = control
                self.start_real_server(group, rs.name)

    def start_real_server(self, group: GroupSpec, name: str) -> ProcessHandle:
        """(Re)start the HTTP real server in namespace ``name`` (answering 200)."""
        assert group.ipvs is not None
        spec = next(rs for rs in group.ipvs.real_servers if rs.name == name)
        (self.rs_control[name] / "status").unlink(missing_ok=True)
        proc = self.lab.spawn(
            name,
            [sys.executable, "-m", "tests.lab.check_servers", "--listen",
             spec.ipv4.split("/")[0], "--ports", str(group.ipvs.port),
             "--control", str(self.rs_control[name]),
             "--max-duration", str(int(self.max_seconds) + 600)],
            name="httpd",
            cwd=REPO_ROOT,
        )  # fmt: skip
        self.real_servers[name] = proc
        return proc

    def kill_real_server(self, name: str) -> None:
        proc = self.real_servers.get(name)
        if proc is not None:
            self.lab.kill_group(proc, signal.SIGKILL)
        self.real_servers[name] = None

    def set_real_server_status(self, name: str, code: int | None) -> None:
        """Make the real server answer ``code`` (None: 200 again)."""
        path = self.rs_control[name] / "status"
        if code is None:
            path.unlink(missing_ok=True)
        else:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"{code}\n")
            tmp.replace(path)

    def start_agent(self, node: NodeRuntime, *, wait: bool) -> AgentHandle:
        agent = self.lab.start_vigild(
            node.name,
            node.config_path,
            name="vigild",
            log_level="info",
            wrapper=self.unit.wrapper(),
            wait=wait,
            timeout=30,
        )
        with node.lock:
            node.agent = agent
            node.generation += 1
        return agent

    def close_observers(self) -> None:
        for f in self.followers.values():
            f.close()

    # ------------------------------------------------------------------ observations

    def holders(self, group: GroupSpec, address: str) -> list[str]:
        assert self.watch is not None
        return self.watch.holders(address, group.node_names)

    def master_of(self, group: GroupSpec) -> str | None:
        """The node holding the primary instance's first VIP (None: nobody, or several)."""
        held = self.holders(group, group.primary.addresses[0])
        return held[0] if len(held) == 1 else None

    def group_nodes(self, group: GroupSpec) -> list[NodeRuntime]:
        return [self.nodes[n] for n in group.node_names]

    def sample(self) -> None:
        """/proc samples of every agent that is up (not while the supervisor restarts one:
        a sample of a process still starting would be its baseline for the leak check)."""
        for node in self.nodes.values():
            pid = node.pid
            if pid is None or node.restarting:
                continue
            s = proc_sample(pid)
            if s is not None:
                node.samples.append(s)

    def signal(self, node: NodeRuntime, sig: int) -> bool:
        agent = node.agent
        return agent is not None and agent.process.signal_group(sig)

    def kill(self, node: NodeRuntime) -> int | None:
        """SIGKILL the node's whole process group, as an OOM kill or a crash would."""
        with node.lock:
            agent = node.agent
            if agent is None or not agent.process.alive():
                return None
            node.expect_exit = True
        pid = agent.pid
        agent.process.signal_group(signal.SIGKILL)
        return pid

    def wait_restarted(self, node: NodeRuntime, old_pid: int | None, timeout: float) -> bool:
        """Until a new vigild (not ``old_pid``) answers ready on the node's socket."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.pid not in (None, old_pid) and not node.restarting and node.healthy():
                return True
            time.sleep(0.05)
        return False

    def check_alive(self) -> list[str]:
        problems = []
        for node in self.nodes.values():
            agent = node.agent
            if agent is None or not agent.process.alive():
                problems.append(f"{node.name}: vigild is not running")
        return problems

    def namespace_processes(self) -> dict[str, int]:
        from tests.lab.lab import netns_pids

        return {n.name: len(netns_pids(n.ns)) for n in self.lab.nodes.values() if not n.is_switch}

    def stop_probes(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for addr, (group, probe) in self.probes.items():
            with contextlib.suppress(Exception):
                res = probe.stop(timeout=15)
                out[addr] = {"group": group, "raw": res.raw}
        return out
