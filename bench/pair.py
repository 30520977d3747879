"""An HA pair of one implementation (keepalived or vigil) in a fresh lab, from one config.

Both implementations run from the *same* keepalived.conf: keepalived reads it directly,
vigil reads what ``vigilctl import-keepalived`` makes of it (the real CLI, so the
benchmark also exercises the migration path operators use). The topology is the one of
tests/integration/test_vrrp_pair.py: switch ``sw``, nodes ``n1`` (priority 150) and
``n2`` (priority 100), and a ``client`` that probes the VIP.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.agents import AgentHandle, bin_path
from tests.lab.lab import Lab, Node
from tests.lab.peers import PeerHandle
from tests.lab.procs import ProcessHandle

__all__ = [
    "IMPLS",
    "BenchError",
    "InstanceSpec",
    "Pair",
    "import_keepalived_conf",
    "keepalived_conf",
    "use_vigil_revision",
]

IMPLS = ("keepalived", "vigil")
PRIORITY = {"n1": 150, "n2": 100}
NODE_ADDRS = {
    "n1": ["10.99.0.11/24", "fd00:99::11/64"],
    "n2": ["10.99.0.12/24", "fd00:99::12/64"],
    "client": ["10.99.0.20/24", "fd00:99::20/64"],
}


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and what was seen."""


REPO_ROOT = Path(__file__).resolve().parents[1]


def use_vigil_revision(rev: str, dest: Path) -> dict[str, str]:
    """Run vigild and vigilctl from a snapshot of ``agent/src`` at git revision ``rev``.

    The checkout is shared with people who are editing it; a benchmark that takes half an
    hour must measure one fixed version, and say which. The snapshot is extracted with
    ``git archive`` into ``dest`` and put first on PYTHONPATH, which the daemons the lab
    spawns inherit (ahead of the venv's editable install). ``rev="worktree"`` leaves the
    live tree in place; a directory that holds a ``vigil`` package (an experiment) is used
    as it is. Returns what to record: the commit and whether it is the tree.
    """

    def git(*args: str) -> str:
        res = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if res.returncode != 0:
            raise BenchError(
                f"git {' '.join(args)} failed: {res.stderr.decode(errors='replace').strip()}"
            )
        return res.stdout.decode(errors="replace")

    head = git("rev-parse", "HEAD").strip()
    if (Path(rev) / "vigil" / "__init__.py").is_file():
        # A directory holding a vigil package (an experiment): used as it is.
        src_dir = Path(rev).resolve()
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(src_dir) + (os.pathsep + old if old else "")
        return {"vigil_source": f"directory {src_dir}", "commit": head, "dirty": "unknown"}
    if rev == "worktree":
        dirty = bool(git("status", "--porcelain", "--", "agent/src").strip())
        return {"vigil_source": "worktree", "commit": head, "dirty": str(dirty).lower()}
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit, "agent/src"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if archive.returncode != 0:
        raise BenchError(f"git archive {commit}: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)
    src = dest / "agent" / "src"
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src) + (os.pathsep + old if old else "")
    return {"vigil_source": f"git archive {commit} agent/src", "commit": commit, "dirty": "false"}


@dataclass(frozen=True)
class InstanceSpec:
    """One VRRP instance as both implementations will run it."""

    name: str
    vrid: int
    vip: str  # with prefix length, e.g. 10.99.0.100/24
    version: int
    interval: float

    @property
    def family(self) -> int:
        return ipaddress.ip_interface(self.vip).version

    @property
    def vip_address(self) -> str:
        return str(ipaddress.ip_interface(self.vip).ip)

    def __post_init__(self) -> None:
        if self.family == 6 and self.version != 3:
            raise ValueError(f"{self.name}: IPv6 VRRP is version 3 only (keepalived forces it)")
        if self.version == 2 and self.interval != int(self.interval):
            raise ValueError(f"{self.name}: VRRPv2 advert interval must be whole seconds")


