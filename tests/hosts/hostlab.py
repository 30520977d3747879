"""Real Debian hosts for Ansible: systemd-nspawn containers on a lab bridge.

Topology (everything inside namespaces of one ``tests.lab.Lab``; nothing in the root
namespace)::

    switch namespace "sw": bridge br0 ---- vb-h1 / vb-h2 ...  (nspawn --network-bridge)
                                  \\---- ctl-eth0 -- namespace "ctl" (Ansible controller,
                                                     ssh client, probe client)

Each host is ``systemd-nspawn --boot --volatile=overlay`` of the shared cached rootfs
(``tests.hosts.rootfs``), started with ``nsenter --net`` into the switch namespace (not
``ip netns exec``, which remounts /sys and hides the cgroup mounts systemd needs). Per-host
files are bind-mounted read-only: the networkd config with its static address, /etc/hosts,
and the per-run SSH public key at /etc/vigil-lab. The controller reaches the hosts over
SSH from the ``ctl`` namespace; ``ansible``/``ansible-playbook`` run there too, with the
collection found through a symlinked ``ansible_collections/vigil/ha``.

Processes are started through the lab, so they are recorded in the run registry and
stopped (SIGTERM: a clean poweroff) at ``Lab.close()``; the container's init is recorded
too and killed if its nspawn ever died without powering off.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.lab.lab import Lab, LabError
from tests.lab.procs import ProcessHandle
from tests.lab.registry import proc_alive, proc_start_time
from tests.lab.waiting import wait_for

__all__ = ["AnsibleResult", "Host", "HostLab", "HostLabError", "parse_recap", "run_bounded"]

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
RELAY = Path(__file__).resolve().with_name("relay.py")
DEFAULT_SUBNET = "10.77.0.0/24"
CONTROLLER = "ctl"
SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
    "-o", "BatchMode=yes",
)  # fmt: skip
RECAP_RE = re.compile(r"^(?P<host>\S+)\s*:\s*(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)


SNAPSHOT_SKIP = {
    ".git", ".venv", ".lab", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    ".hypothesis", "output", "build", "dist", "results",
}  # fmt: skip


def _snapshot_ignore(directory: str, names: list[str]) -> set[str]:
    """What the collection snapshot leaves out: caches, VCS, venvs, build output, tests."""
    skip = {n for n in names if n in SNAPSHOT_SKIP or n.endswith((".pyc", ".egg-info"))}
    if Path(directory) == REPO_ROOT:
        skip |= {n for n in names if n in {"tests", "bench"}}
    return skip


class HostLabError(LabError):
    """A host did not boot, answer, or run a command; the message has what was seen."""


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of ansible-playbook output: ``{host: {"ok": 3, "changed": 0, ...}}``."""
    _, sep, tail = output.rpartition("PLAY RECAP")
    if not sep:
        return {}
    recap: dict[str, dict[str, int]] = {}
    for m in RECAP_RE.finditer(tail):
        counts = dict(kv.split("=") for kv in m.group("counts").split())
        recap[m.group("host")] = {k: int(v) for k, v in counts.items()}
    return recap


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    input: str = "",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in its own session; on timeout kill the whole group and say so."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=full_env,
        cwd=cwd or REPO_ROOT,
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise HostLabError(
            f"`{shlex.join(argv)}` did not finish within {timeout}s; output so far:\n"
            f"{out[-3000:]}\n{err[-2000:]}"
        ) from None
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


