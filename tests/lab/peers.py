"""Real peers from Debian packages in lab nodes: keepalived, FRR (bfdd, zebra+vrrpd), BIRD.

They follow LAB-NOTES: every instance has its own pid files / sockets so several run on one
host, runs in the foreground in its own process group, and logs to a file in the test's
workdir. ``stop()`` is a clean shutdown (keepalived sends priority 0 and drops its VIPs);
``kill()`` SIGKILLs the whole group, which is a crash (the VIPs stay on the interface).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .procs import ProcessHandle, kill_groups
from .registry import proc_alive
from .waiting import WaitTimeout, wait_for

if TYPE_CHECKING:
    from .lab import Lab, Node, NodeRef

__all__ = ["PeerError", "PeerHandle", "start_bird", "start_frr", "start_keepalived"]

FRR_RUN = Path("/var/run/frr")
FRR_BIN = Path("/usr/lib/frr")


class PeerError(RuntimeError):
    """A peer daemon did not start; the message carries its log."""


@dataclass
class PeerHandle:
    """One peer daemon instance: one or more process groups (FRR runs one per daemon)."""

    lab: Lab
    node: Node
    name: str
    processes: list[ProcessHandle]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def process(self) -> ProcessHandle:
        """The main process (keepalived's parent, FRR's first daemon, bird)."""
        return self.processes[0]

    def log(self, tail: int | None = 80) -> str:
        return "\n".join(p.log_text(tail=tail) for p in self.processes)

    def alive(self) -> bool:
        return all(p.alive() for p in self.processes)

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: SIGTERM to each main process only, then reap the groups."""
        for p in reversed(self.processes):
            p.signal(signal.SIGTERM)
        for p in reversed(self.processes):
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                break
        kill_groups(self.processes, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL every process group at once (a crash)."""
        for p in self.processes:
            p.signal_group(signal.SIGKILL)
        for p in self.processes:
            p.kill()

    def _fail(self, what: str) -> PeerError:
        return PeerError(f"{self.name} on {self.node.name}: {what}; its log:\n{self.log()}")


def _wait_started(handle: PeerHandle, check: object, what: str, timeout: float) -> None:
    def ok() -> bool:
        if not handle.alive():
            raise handle._fail(f"exited (status {handle.process.returncode}) while {what}")
        return bool(check())  # type: ignore[operator]

    try:
        wait_for(ok, timeout=timeout, interval=0.05, what=what)
    except WaitTimeout as exc:
        raise handle._fail(f"{what}: not within {timeout}s") from exc


def _pidfile_alive(path: Path) -> bool:
    """The pid in ``path`` runs (a zombie does not count)."""
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return False
    return proc_alive(pid)


# ---------------------------------------------------------------------- keepalived


def start_keepalived(
    lab: Lab,
    node: NodeRef,
    conf_text: str,
    *,
    name: str = "keepalived",
    extra_args: Sequence[str] = (),
    timeout: float = 10.0,
) -> PeerHandle:
    """Start ``keepalived -n -l -D`` with its own config and pid files in ``node``.

    Returns when the VRRP child (and the BFD child, if configured) has written its pid file.
    """
    n = lab.node(node)
    run = lab.node_dir(n, short=True) / name
    run.mkdir(parents=True, exist_ok=True)
    conf = lab.unique_path(lab.node_dir(n), name, ".conf")
    conf.write_text(conf_text)
    files = {
        "conf": conf,
        "pid": run / "keepalived.pid",
        "vrrp_pid": run / "vrrp.pid",
        "checkers_pid": run / "checkers.pid",
        "bfd_pid": run / "bfd.pid",
    }
    for key in ("pid", "vrrp_pid", "checkers_pid", "bfd_pid"):
        # A crashed predecessor's children may still be zombies (init reaps them late):
        # keepalived would take them for a running daemon and refuse to start.
        if files[key].exists() and not _pidfile_alive(files[key]):
            files[key].unlink()
    argv = [
        "keepalived", "-n", "-l", "-D", "-f", str(conf),
        "-p", str(files["pid"]), "-r", str(files["vrrp_pid"]),
        "-c", str(files["checkers_pid"]), "-b", str(files["bfd_pid"]),
        *extra_args,
    ]  # fmt: skip
    proc = lab.spawn(n, argv, name=name)
    handle = PeerHandle(lab, n, name, [proc], files)
    wanted = []
    if re.search(r"^\s*vrrp_instance\b", conf_text, re.M):
        wanted.append(files["vrrp_pid"])
    if re.search(r"^\s*bfd_instance\b", conf_text, re.M):
        wanted.append(files["bfd_pid"])
    _wait_started(
        handle,
        lambda: all(_pidfile_alive(p) for p in wanted),
        "keepalived children to start",
        timeout,
    )
    return handle


# ---------------------------------------------------------------------- FRR


def _chown_frr(path: Path) -> None:
    os.chown(path, pwd.getpwnam("frr").pw_uid, grp.getgrnam("frr").gr_gid)


def start_frr(
    lab: Lab,
    node: NodeRef,
    conf_text: str,
    *,
    daemons: Sequence[str] = ("bfdd",),
    name: str = "frr",
    timeout: float = 15.0,
) -> PeerHandle:
    """Start FRR daemons (``bfdd`` alone, or ``zebra`` + ``vrrpd``) as instance ``-N``.

    Sockets go to /var/run/frr/<namespace>/ (owned by frr:frr, as FRR requires); each
    daemon reads ``conf_text`` (non-integrated config) and runs in the foreground with
    ``-P 0`` (no TCP vty). Query with ``frr_vtysh(handle, "show bfd peers json")``.
    zebra, when listed, is started first and must answer before the others start.
    """
    n = lab.node(node)
    instance = n.ns
    rundir = FRR_RUN / instance
    lab.registry.record("dir", str(rundir))
    rundir.mkdir(parents=True, exist_ok=True)
    _chown_frr(rundir)
    lab.add_cleanup(lambda: lab.registry.forget("dir", str(rundir)), after_processes=True)
    lab.add_cleanup(lambda: shutil.rmtree(rundir, ignore_errors=True), after_processes=True)
    # FRR drops to user frr before reading its config: it must live where frr can read
    # (the test's tmp dirs are 0700 root). A copy goes to the workdir for reading later.
    conf = rundir / "frr.conf"
    conf.write_text(conf_text)
    _chown_frr(conf)
    lab.unique_path(lab.node_dir(n), name, ".conf").write_text(conf_text)
    order = sorted(daemons, key=lambda d: d != "zebra")
    handle = PeerHandle(lab, n, name, [], {"conf": conf, "rundir": rundir})
    for daemon in order:
        argv = [
            str(FRR_BIN / daemon), "-N", instance, "-P", "0", "-f", str(conf),
            "-i", str(rundir / f"{daemon}.pid"), "--log", "stdout",
        ]  # fmt: skip
        handle.processes.append(lab.spawn(n, argv, name=f"{name}-{daemon}"))
        vty = rundir / f"{daemon}.vty"
        _wait_started(handle, vty.exists, f"{daemon} to open {vty}", timeout)
    return handle


def frr_vtysh(handle: PeerHandle, command: str, timeout: float = 10.0) -> str:
    """Run one vtysh command against the FRR instance of ``handle``."""
    res = handle.lab.run(
        handle.node, ["vtysh", "-N", handle.node.ns, "-c", command], timeout=timeout
    )
    return res.stdout


# ---------------------------------------------------------------------- BIRD


def start_bird(
    lab: Lab, node: NodeRef, conf_text: str, *, name: str = "bird", timeout: float = 10.0
) -> PeerHandle:
    """Start ``bird -f`` with its own control socket; query with ``bird_cli(handle, ...)``."""
    n = lab.node(node)
    run = lab.node_dir(n, short=True) / name
    run.mkdir(parents=True, exist_ok=True)
    conf = lab.unique_path(lab.node_dir(n), name, ".conf")
    conf.write_text(conf_text)
    sock = run / "bird.ctl"
    argv = ["bird", "-f", "-c", str(conf), "-s", str(sock), "-P", str(run / "bird.pid")]
    handle = PeerHandle(lab, n, name, [lab.spawn(n, argv, name=name)], {"conf": conf, "ctl": sock})
    _wait_started(handle, sock.exists, f"bird to open {sock}", timeout)
    return handle


def bird_cli(handle: PeerHandle, command: str, timeout: float = 10.0) -> str:
    res = handle.lab.run(
        handle.node, ["birdc", "-s", str(handle.files["ctl"]), *command.split()], timeout=timeout
    )
    return res.stdout
