"""Real IPVS in a throw-away QEMU VM: ``python -m tests.lab.vm -- <command...>``.

The host kernel has no IPVS. This module boots Debian's cloud kernel (IPVS as modules)
under QEMU TCG (the host's /dev/kvm cannot boot a stock kernel), with the host's own root
filesystem as the guest's root, runs ONE command inside (normally a pytest session) and
brings its output and exit status back::

    host                                         guest (QEMU TCG, Debian cloud kernel)
    virtiofsd -o source=/   ---- tag hostroot -> /  (read-only lower + tmpfs upper: overlay)
    virtiofsd -o source=RUN ---- tag vmrun ----> /run/vigil-vm  (read-write: params.sh,
                                                  command.sh -> output.log, exit_status)
    qemu -serial file:RUN/console.log            ttyS0: kernel and init messages

What a boot needs is built once and cached under ``.lab/vm/`` (git-ignored; ``make setup``
runs ``python -m tests.lab.vm --setup``):

- the kernel: ``apt-get download linux-image-<abi>-cloud-amd64``, ``dpkg -x`` and
  ``depmod -b`` into ``kernel-<version>/``; it is never installed into the host;
- an initramfs: busybox-static, the modules that reach virtiofs and overlayfs (in the order
  ``modprobe --show-depends`` gives) and a stage-1 ``/init`` that mounts the overlay root,
  the run share, and switches to stage 2 (``vm_guest.sh``, copied into the run share per
  boot). The cpio archive is written here; no cpio tool is needed.

Every boot gets a run directory ``/tmp/vgl<run>-vm-*`` (the virtiofsd sockets and the
share). The directory and the process groups of QEMU and both virtiofsd are recorded in the
lab's run registry as soon as they exist (as the lab records its own), so
``python -m tests.lab.cleanup`` removes what a killed run left; a run that ends in any
ordinary way (including SIGTERM, turned into KeyboardInterrupt) stops them itself. A copy
of the logs stays in ``.lab/vm/last-run/``.

Stage 2 binds the cached modules at ``/lib/modules/<version>``, loads ``ip_vs`` with every
scheduler the kernel has plus what the namespace lab needs (veth, bridge, macvlan,
nftables, tunnels), runs the command under ``timeout`` with its output in ``output.log``
(streamed to the host's stdout while it runs), writes the exit status and reboots; QEMU
runs with ``-no-reboot`` and exits. The host bounds the whole run in time and stops QEMU
and virtiofsd in any case.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import lzma
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import lifecycle
from .procs import ProcessHandle, kill_groups, spawn_in_netns
from .registry import RunRegistry, current_run
from .waiting import wait_for

__all__ = [
    "CACHE_DIR",
    "IPVS_SCHEDULERS",
    "Kernel",
    "VmError",
    "VmResult",
    "ensure_initramfs",
    "ensure_kernel",
    "main",
    "qemu_argv",
    "run_in_vm",
    "start_virtiofsd",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("VIGIL_LAB_CACHE", REPO_ROOT / ".lab")) / "vm"
KERNEL_META = "linux-image-cloud-amd64"
QEMU = "qemu-system-x86_64"
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
BUSYBOX = Path("/bin/busybox")
GUEST_SCRIPT = Path(__file__).with_name("vm_guest.sh")

#: Every IPVS scheduler Linux has had; the guest loads those its kernel ships.
IPVS_SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
    "twos",
)  # fmt: skip
#: What the namespace lab and the IPVS tests use that the host kernel has built in.
LAB_MODULES = (
    "veth", "bridge", "macvlan", "dummy", "nf_conntrack", "nf_nat", "nf_tables",
    "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct", "nft_numgen", "nft_hash",
    "ipip", "ip_gre", "fou", "ip6_tunnel", "sit",
)  # fmt: skip
#: Reach the root filesystem: virtio PCI, virtiofs, overlayfs (dependencies are added).
INITRAMFS_MODULES = ("virtio_pci", "virtiofs", "overlay")

#: ``VIGIL_VM_DEBUG=1``: every kernel message and each stage-2 step on the console
DEBUG = os.environ.get("VIGIL_VM_DEBUG") == "1"
KERNEL_VERBOSITY = "loglevel=7" if DEBUG else "quiet loglevel=3"
DEFAULT_TIMEOUT = 900.0
DEFAULT_MEMORY_MB = 1024
#: After the guest's own timeout: time to write the status and reboot.
HOST_MARGIN = 60.0
#: After the exit status appears: time for the guest to reboot before QEMU is killed.
REBOOT_GRACE = 15.0
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: exit statuses of ``python -m tests.lab.vm`` besides the command's own
EXIT_TIMED_OUT = 124
EXIT_VM_FAILED = 125

STAGE1_INIT = r"""#!/bin/busybox sh
# vigil VM, stage 1 (in the initramfs): mount the host's / read-only over virtiofs with a
# tmpfs overlay on top, mount the run share, switch to stage 2 in it.
/bin/busybox mkdir -p /proc /sys /dev /lower /rw /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() { echo "vigil-vm stage 1: $*" >/dev/console; reboot -f; sleep 5; poweroff -f; }
for m in $(cat /modules/order); do
    insmod "/modules/$m" || fail "insmod $m"