@dataclass(frozen=True)
class AnsibleResult:
    """One ansible/ansible-playbook run: exit code, output, PLAY RECAP, wall time."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        return parse_recap(self.stdout)

    def total(self, what: str) -> int:
        """Sum of one recap column over every host (``changed``, ``failed`` ...)."""
        return sum(r.get(what, 0) for r in self.recap.values())

    def describe(self, tail: int = 80) -> str:
        """Command, exit code and the end of the output, for assertion messages."""
        out = "\n".join(self.stdout.splitlines()[-tail:])
        err = "\n".join(self.stderr.splitlines()[-20:])
        return (
            f"$ {shlex.join(self.argv)}\nexit {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout (tail)\n{out}\n--- stderr (tail)\n{err}"
        )


@dataclass
class Host:
    """A booted nspawn host: name, lab address, and the nspawn process running it."""

    name: str
    address: str
    prefixlen: int
    process: ProcessHandle
    lab: HostLab = field(repr=False)
    init_pid: int | None = None

    def ssh(
        self, command: str, *, check: bool = True, timeout: float = 30.0, input: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the host as root over SSH (from the controller)."""
        return self.lab.ssh(self, command, check=check, timeout=timeout, input=input)

    def alive(self) -> bool:
        return self.process.alive()

    def addresses(self, ifname: str = "host0") -> list[str]:
        """``ADDR/PLEN`` on the host's interface, read over SSH."""
        res = self.ssh(f"ip -o addr show dev {shlex.quote(ifname)}")
        return [line.split()[3] for line in res.stdout.splitlines() if len(line.split()) > 3]

    def has_address(self, addr: str, ifname: str = "host0") -> bool:
        want = ipaddress.ip_interface(addr).ip
        return any(ipaddress.ip_interface(a).ip == want for a in self.addresses(ifname))