def _interval_text(interval: float) -> str:
    return str(int(interval)) if interval == int(interval) else f"{interval:g}"


def keepalived_conf(router_id: str, priority: int, instances: Sequence[InstanceSpec]) -> str:
    """A plain keepalived.conf: one vrrp_instance per spec, multicast, no scripts.

    ``state BACKUP`` everywhere: keepalived treats it as a start-up hint only, and the
    importer says vigil behaves the same (every instance starts in BACKUP).
    """
    versions = {i.version for i in instances}
    lines = ["global_defs {", f"    router_id {router_id}"]
    if versions == {3}:
        lines.append("    vrrp_version 3")
    lines.append("}")
    for inst in instances:
        lines += [
            f"vrrp_instance {inst.name} {{",
            "    state BACKUP",
            "    interface eth0",
            f"    virtual_router_id {inst.vrid}",
            f"    priority {priority}",
            f"    advert_int {_interval_text(inst.interval)}",
        ]
        if versions != {3} and inst.version == 3:
            lines.append("    version 3")
        if inst.family == 6:
            lines.append("    native_ipv6")
        lines += ["    virtual_ipaddress {", f"        {inst.vip}", "    }", "}"]
    return "\n".join(lines) + "\n"


def import_keepalived_conf(ka_path: Path, out_path: Path, timeout: float = 30.0) -> Path:
    """Run ``vigilctl import-keepalived KA_PATH`` and write its YAML to ``out_path``."""
    argv = [bin_path("vigilctl"), "import-keepalived", str(ka_path)]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"`{' '.join(argv)}` did not finish within {timeout}s") from exc
    if res.returncode != 0:
        raise BenchError(
            f"`{' '.join(argv)}` failed with exit {res.returncode}; the benchmark needs the "
            f"import to succeed:\n{res.stderr.strip()}"
        )
    out_path.write_text(res.stdout)
    return out_path


Handle = AgentHandle | PeerHandle


