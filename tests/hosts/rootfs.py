"""The Debian bookworm root filesystem every lab host boots from, built once and cached.

Why a cache: debootstrap takes about a minute and needs the Debian mirror, while booting a
host from a finished tree takes about a second. The tree lives in
``<repo>/.lab/rootfs-<key>`` (git-ignored), where ``key`` is a hash of the build recipe
below: changing a package or a fix-up builds a new tree, an unchanged recipe reuses the old
one across runs. Hosts boot it with ``--volatile=overlay`` so it is never written to and
several hosts share it.

Usage: ``ensure_rootfs() -> Path`` (builds when missing, under a lock so two runs never
build at once), or ``python -m tests.hosts.rootfs [--rebuild]`` from the repo root.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CACHE_DIR", "RootfsError", "debian_mirror", "ensure_rootfs", "recipe_key"]

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("VIGIL_LAB_CACHE", REPO_ROOT / ".lab"))
SUITE = "bookworm"
PACKAGES = (
    "python3",
    "python3-venv",
    "openssh-server",
    "iproute2",
    "systemd",
    "systemd-sysv",
    "dbus",
    # A Debian host loads kernel modules with kmod (the role's IPVS preparation runs
    # modprobe; the VM hosts have their own kernel) and operators read IPVS with ipvsadm.
    "kmod",
    "ipvsadm",
)
# Units that would slow a boot down, wait for a network that never answers, or fight the
# passive console.
MASKED_UNITS = (
    "console-getty.service",
    "getty@tty1.service",
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-timesyncd.service",
)
ENABLED_UNITS = {
    # unit file (under /lib/systemd/system) -> the .wants directory that pulls it in
    "systemd-networkd.service": "multi-user.target.wants",
    "systemd-networkd.socket": "sockets.target.wants",
}
# Host keys are generated at boot (every host gets its own); `sshd -t` then checks them.
SSH_DROPIN = """\
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
# The controller's per-run key is bind-mounted read-only at /etc/vigil-lab.
SSHD_CONFIG = """\
AuthorizedKeysFile /etc/vigil-lab/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
"""
# No nameserver: the lab network reaches nothing, and a lookup must fail at once.
RESOLV_CONF = "# vigil host lab: no DNS (names are in /etc/hosts)\noptions timeout:1 attempts:1\n"
RECIPE_VERSION = 1
BUILD_TIMEOUT = 900.0


class RootfsError(RuntimeError):
    """The rootfs could not be built; the message says what failed and what to do."""


def recipe_key() -> str:
    """A short hash of everything that decides the tree's content."""
    recipe = {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "packages": PACKAGES,
        "masked": MASKED_UNITS,
        "enabled": ENABLED_UNITS,
        "ssh": SSH_DROPIN,
        "sshd": SSHD_CONFIG,
        "resolv": RESOLV_CONF,
    }
    blob = json.dumps(recipe, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _sources_uris(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) pairs from a sources.list or a deb822 .sources file."""
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if m:
            found.append((m.group(1), [m.group(2)]))
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and "uris" in fields:
            suites = fields.get("suites", "").split()
            found.extend((uri, suites) for uri in fields["uris"].split())
    return found


def debian_mirror() -> str:
    """The machine's configured Debian mirror for bookworm (``VIGIL_LAB_MIRROR`` wins)."""
    override = os.environ.get("VIGIL_LAB_MIRROR")
    if override:
        return override
    files = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        files += sorted(sources_d.iterdir())
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri, suites in _sources_uris(text):
            if SUITE in suites and "security" not in uri:
                return uri
    raise RootfsError(
        f"no Debian mirror for {SUITE} in /etc/apt/sources.list(.d); set VIGIL_LAB_MIRROR "
        "to a Debian mirror URL (for example http://deb.debian.org/debian)"
    )


def _link(target: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def _fix_up(root: Path) -> None:
    """Make the debootstrapped tree a bootable, shareable lab host (see LAB-NOTES)."""
    subprocess.run(
        ["chroot", str(root), "apt-get", "clean"], check=True, capture_output=True, timeout=120
    )
    lists = root / "var/lib/apt/lists"
    for entry in lists.glob("*"):
        if entry.is_file():
            entry.unlink()
    # An empty machine-id: systemd makes a fresh one per boot, so hosts differ.
    (root / "etc/machine-id").write_text("")
    _link("/etc/machine-id", root / "var/lib/dbus/machine-id")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = root / "etc/systemd/system/ssh.service.d/vigil-lab.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(SSH_DROPIN)
    sshd_d = root / "etc/ssh/sshd_config.d"
    sshd_d.mkdir(parents=True, exist_ok=True)
    (sshd_d / "vigil-lab.conf").write_text(SSHD_CONFIG)
    (root / "etc/vigil-lab").mkdir(exist_ok=True)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text(RESOLV_CONF)
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")
    for unit in MASKED_UNITS:
        _link("/dev/null", root / "etc/systemd/system" / unit)
    for unit, wants in ENABLED_UNITS.items():
        if not (root / "lib/systemd/system" / unit).exists():
            raise RootfsError(f"rootfs has no unit {unit}: the package list lost systemd")
        _link(f"/lib/systemd/system/{unit}", root / "etc/systemd/system" / wants / unit)
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(target: Path, log: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise RootfsError(
            "debootstrap is not installed: `apt-get install debootstrap systemd-container` "
            "(make setup does this)"
        )
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    mirror = debian_mirror()
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(tmp),
        mirror,
    ]
    started = time.monotonic()
    with open(log, "w") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        fh.flush()
        try:
            res = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RootfsError(f"debootstrap from {mirror} took over {BUILD_TIMEOUT}s") from None
    if res.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        shutil.rmtree(tmp, ignore_errors=True)
        raise RootfsError(
            f"debootstrap from {mirror} failed (exit {res.returncode}); log {log}:\n{tail}\n"
            "check the mirror is reachable or set VIGIL_LAB_MIRROR"
        )
    try:
        _fix_up(tmp)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RootfsError(f"rootfs fix-up failed: {exc}") from exc
    (tmp / "etc/vigil-lab-rootfs.json").write_text(
        json.dumps({"key": recipe_key(), "built": time.time(), "mirror": mirror,
                    "seconds": round(time.monotonic() - started, 1)})
    )  # fmt: skip
    tmp.rename(target)


def ensure_rootfs(*, rebuild: bool = False) -> Path:
    """The cached rootfs for the current recipe, built first if missing.

    Older trees (other keys) are removed after a successful build to keep the cache at one
    tree (~250 MB).
    """
    target = CACHE_DIR / f"rootfs-{recipe_key()}"
    with _lock(CACHE_DIR / "rootfs.lock"):
        if rebuild:
            shutil.rmtree(target, ignore_errors=True)
        if (target / "etc/vigil-lab-rootfs.json").exists():
            return target
        _build(target, CACHE_DIR / "rootfs-build.log")
        for old in CACHE_DIR.glob("rootfs-*"):
            if old.is_dir() and old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="build even when cached")
    parser.add_argument(
        "--print-key", action="store_true", help="print the recipe key (a CI cache key) and exit"
    )
    args = parser.parse_args(argv)
    if args.print_key:
        print(recipe_key())
        return 0
    started = time.monotonic()
    try:
        path = ensure_rootfs(rebuild=args.rebuild)
    except RootfsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