done
n=0
until mount -t virtiofs -o ro hostroot /lower 2>/dev/null; do
    n=$((n + 1)); [ "$n" -lt 50 ] || fail "cannot mount virtiofs tag hostroot"; sleep 0.1
done
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "overlay"
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "tmpfs /run"
mkdir -p /newroot/run/vigil-vm
mount -t virtiofs vmrun /newroot/run/vigil-vm || fail "cannot mount virtiofs tag vmrun"
[ -x /newroot/bin/busybox ] || fail "the host has no /bin/busybox (apt-get install busybox-static)"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /bin/busybox sh /run/vigil-vm/stage2.sh
"""


class VmError(RuntimeError):
    """The VM could not be prepared, booted or run; the message says what and where."""


# ---------------------------------------------------------------------------- the cache


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 300.0) -> str:
    try:
        res = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise VmError(f"`{argv[0]}` is not installed (make setup installs it)") from None
    except subprocess.TimeoutExpired:
        raise VmError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from None
    if res.returncode != 0:
        raise VmError(
            f"`{' '.join(argv)}` failed with exit {res.returncode}: "
            f"{(res.stderr or res.stdout).strip()[-2000:]}"
        )
    return res.stdout


@dataclass(frozen=True)
class Kernel:
    """An extracted Debian cloud kernel: its version, image and module tree."""

    version: str
    root: Path

    @property
    def image(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        for base in (self.root / "lib/modules", self.root / "usr/lib/modules"):
            if (base / self.version).is_dir():
                return base / self.version
        return self.root / "lib/modules" / self.version

    def has_module(self, name: str) -> bool:
        """Whether the tree has ``name`` as a module (``-`` and ``_`` are the same)."""
        return name.replace("-", "_") in self.module_names()

    @functools.cached_property
    def _module_names(self) -> frozenset[str]:
        names = set()
        for line in (self.modules / "modules.dep").read_text().splitlines():
            path = line.split(":", 1)[0]
            base = Path(path).name
            names.add(base.split(".ko", 1)[0].replace("-", "_"))
        return frozenset(names)

    def module_names(self) -> frozenset[str]:
        """Every module in the tree (from modules.dep), with ``_`` for ``-``."""
        return self._module_names

    def schedulers(self) -> list[str]:
        """The IPVS schedulers this kernel ships as modules."""
        have = self.module_names()
        return [s for s in IPVS_SCHEDULERS if f"ip_vs_{s}" in have]


def _complete(root: Path) -> bool:
    return (root / ".vigil-complete").is_file()


def wanted_kernel_version() -> str:
    """The cloud kernel ABI to use: ``VIGIL_VM_KERNEL``, else what the meta-package names."""
    override = os.environ.get("VIGIL_VM_KERNEL")
    if override:
        return override
    out = _run(["apt-cache", "depends", KERNEL_META], timeout=60)
    m = re.search(r"Depends:\s*linux-image-(\S+-cloud-amd64)\b", out)
    if not m:
        raise VmError(
            f"apt-cache does not know {KERNEL_META} (run `apt-get update`), or set "
            "VIGIL_VM_KERNEL to a version such as 6.1.0-57-cloud-amd64"
        )
    return m.group(1)


def cached_kernels() -> list[Kernel]:
    """Complete kernels in the cache, newest first."""
    found = []
    for root in CACHE_DIR.glob("kernel-*"):
        if root.is_dir() and _complete(root):
            found.append(Kernel(root.name.removeprefix("kernel-"), root))

    def key(k: Kernel) -> list[int]:
        return [int(x) for x in re.findall(r"\d+", k.version)]

    return sorted(found, key=key, reverse=True)


def _download_kernel(version: str) -> Kernel:
    root = CACHE_DIR / f"kernel-{version}"
    tmp = CACHE_DIR / f"kernel-{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    tmp.mkdir(parents=True)
    package = f"linux-image-{version}"
    _run(["apt-get", "-o", "APT::Sandbox::User=root", "download", package], cwd=tmp)
    debs = list(tmp.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise VmError(f"apt-get download {package} left {debs} in {tmp}")
    _run(["dpkg", "-x", str(debs[0]), str(tmp / "tree")])
    debs[0].unlink()
    tree = tmp / "tree"
    base = tree / "usr" if (tree / "usr/lib/modules" / version).is_dir() else tree
    _run(["depmod", "-b", str(base), version])
    tree.rename(root)
    shutil.rmtree(tmp, ignore_errors=True)
    kernel = Kernel(version, root)
    if not kernel.image.is_file() or not kernel.has_module("ip_vs"):
        raise VmError(f"{package} has no kernel image or no ip_vs module: {root}")
    (root / ".vigil-complete").write_text(json.dumps({"package": package, "at": time.time()}))
    return kernel


def ensure_kernel(*, refresh: bool = False) -> Kernel:
    """The cached kernel (downloaded first if there is none).

    Without ``refresh`` any complete cached kernel is used (newest first), so a boot needs
    no package index. ``refresh`` (``--setup``) asks apt for the current ABI, downloads it
    if it is not cached and drops older trees. ``VIGIL_VM_KERNEL`` pins a version.
    """
    with _lock(CACHE_DIR / "cache.lock"):
        pinned = os.environ.get("VIGIL_VM_KERNEL")
        cached = cached_kernels()
        if not refresh and not pinned and cached:
            return cached[0]
        try:
            version = wanted_kernel_version()
        except VmError as exc:
            if pinned or not cached:
                raise
            print(f"tests.lab.vm: {exc}; keeping {cached[0].version}", file=sys.stderr)
            return cached[0]
        for k in cached:
            if k.version == version:
                kernel = k
                break
        else:
            kernel = _download_kernel(version)
        if refresh and not pinned:
            for old in cached:
                if old.version != version:
                    shutil.rmtree(old.root, ignore_errors=True)
        return kernel


def _cpio_entry(
    name: str, mode: int, data: bytes = b"", *, ino: int, rdev: tuple[int, int] = (0, 0)
) -> bytes:
    """One newc (``070701``) cpio member."""
    encoded = name.encode() + b"\0"
    fields = (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
    )  # fmt: skip
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def _initramfs_modules(kernel: Kernel, modules: Sequence[str] = INITRAMFS_MODULES) -> list[Path]:
    """Module files for ``modules`` with their dependencies, in load order."""
    order: list[Path] = []
    for name in modules:
        out = _run(
            ["modprobe", "-d", str(kernel.modules.parents[2]), "-S", kernel.version,
             "--show-depends", name],
            timeout=30,
        )  # fmt: skip
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                path = Path(parts[1])
                if path not in order:
                    order.append(path)
    return order


def _initramfs_key(kernel: Kernel, init: str, modules: Sequence[str]) -> str:
    blob = json.dumps(
        {
            "kernel": kernel.version,
            "init": init,
            "modules": list(modules),
            "busybox": hashlib.sha256(BUSYBOX.read_bytes()).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_initramfs(
    kernel: Kernel,
    *,
    init: str = STAGE1_INIT,
    modules: Sequence[str] = INITRAMFS_MODULES,
    name: str = "initramfs",
) -> Path:
    """The initramfs for ``kernel`` (built when missing; one per kernel+recipe is kept).

    ``init``, ``modules`` and ``name`` give another flavour: the VM hosts
    (``tests.hosts.vmhosts``) boot systemd with a stage 1 of their own and a NIC driver.
    """
    if not BUSYBOX.is_file():
        raise VmError(f"{BUSYBOX} is missing: apt-get install busybox-static (make setup)")
    key = _initramfs_key(kernel, init, modules)
    target = CACHE_DIR / f"{name}-{kernel.version}-{key}.cpio"
    with _lock(CACHE_DIR / "cache.lock"):
        if target.is_file():
            return target
        members = [
            _cpio_entry("bin", 0o040755, ino=1),
            _cpio_entry("dev", 0o040755, ino=2),
            _cpio_entry("dev/console", 0o020600, ino=3, rdev=(5, 1)),
            _cpio_entry("modules", 0o040755, ino=4),
            _cpio_entry("bin/busybox", 0o100755, BUSYBOX.read_bytes(), ino=5),
            _cpio_entry("init", 0o100755, init.encode(), ino=6),
        ]
        names = []
        for n, path in enumerate(_initramfs_modules(kernel, modules), start=10):
            data = path.read_bytes()
            base = path.name
            if base.endswith(".xz"):
                data, base = lzma.decompress(data), base[:-3]
            elif not base.endswith(".ko"):
                raise VmError(f"cannot put compressed module {path} into the initramfs")
            names.append(base)
            members.append(_cpio_entry(f"modules/{base}", 0o100644, data, ino=n))
        members.append(_cpio_entry("modules/order", 0o100644, "\n".join(names).encode(), ino=7))
        members.append(_cpio_entry("TRAILER!!!", 0, ino=0))
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(b"".join(members))
        tmp.replace(target)
        for old in CACHE_DIR.glob(f"{name}-{kernel.version}-*.cpio"):
            if old != target:
                old.unlink()
    return target


# ---------------------------------------------------------------------------- one boot


@dataclass(frozen=True)
class VmResult:
    """What one boot produced."""

    returncode: int
    output: str
    kernel: str
    #: QEMU start until the guest was ready to run the command (host wall clock)
    boot_seconds: float | None
    #: the guest's own uptime at that moment
    guest_uptime: float | None
    #: the command alone (guest uptime at its end minus at its start)
    command_seconds: float | None
    #: the whole run, from preparing the run directory to QEMU's exit
    seconds: float
    modules_loaded: tuple[str, ...]
    modules_missing: tuple[str, ...]
    timed_out: bool
    logs: Path

    def summary(self) -> str:
        boot = f"{self.boot_seconds:.1f} s" if self.boot_seconds is not None else "n/a"
        up = f"{self.guest_uptime:.1f} s" if self.guest_uptime is not None else "n/a"
        cmd = f"{self.command_seconds:.1f} s" if self.command_seconds is not None else "n/a"
        scheds = [m.removeprefix("ip_vs_") for m in self.modules_loaded if m.startswith("ip_vs_")]
        missing = (
            f"; missing modules: {' '.join(self.modules_missing)}" if self.modules_missing else ""
        )
        status = "timed out" if self.timed_out else f"exit status {self.returncode}"
        return (
            f"vigil-vm: kernel {self.kernel}; boot {boot} (guest uptime {up}); "
            f"command {cmd}; total {self.seconds:.1f} s; {status}; "
            f"IPVS schedulers: {' '.join(scheds) or 'none'}{missing}; logs in {self.logs}"
        )


#: what the guest's Python imports from the working tree (compiled on the host first)
PRECOMPILE = ("agent/src", "tests", "bench")


def precompile(cwd: Path) -> None:
    """Byte-compile the working tree's Python on the host before a boot.

    The guest sees the host's files through the overlay and writes its own bytecode only
    to tmpfs, so without this every boot compiles vigil, the lab and the tests from
    source under TCG (15-20x slower), in the first process that imports them: a vigild
    start in the guest spent tens of seconds on it on a busy host. Best effort (a file
    that does not compile fails in the guest, with its error, as it would anyway).
    """
    dirs = [str(cwd / d) for d in PRECOMPILE if (cwd / d).is_dir()]
    if not dirs:
        return
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-x", r"/(\.lab|\.venv)/", *dirs],
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def _fstab_field(text: str) -> str:
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


def _uptime(path: Path) -> float | None:
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class _Stream:
    """Copies new bytes of a growing file to ``out`` (the guest's output, live)."""

    path: Path
    out: IO[str] | None
    offset: int = 0
    _pending: bytes = field(default=b"", repr=False)

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        if self.out is None or not data:
            return
        data = self._pending + data
        text, sep, rest = data.rpartition(b"\n")
        self._pending = rest
        if sep:
            self.out.write((text + sep).decode(errors="replace"))
            self.out.flush()

    def flush(self) -> None:
        self.pump()
        if self.out is not None and self._pending:
            self.out.write(self._pending.decode(errors="replace") + "\n")
            self.out.flush()
            self._pending = b""


def start_virtiofsd(
    spawn: Callable[[list[str]], ProcessHandle], sock: Path, source: Path
) -> ProcessHandle:
    """Start virtiofsd (``spawn(argv)`` starts and records it) sharing ``source`` on
    ``sock``; returns once it listens. ``sandbox=chroot``: the default sandbox fails here."""
    proc = spawn(
        [
            VIRTIOFSD, f"--socket-path={sock}", "-o", f"source={source}",
            "-o", "sandbox=chroot", "-o", "cache=auto", "-o", "no_posix_lock",
            "-o", "log_level=warn",
        ]
    )  # fmt: skip
    wait_for(lambda: sock.exists() or not proc.alive(), timeout=10, what=f"virtiofsd on {sock}")
    if not proc.alive():
        raise VmError(f"virtiofsd for {source} exited: {proc.log_text(tail=20)}")
    return proc


def qemu_argv(
    name: str,
    kernel: Kernel,
    initrd: Path,
    *,
    cpus: int,
    memory_mb: int,
    append: str,
    console: Path,
) -> list[str]:
    """QEMU under TCG booting ``kernel``: shared memfd memory (virtiofs needs it), no
    default devices, no reboot (a guest reboot ends QEMU), the serial console in a file.
    The caller adds its virtiofs and network devices."""
    mem = f"{memory_mb}M"
    return [
        QEMU, "-name", name,
        "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", str(cpus), "-m", mem,
        "-object", f"memory-backend-memfd,id=mem,size={mem},share=on",
        "-numa", "node,memdev=mem",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(kernel.image), "-initrd", str(initrd),
        "-append", append,
        "-serial", f"file:{console}",
    ]  # fmt: skip


class Vm:
    """One boot: prepare the run directory, start virtiofsd x2 and QEMU, wait, stop all.

    Use ``run_in_vm()``; this class exists so teardown has one place (``close()``), which
    is idempotent and runs on every way out of ``run()``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        timeout: float,
        cpus: int,
        memory_mb: int,
        registry: RunRegistry | None = None,
    ) -> None:
        if not argv:
            raise ValueError("run_in_vm: empty command")
        if timeout <= 0 or cpus < 1 or memory_mb < 256:
            raise ValueError("run_in_vm: timeout > 0, cpus >= 1, memory_mb >= 256")
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.timeout = timeout
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.registry = registry or current_run()
        self.dir: Path | None = None
        self.processes: list[ProcessHandle] = []
        self._closed = False
        self._logs_kept = False

    # -- preparation

    @staticmethod
    def _modules(kernel: Kernel) -> list[str]:
        """Modules stage 2 loads: IPVS, its schedulers, the lab's (those the kernel has)."""
        modules = ["ip_vs", *(f"ip_vs_{s}" for s in kernel.schedulers())]
        return modules + [m for m in LAB_MODULES if kernel.has_module(m)]

    def _write_inputs(self, share: Path, kernel: Kernel) -> None:
        modules = self._modules(kernel)
        params = {
            "KVER": kernel.version,
            "MODDIR": str(kernel.modules),
            "MODULES": " ".join(modules),
            "GUEST_TIMEOUT": str(max(1, math.ceil(self.timeout))),
            "DEBUG": "1" if DEBUG else "",
        }
        fstab = [
            ("devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=666"),
            ("tmpfs", "/dev/shm", "tmpfs", "mode=1777"),
            *(("tmpfs", top, "tmpfs", "mode=1777") for top in GUEST_TMPFS),
            ("cgroup2", "/sys/fs/cgroup", "cgroup2", "defaults"),
            (str(kernel.modules), f"/lib/modules/{kernel.version}", "none", "bind"),
        ]
        (share / "fstab").write_text(
            "".join(f"{_fstab_field(a)} {b} {c} {d} 0 0\n" for a, b, c, d in fstab)
        )
        (share / "params.sh").write_text(
            "".join(f"{k}={shlex.quote(v)}\n" for k, v in params.items())
        )
        env = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        env.update(self.env)
        env["VIGIL_VM"] = "1"
        lines = ["# written by tests/lab/vm.py: the one command of this boot"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        lines.append(f"cd {shlex.quote(str(self.cwd))} || exit {EXIT_VM_FAILED}")
        lines.append("exec " + " ".join(shlex.quote(a) for a in self.argv))
        (share / "command.sh").write_text("\n".join(lines) + "\n")
        shutil.copyfile(GUEST_SCRIPT, share / "stage2.sh")

    def _spawn(self, name: str, argv: list[str]) -> ProcessHandle:
        assert self.dir is not None
        handle = spawn_in_netns(
            f"vm/{name}", None, argv, self.dir / f"{name}.log", registry=self.registry
        )
        self.processes.append(handle)
        return handle

    def _start_virtiofsd(self, name: str, source: Path) -> None:
        """virtiofsd sharing ``source`` on ``<dir>/<name>.sock``; returns once it listens."""
        assert self.dir is not None
        start_virtiofsd(
            lambda argv: self._spawn(f"virtiofsd-{name}", argv), self.dir / f"{name}.sock", source
        )

    def _qemu_argv(self, kernel: Kernel, initrd: Path) -> list[str]:
        assert self.dir is not None
        return [
            *qemu_argv(
                f"vigil-vm-{self.registry.run_id}", kernel, initrd,
                cpus=self.cpus, memory_mb=self.memory_mb,
                append=f"console=ttyS0 {KERNEL_VERBOSITY} panic=-1 rdinit=/init",
                console=self.dir / "console.log",
            ),
            "-chardev", f"socket,id=root,path={self.dir / 'root.sock'}",
            "-device", "vhost-user-fs-pci,chardev=root,tag=hostroot",
            "-chardev", f"socket,id=share,path={self.dir / 'share.sock'}",
            "-device", "vhost-user-fs-pci,chardev=share,tag=vmrun",
        ]  # fmt: skip

    # -- the run

    def run(self, stream: IO[str] | None) -> VmResult:
        started = time.monotonic()
        kernel = ensure_kernel()
        initrd = ensure_initramfs(kernel)
        precompile(self.cwd)
        for tool in (QEMU, VIRTIOFSD):
            if shutil.which(tool) is None:
                raise VmError(f"{tool} is missing: apt-get install qemu-system-x86 (make setup)")
        self.registry.create()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.registry.prefix}-vm-", dir="/tmp"))
        self.registry.record("dir", str(self.dir))
        share = self.dir / "share"
        share.mkdir(mode=0o755)
        self._write_inputs(share, kernel)
        for name, source in (("root", Path("/")), ("share", share)):
            self._start_virtiofsd(name, source)
        boot_start = time.monotonic()
        qemu = self._spawn("qemu", self._qemu_argv(kernel, initrd))
        out = _Stream(share / "output.log", stream)
        boot_seconds: float | None = None
        status_seen: float | None = None
        timed_out = False
        deadline = boot_start + self.timeout + HOST_MARGIN
        tick = 0.1
        for _ in range(int((self.timeout + HOST_MARGIN) / tick) + 100):
            out.pump()
            now = time.monotonic()
            if boot_seconds is None and (share / "ready").exists():
                boot_seconds = now - boot_start
            if qemu.returncode is not None:
                break
            if status_seen is None and (share / "exit_status").exists():
                status_seen = now
            if status_seen is not None and now - status_seen > REBOOT_GRACE:
                break  # the guest did not reboot: QEMU is stopped below
            if now >= deadline:
                timed_out = True
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                qemu.popen.wait(timeout=min(tick, max(deadline - now, 0.001)))
        else:
            timed_out = True
        errors = self._stop_processes()
        out.flush()
        if errors:
            raise VmError(f"cannot stop the VM's processes: {errors[0]}")
        return self._result(kernel, share, boot_seconds, timed_out, time.monotonic() - started)

    def _result(
        self, kernel: Kernel, share: Path, boot: float | None, timed_out: bool, total: float
    ) -> VmResult:
        logs = self._keep_logs()
        try:
            status_text: str | None = (share / "exit_status").read_text().strip()
        except FileNotFoundError:
            status_text = None
        loaded: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            for line in (share / "modules.txt").read_text().splitlines():  # /proc/modules
                loaded.add(line.split(" ", 1)[0])
        wanted = self._modules(kernel)
        missing = [m for m in wanted if m not in loaded]
        ready, done = _uptime(share / "ready"), _uptime(share / "done")
        command = done - ready if ready is not None and done is not None else None
        output = (
            (share / "output.log").read_text(errors="replace")
            if (share / "output.log").exists()
            else ""
        )
        if status_text is None or not status_text.isdigit():
            console = _tail(logs / "console.log", 40)
            qemu = _tail(logs / "qemu.log", 20)
            what = (
                f"did not finish within {self.timeout + HOST_MARGIN:.0f}s"
                if timed_out
                else "ended without an exit status"
            )
            ready_text = f"ready after {boot:.1f} s" if boot is not None else "never ready"
            raise VmError(
                f"the VM {what} ({ready_text}); logs in {logs}\n"
                f"--- console.log (tail)\n{console}\n--- qemu.log (tail)\n{qemu}"
            )
        code = int(status_text)
        # busybox timeout sends SIGTERM: 143, or 137/124 from a command that maps it.
        guest_timeout = (
            code in (124, 137, 143) and command is not None and command >= self.timeout - 1
        )
        return VmResult(
            returncode=code,
            output=output,
            kernel=kernel.version,
            boot_seconds=boot,
            guest_uptime=ready,
            command_seconds=command,
            seconds=total,
            modules_loaded=tuple(m for m in wanted if m in loaded),
            modules_missing=tuple(missing),
            timed_out=timed_out or guest_timeout,
            logs=logs,
        )

    def _keep_logs(self) -> Path:
        """Copy this boot's logs to ``.lab/vm/last-run/`` (the run directory goes away)."""
        self._logs_kept = True
        dest = CACHE_DIR / "last-run"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        if self.dir is None:
            return dest
        for src in [*self.dir.glob("*.log"), *(self.dir / "share").glob("*")]:
            if src.is_file() and not src.name.endswith(".sock"):
                with contextlib.suppress(OSError):
                    shutil.copyfile(src, dest / src.name)
        return dest

    def _stop_processes(self) -> list[Exception]:
        """QEMU first (virtiofsd exits by itself when its vhost-user peer goes away), then
        whatever is left: SIGTERM, SIGKILL after 5 s, verified in /proc."""
        errors: list[Exception] = []
        qemu = [p for p in self.processes if p.name == "vm/qemu"]
        for group in (qemu, self.processes):
            try:
                kill_groups(group, timeout=5.0)
            except Exception as exc:
                errors.append(exc)
        return errors

    def close(self) -> None:
        """Stop QEMU and virtiofsd, keep the logs, remove the run directory; idempotent."""
        if self._closed:
            return
        self._closed = True
        errors = self._stop_processes()
        if self.dir is not None:
            if not self._logs_kept:
                self._keep_logs()
            shutil.rmtree(self.dir, ignore_errors=True)
            if not self.dir.exists():
                self.registry.forget("dir", str(self.dir))
        if errors:
            raise VmError(f"VM teardown: {errors[0]}") from errors[0]


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(none)"


#: what the guest mounts as fresh tmpfs (stage 2's fstab): the host's files there are hidden
GUEST_TMPFS = ("/tmp", "/var/tmp")


def hidden_in_guest(path: Path) -> str | None:
    """The guest tmpfs that hides ``path`` (a resolved path), or None if the guest sees it."""
    for top in GUEST_TMPFS:
        if path == Path(top) or Path(top) in path.parents:
            return top
    return None


def run_in_vm(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    cpus: int = 1,
    memory_mb: int = DEFAULT_MEMORY_MB,
    stream: IO[str] | None = None,
) -> VmResult:
    """Boot the VM, run ``argv`` in ``cwd`` (default: this one) as root, return the result.

    The guest's environment is PATH, HOME, LANG, TERM, ``VIGIL_VM=1`` and ``env``. Its
    output is copied to ``stream`` while it runs. Raises VmError when the VM fails before
    the command's exit status is known; the command's own failure is ``returncode``.
    """
    where = Path(cwd or os.getcwd()).resolve()
    for what, path in (("the command's directory", where), ("the repository", REPO_ROOT),
                       ("the VM cache (VIGIL_LAB_CACHE)", CACHE_DIR)):  # fmt: skip
        hidden = hidden_in_guest(path)
        if hidden is not None:
            raise VmError(
                f"{what}, {path}, is under {hidden}, which the guest mounts afresh (a tmpfs) "
                f"and so cannot see; clone the repository (or set VIGIL_LAB_CACHE) outside "
                f"{' and '.join(GUEST_TMPFS)}"
            )
    lifecycle.install_signal_handlers()
    vm = Vm(
        argv,
        cwd=where,
        env=env or {},
        timeout=timeout,
        cpus=cpus,
        memory_mb=memory_mb,
    )
    try:
        return vm.run(stream)
    finally:
        vm.close()
        vm.registry.remove_if_empty()


# ---------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab.vm",
        description="Run one command (or `pytest ARGS`) in a throw-away QEMU VM with IPVS.",
        epilog="examples: python -m tests.lab.vm -- ipvsadm -Ln; "
        "python -m tests.lab.vm pytest -q -m vm tests/vm",
    )
    parser.add_argument(
        "--setup", action="store_true", help="fetch the kernel, build the initramfs, exit"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for the command"
    )
    parser.add_argument(
        "--cpus", type=int, default=1, help="guest vCPUs (TCG: each uses a host core)"
    )
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, help="guest MiB")
    parser.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="guest environment"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="do not stream the output")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS | pytest ARGS")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("tests.lab.vm: must run as root (QEMU, virtiofsd)", file=sys.stderr)
        return 2
    try:
        if args.setup:
            kernel = ensure_kernel(refresh=True)
            initrd = ensure_initramfs(kernel)
            print(f"kernel {kernel.version} in {kernel.root}; initramfs {initrd}")
            print(f"IPVS schedulers: {' '.join(kernel.schedulers())}")
            return 0
        command = list(args.command)
        if command[:1] == ["--"]:
            command = command[1:]
        if not command:
            parser.error("no command: `-- CMD ARGS` or `pytest ARGS`")
        if command[0] == "pytest":
            command = [sys.executable, "-m", "pytest", *command[1:]]
        env = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                parser.error(f"--env {item!r}: use K=V")
            env[key] = value
        if "PYTHONPATH" in os.environ and "PYTHONPATH" not in env:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        result = run_in_vm(
            command,
            env=env,
            timeout=args.timeout,
            cpus=args.cpus,
            memory_mb=args.memory,
            stream=None if args.quiet else sys.stdout,
        )
    except VmError as exc:
        print(f"tests.lab.vm: {exc}", file=sys.stderr)
        return EXIT_VM_FAILED
    except KeyboardInterrupt as exc:
        print(f"tests.lab.vm: interrupted ({exc}); the VM is stopped", file=sys.stderr)
        return 130
    print(result.summary(), file=sys.stderr)
    return EXIT_TIMED_OUT if result.timed_out else result.returncode


if __name__ == "__main__":
    sys.exit(main())