class Pair:
    """A fresh lab (switch, n1, n2, client) running one implementation on n1 and n2.

    ``close()`` removes everything; use it in a ``finally`` (the lab also closes itself at
    exit and on SIGTERM/SIGHUP, see tests.lab.lifecycle).
    """

    def __init__(
        self,
        workdir: Path,
        impl: str,
        instances: Sequence[InstanceSpec],
        *,
        log_level: str = "info",
        priorities: dict[str, int] | None = None,
    ) -> None:
        if impl not in IMPLS:
            raise ValueError(f"implementation {impl!r}: choose one of {', '.join(IMPLS)}")
        if not instances:
            raise ValueError("a pair needs at least one VRRP instance")
        self.impl = impl
        self.instances = tuple(instances)
        self.log_level = log_level
        self.priorities = {**PRIORITY, **(priorities or {})}
        self.lab = Lab(workdir)
        self.handles: dict[str, Handle] = {}
        self.conf_text: dict[str, str] = {}
        self.vigil_conf: dict[str, Path] = {}
        try:
            self._build()
        except BaseException:
            self.lab.close()
            raise

    def _build(self) -> None:
        self.lab.add_switch()
        for name, addrs in NODE_ADDRS.items():
            node = self.lab.add_namespace(name)
            self.lab.connect(node, addrs=addrs)
        for name in ("n1", "n2"):
            text = keepalived_conf(name, self.priorities[name], self.instances)
            self.conf_text[name] = text
            ka_path = self.lab.node_dir(name) / "keepalived-source.conf"
            ka_path.write_text(text)
            if self.impl == "vigil":
                self.vigil_conf[name] = import_keepalived_conf(
                    ka_path, self.lab.node_dir(name) / "vigil-imported.yml"
                )

    # ------------------------------------------------------------------ daemons

    def node(self, name: str) -> Node:
        return self.lab.node(name)

    def start(self, name: str) -> Handle:
        """Start the implementation on ``name`` (again, after a stop, for recovery)."""
        handle: Handle
        if self.impl == "keepalived":
            handle = self.lab.start_keepalived(name, self.conf_text[name])
        else:
            handle = self.lab.start_vigild(
                name, self.vigil_conf[name], log_level=self.log_level, timeout=20.0
            )
        self.handles[name] = handle
        return handle

    def start_all(self) -> None:
        self.start("n1")
        self.start("n2")

    def process(self, name: str) -> ProcessHandle:
        return self.handles[name].process

    def kill(self, name: str) -> None:
        """SIGKILL the daemon's whole process group: a crash (its VIPs stay behind)."""
        self.handles[name].kill()

    def stop(self, name: str) -> None:
        """A clean stop: SIGTERM, the daemon sends priority 0 and removes its VIPs."""
        self.handles[name].stop()

    # ------------------------------------------------------------------ observation

    def addresses(self, name: str) -> set[str]:
        """The bare addresses on the node's eth0 (one ``ip -j addr`` call)."""
        return {a.split("/")[0] for a in self.lab.addresses(name, "eth0")}

    def vips_on(self, name: str) -> set[str]:
        vips = {i.vip_address for i in self.instances}
        return vips & {str(ipaddress.ip_address(a)) for a in self.addresses(name)}

    def master_states(self, name: str) -> dict[str, str]:
        """Instance name -> state as the implementation reports it (best effort).

        vigil: its API. keepalived has no API: the last "Entering X STATE" line per
        instance in its log (keepalived -l -D logs every transition).
        """
        handle = self.handles.get(name)
        if handle is None:
            return {}
        if isinstance(handle, AgentHandle):
            status, body = handle.client.get("/v1/status")
            if status != 200:
                return {}
            vrrp = body.get("vrrp") or {}
            return {str(i["name"]): str(i["state"]) for i in vrrp.get("instances", [])}
        states: dict[str, str] = {}
        for line in handle.process.log_text().splitlines():
            for inst in self.instances:
                marker = f"({inst.name}) Entering "
                if marker in line:
                    rest = line.split(marker, 1)[1]
                    states[inst.name] = rest.split()[0]
        return states

    def converged(self) -> bool:
        """n1 holds every VIP and says MASTER everywhere; n2 holds none and is not MASTER."""
        want = {i.vip_address for i in self.instances}
        if self.vips_on("n1") != want or self.vips_on("n2"):
            return False
        s1, s2 = self.master_states("n1"), self.master_states("n2")
        names = {i.name for i in self.instances}
        return all(s1.get(n) == "MASTER" for n in names) and all(
            s2.get(n) == "BACKUP" for n in names
        )

    def wait_converged(self, timeout: float) -> None:
        def observe() -> dict[str, Any]:
            return {
                "n1": {"vips": sorted(self.vips_on("n1")), "states": self.master_states("n1")},
                "n2": {"vips": sorted(self.vips_on("n2")), "states": self.master_states("n2")},
            }

        try:
            self.lab.wait_for(self.converged, timeout=timeout, interval=0.05, what="converged")
        except AssertionError as exc:
            raise BenchError(
                f"{self.impl} pair did not converge within {timeout}s (n1 master, n2 backup); "
                f"last seen: {observe()}\n{self._log_tails()}"
            ) from exc

    def _log_tails(self, tail: int = 15) -> str:
        parts = []
        for name, handle in self.handles.items():
            parts.append(f"--- {name} {self.impl} log (last {tail} lines):\n{handle.log(tail)}")
        return "\n".join(parts)

    def close(self) -> None:
        """Tear the lab down; a teardown error is printed, not raised, so it never hides
        the error that ended the round (the lab's registry keeps what was left for
        ``python -m tests.lab.cleanup``)."""
        try:
            self.lab.close()
        except Exception as exc:
            print(f"bench: teardown of {self.lab.lab_id}: {exc}", file=sys.stderr)

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