@dataclass
class HostLab:
    """Boot hosts, reach them over SSH, run Ansible against them; torn down with ``lab``."""

    lab: Lab
    rootfs: Path
    subnet: str = DEFAULT_SUBNET
    hosts: dict[str, Host] = field(default_factory=dict)
    _next_host: int = field(default=11, init=False)
    _ready: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.network = ipaddress.ip_network(self.subnet)
        if not self.network.is_private or not str(self.network).startswith("10."):
            raise ValueError(f"subnet {self.subnet}: the host lab uses 10.x networks only")
        self.dir = self.lab.shortdir / "hosts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / "keys" / "id_ed25519"
        self.controller_address = str(self.network.network_address + 1)

    # ------------------------------------------------------------------ setup

    def _setup(self) -> None:
        """The switch, the controller namespace and this run's SSH key (once)."""
        if self._ready:
            return
        self.sw = self.lab.add_switch()
        self.lab.add_namespace(CONTROLLER)
        self.lab.connect(
            CONTROLLER, "eth0", addrs=[f"{self.controller_address}/{self.network.prefixlen}"]
        )
        self.key.parent.mkdir(parents=True, exist_ok=True)
        self.lab._cmd(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vigil-host-lab",
             "-f", str(self.key)]
        )  # fmt: skip
        authdir = self.dir / "authorized"
        authdir.mkdir(mode=0o755, exist_ok=True)
        auth = authdir / "authorized_keys"
        auth.write_text(self.key.with_suffix(".pub").read_text())
        auth.chmod(0o644)
        self._ready = True

    def _write_hosts_file(self, extra: Mapping[str, str]) -> None:
        """One /etc/hosts for every host, rewritten in place (same inode), so hosts that
        booted earlier see the names of later ones through their read-only bind mount."""
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines.append(f"{self.controller_address} {CONTROLLER}")
        names = {h.name: h.address for h in self.hosts.values()} | dict(extra)
        lines += [f"{addr} {name}" for name, addr in names.items()]
        path = self.dir / "etc-hosts"
        with open(path, "r+" if path.exists() else "w") as fh:
            fh.truncate(0)
            fh.write("\n".join(lines) + "\n")

    def _host_files(self, name: str, address: str) -> Path:
        """Per-host networkd config and hostname, bind-mounted read-only at boot."""
        hdir = self.dir / name
        (hdir / "network").mkdir(parents=True, exist_ok=True)
        plen = self.network.prefixlen
        (hdir / "network" / "10-host0.network").write_text(
            "[Match]\nName=host0\n\n[Network]\n"
            f"Address={address}/{plen}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
            "ConfigureWithoutCarrier=yes\n"
        )
        (hdir / "hostname").write_text(f"{name}\n")
        return hdir

    # ------------------------------------------------------------------ boot

    def _plan(self, names: Sequence[str]) -> dict[str, str]:
        """Each new host's lab address (names checked), written to the hosts file."""
        planned: dict[str, str] = {}
        for name in names:
            if name in self.hosts or name in planned or name == CONTROLLER:
                raise HostLabError(f"host {name!r} is already booted (or named twice)")
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,10}", name):
                raise ValueError(f"host name {name!r}: use 1-11 lowercase letters/digits/-")
            planned[name] = str(self.network.network_address + self._next_host)
            self._next_host += 1
        self._write_hosts_file(planned)
        return planned

    def boot(self, names: Sequence[str], *, timeout: float = 60.0) -> list[Host]:
        """Boot hosts (in parallel) and return once each answers SSH with systemd running."""
        self._setup()
        started: list[Host] = []
        planned = self._plan(names)
        for name, address in planned.items():
            hdir = self._host_files(name, address)
            argv = [
                *self._own_cgroup(name),
                "nsenter", f"--net=/run/netns/{self.sw.ns}",
                "systemd-nspawn", "--boot", "--register=no", "--keep-unit",
                "--volatile=overlay", "--network-bridge=br0", "--console=passive",
                "--resolv-conf=off", "--timezone=off", "--link-journal=no",
                f"--machine={name}", "-D", str(self.rootfs),
                f"--bind-ro={hdir}/network:/etc/systemd/network",
                f"--bind-ro={self.dir}/etc-hosts:/etc/hosts",
                f"--bind-ro={hdir}/hostname:/etc/hostname",
                f"--bind-ro={self.dir}/authorized:/etc/vigil-lab",
            ]  # fmt: skip
            proc = self.lab.spawn(None, argv, name=f"nspawn-{name}")
            host = Host(name, address, self.network.prefixlen, proc, self)
            self.hosts[name] = host
            started.append(host)
        for host in started:
            self._wait_ready(host, timeout)
        return started

    def _own_cgroup(self, name: str) -> list[str]:
        """A wrapper that moves the container's nspawn into a cgroup of its own, in each
        hierarchy systemd keeps its units in (the named v1 ``systemd`` one and the unified
        one), before it execs.

        With ``--keep-unit`` nspawn puts the container in ``payload`` under its own cgroup.
        Started from one cgroup, every host of a lab had the same ``payload``, so their
        systemds created and removed the same unit cgroups: one host's
        ``systemd-tmpfiles-setup.service`` once failed with "Failed to attach to cgroup
        /system.slice/systemd-tmpfiles-setup.service: No such file or directory" when its
        twin removed that directory first. The directories go when the lab closes.
        """
        dirs: list[Path] = []
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hier, controllers, path = line.split(":", 2)
            if controllers == "name=systemd":
                root = Path("/sys/fs/cgroup/systemd")
            elif hier == "0" and not controllers:
                unified = Path("/sys/fs/cgroup/unified")
                root = unified if (unified / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
            else:
                continue
            base = root / path.lstrip("/")
            if not (base / "cgroup.procs").exists():
                continue
            cg = base / f"vigil-lab-{self.sw.ns}-{name}"
            cg.mkdir(exist_ok=True)
            dirs.append(cg)
        if not dirs:
            return []
        self.lab.add_cleanup(lambda: _remove_cgroups(dirs), after_processes=True)
        moves = " && ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in dirs)
        return ["sh", "-c", f'{moves} && exec "$@"', "sh"]

    def _container_init(self, host: Host) -> int | None:
        """The container's pid 1 as the host sees it: nspawn's child in another pid ns."""
        own = os.readlink("/proc/self/ns/pid")
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                ppid = int(stat.rpartition(")")[2].split()[1])
                if ppid == host.process.pid and os.readlink(f"{entry.path}/ns/pid") != own:
                    return int(entry.name)
            except (OSError, ValueError, IndexError):
                continue
        return None

    def _wait_ready(self, host: Host, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def init_pid() -> int | None:
            if not host.alive():
                raise HostLabError(
                    f"systemd-nspawn for {host.name} exited ({host.process.returncode}):\n"
                    + host.process.log_text(tail=30)
                )
            return self._container_init(host)

        try:
            pid = wait_for(init_pid, timeout=10.0, interval=0.05, what=f"{host.name} init")
        except HostLabError:
            raise
        except AssertionError as exc:
            raise HostLabError(f"{exc}\n{host.process.log_text(tail=30)}") from None
        if pid is None:  # wait_for only returns truthy values
            raise HostLabError(f"{host.name}: no container init found")
        host.init_pid = pid
        # Recorded so the dead-run cleanup kills the container even if nspawn is gone:
        # killing a pid namespace's init ends everything inside it.
        self.lab.registry.record(
            "pgid", str(pid), start=proc_start_time(pid), name=f"{host.name}/init", netns=None
        )
        self.lab.add_cleanup(lambda: self._kill_init(host), after_processes=True)

        last: list[str] = []

        def answers() -> bool:
            if not host.alive():
                raise HostLabError(
                    f"{host.name} powered off while booting:\n{host.process.log_text(tail=30)}"
                )
            res = self.ssh(
                host, "systemctl is-system-running --wait >/dev/null 2>&1; "
                "systemctl is-active ssh systemd-networkd",
                check=False, timeout=max(1.0, min(20.0, deadline - time.monotonic())),
            )  # fmt: skip
            last[:] = [res.stdout.strip(), res.stderr.strip()[-300:]]
            return res.returncode == 0

        remaining = max(1.0, deadline - time.monotonic())
        try:
            wait_for(answers, timeout=remaining, interval=0.2, what=f"ssh to {host.name}")
        except HostLabError:
            raise
        except AssertionError as exc:
            raise HostLabError(
                f"{host.name} ({host.address}) did not answer SSH within {timeout}s: {exc}; "
                f"last ssh output {last}\nnspawn log:\n{host.process.log_text(tail=30)}"
            ) from None

    def _kill_init(self, host: Host) -> None:
        pid = host.init_pid
        if pid is None:
            return
        start = proc_start_time(pid)
        if start is not None and proc_alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not proc_alive(pid), timeout=5.0, what=f"{host.name} init gone")
        self.lab.registry.forget("pgid", str(pid))

    def poweroff(self, name: str, timeout: float = 10.0) -> None:
        """Clean shutdown of one host (SIGTERM to nspawn powers the container off)."""
        host = self.hosts[name]
        host.process.stop(timeout=timeout)
        self._kill_init(host)

    # ------------------------------------------------------------------ commands

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no lab host {name!r}; booted: {', '.join(self.hosts)}") from None

    def proxy_command(self) -> str:
        """ssh's ProxyCommand: a relay started inside the controller namespace."""
        ctl = self.lab.node(CONTROLLER).ns
        return f"nsenter --net=/run/netns/{ctl} {sys.executable} {RELAY} %h %p"

    def ssh_options(self) -> list[str]:
        return [*SSH_OPTIONS, "-o", f"ProxyCommand={self.proxy_command()}"]

    def ssh_argv(self, host: Host | str) -> list[str]:
        h = self.host(host) if isinstance(host, str) else host
        return ["ssh", *self.ssh_options(), "-i", str(self.key), f"root@{h.address}"]

    def ssh(
        self,
        host: Host | str,
        command: str,
        *,
        check: bool = True,
        timeout: float = 30.0,
        input: str = "",
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (a shell string) on the host over SSH from the controller."""
        argv = [*self.ssh_argv(host), command]
        res = run_bounded(argv, timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise HostLabError(
                f"`{shlex.join(argv[-2:])}` failed with exit {res.returncode}: "
                f"{(res.stderr or res.stdout).strip()[-2000:]}"
            )
        return res

    # ------------------------------------------------------------------ ansible

    def collections_dir(self) -> Path:
        """A directory with ``ansible_collections/vigil/ha``: a snapshot of the collection.

        A copy taken once per host lab, not a link to the working tree: the role installs
        the agent from the collection's ``agent/`` sources and upgrades when they change,
        so a tree edited during a run would make "a second run changes nothing" untestable.
        """
        base = self.dir / "collections"
        dest = base / "ansible_collections" / "vigil" / "ha"
        if not dest.is_dir():
            tmp = dest.with_name("ha.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(REPO_ROOT, tmp, ignore=_snapshot_ignore, symlinks=True)
            tmp.rename(dest)
        return base

    def ansible_env(self) -> dict[str, str]:
        """Environment for Ansible on the controller: our collection, no host key checks."""
        home = self.dir / "ansible-home"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        cfg = home / "ansible.cfg"  # an empty config: no ansible.cfg of the cwd applies
        if not cfg.exists():
            cfg.write_text("[defaults]\n")
        return {
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections_dir()),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_CONFIG": str(cfg),
            "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }

    def connection_vars(self) -> dict[str, str]:
        """Inventory variables that reach the lab hosts: root over SSH with this run's key."""
        return {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": shlex.join(self.ssh_options()),
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def inventory(
        self,
        groups: Mapping[str, Iterable[str]] | None = None,
        *,
        group_vars: Mapping[str, Mapping[str, Any]] | None = None,
        host_vars: Mapping[str, Mapping[str, Any]] | None = None,
        path: Path | None = None,
    ) -> Path:
        """Write a YAML inventory: every host with its SSH settings, in ``groups``.

        ``groups`` maps a group name to host names (default: one group ``lab`` with every
        host); ``group_vars``/``host_vars`` are added as given.
        """
        groups = groups or {"lab": list(self.hosts)}
        children: dict[str, Any] = {}
        for gname, members in groups.items():
            ghosts: dict[str, Any] = {}
            for name in members:
                h = self.host(name)
                hv: dict[str, Any] = {"ansible_host": h.address}
                hv.update((host_vars or {}).get(name, {}))
                ghosts[name] = hv
            group: dict[str, Any] = {"hosts": ghosts}
            if group_vars and gname in group_vars:
                group["vars"] = dict(group_vars[gname])
            children[gname] = group
        data = {"all": {"vars": self.connection_vars(), "children": children}}
        target = path or (self.lab.workdir / "inventory.yml")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(data, sort_keys=False))
        return target

    def ansible(
        self,
        program: str,
        args: Sequence[str],
        *,
        timeout: float = 600.0,
        env: Mapping[str, str] | None = None,
    ) -> AnsibleResult:
        """Run ``ansible``/``ansible-playbook`` ARGS on the controller (bounded).

        It runs in this (root) namespace like an operator's controller would: tasks
        delegated to localhost (the role's wheelhouse build) reach the outside world, and
        SSH reaches the hosts through the relay in the lab's controller namespace.
        """
        if program not in {"ansible", "ansible-playbook", "ansible-inventory", "ansible-doc"}:
            raise ValueError(f"program {program!r}: not an Ansible command line tool")
        full_env = self.ansible_env()
        full_env.update(env or {})
        argv = [str(VENV_BIN / program), *args]
        started = time.monotonic()
        res = run_bounded(argv, timeout=timeout, env=full_env)
        return AnsibleResult(argv, res.returncode, res.stdout, res.stderr,
                             time.monotonic() - started)  # fmt: skip

    def playbook(self, inventory: Path, playbook: str, *extra: str, **kw: Any) -> AnsibleResult:
        return self.ansible("ansible-playbook", ["-i", str(inventory), playbook, *extra], **kw)


def _remove_cgroups(dirs: Iterable[Path]) -> None:
    """Remove the cgroups ``_own_cgroup`` made, deepest first (the container's systemd
    left its own below them). A directory that still holds a process stays."""
    for top in dirs:
        if not top.is_dir():
            continue
        for current, _subdirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(current)
