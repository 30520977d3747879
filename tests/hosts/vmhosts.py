"""Full VM hosts for Ansible: the lab's rootfs booted by systemd under QEMU, own kernel.

The nspawn hosts (``tests.hosts.hostlab``) share the host's kernel, which has no IPVS. A
VM host boots Debian's cloud kernel (IPVS as modules, the one ``tests.lab.vm`` caches)
with the same Debian rootfs the nspawn hosts use (``tests.hosts.rootfs``), so a director
pair can be built by the collection and serve real traffic through the kernel's IPVS::

    switch namespace "sw": bridge br0 --- vt-lb1 (tap) --- QEMU lb1: eth0 renamed host0
                                 |    \\-- vt-lb2 (tap) --- QEMU lb2
                                 +-- ctl-eth0 -- namespace "ctl" (ssh relay, as for nspawn)
                                 +-- other namespaces the test adds (backends, a client)

- QEMU runs inside the switch namespace (``lab.spawn``), where its tap device was made, so
  the tap, like every veth, goes away with the namespace.
- One virtiofsd per VM shares the host's ``/`` (read-only in the guest). A stage-1 init of
  this module's own (in an initramfs built by ``tests.lab.vm.ensure_initramfs``) mounts the
  rootfs directory from it as the lower layer of an overlay with a tmpfs upper (the cached
  tree is never written; each VM has its own writes), binds the kernel's module tree at
  ``/lib/modules/<version>``, copies the per-host files (hostname, /etc/hosts, the run's
  authorized SSH key), names the NIC ``host0`` with the host's addresses, and
  ``switch_root``s to systemd.
- Per host: its own machine-id (``systemd.machine_id=`` and a QEMU ``-uuid``), SSH host
  keys generated at boot (the rootfs's ssh drop-in), hostname.
- The rootfs has no udev: the network is configured in stage 1 (networkd has no config for
  ``host0`` and leaves it alone), and ``serial-getty@ttyS0`` is masked on the kernel command
  line (it would wait for a device unit only udev announces).
- SSH, inventories and Ansible are ``HostLab``'s (the relay in the controller namespace).

Everything is started through the lab (run registry; stopped at ``Lab.close()`` even on
failure: QEMU, then virtiofsd; then the namespaces with the taps). A guest's serial console
is in ``<lab shortdir>/hosts/<name>/console.log`` and is quoted when a boot fails.

Under TCG (no usable KVM here) a boot to sshd takes about half a minute and everything in
the guest runs 15-20x slower than on the host: one end-to-end scenario, not a suite.
"""

from __future__ import annotations

import hashlib
import shlex
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.lab.vm import (
    Kernel,
    VmError,
    ensure_initramfs,
    ensure_kernel,
    qemu_argv,
    start_virtiofsd,
)
from tests.lab.waiting import wait_for

from .hostlab import Host, HostLab, HostLabError

__all__ = ["HOST_INIT", "VmHostLab"]

#: The initramfs modules: the virtiofs root and overlay (as tests.lab.vm) and the NIC.
HOST_INITRAMFS_MODULES = ("virtio_pci", "virtiofs", "overlay", "virtio_net")

HOST_INIT = r"""#!/bin/busybox sh
# vigil VM host, stage 1 (tests/hosts/vmhosts.py): the lab rootfs from the host's / over
# virtiofs (read-only) under a tmpfs overlay, the kernel's modules, per-host files, the
# NIC as host0 with its addresses; then systemd.
/bin/busybox mkdir -p /proc /sys /dev /host /rw /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() { echo "vigil-vmhost stage 1: $*" >/dev/console; sleep 1; poweroff -f; }
for m in $(cat /modules/order); do
    insmod "/modules/$m" || fail "insmod $m"
done
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vigil.rootfs=*) ROOTFS="${arg#*=}" ;;
        vigil.moddir=*) MODDIR="${arg#*=}" ;;
        vigil.kver=*) KVER="${arg#*=}" ;;
        vigil.hostdir=*) HOSTDIR="${arg#*=}" ;;
    esac
done
[ -n "$ROOTFS" ] && [ -n "$MODDIR" ] && [ -n "$KVER" ] && [ -n "$HOSTDIR" ] \
    || fail "the kernel command line lacks vigil.rootfs/moddir/kver/hostdir"
n=0
until mount -t virtiofs -o ro hostroot /host 2>/dev/null; do
    n=$((n + 1)); [ "$n" -lt 50 ] || fail "cannot mount virtiofs tag hostroot"; sleep 0.1
done
# (/sbin/init is an absolute link: look at its target inside the rootfs)
[ -x "/host$ROOTFS/usr/lib/systemd/systemd" ] || fail "no systemd in $ROOTFS"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o "lowerdir=/host$ROOTFS,upperdir=/rw/upper,workdir=/rw/work" \
    /newroot || fail "overlay"
mkdir -p "/newroot/lib/modules/$KVER"
mount --bind "/host$MODDIR" "/newroot/lib/modules/$KVER" || fail "modules"
H="/host$HOSTDIR"
cp "$H/hostname" /newroot/etc/hostname || fail "hostname"
cp "$H/hosts" /newroot/etc/hosts || fail "hosts"
mkdir -p /newroot/etc/vigil-lab
cp "$H/authorized_keys" /newroot/etc/vigil-lab/authorized_keys || fail "authorized_keys"
ip link set eth0 name host0 || fail "no eth0"
while read -r addr; do
    [ -z "$addr" ] || ip addr add "$addr" dev host0 || fail "address $addr"
done <"$H/addresses"
ip link set lo up
ip link set host0 up || fail "host0 up"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /sbin/init
"""

#: ``systemd.firstboot=off``: the rootfs's empty machine-id makes every boot a first boot,
#: and systemd-firstboot would wait for answers on the console (a file here) forever.
#: ``systemd.default_timeout_start_sec``: under TCG a Python daemon's start (Type=notify)
#: can take longer than systemd's default 90 s on a busy machine. Every unit's start is
#: reported on the console (quoted when a boot fails).
SSH_CONNECT_TIMEOUT = "ConnectTimeout=60"

KERNEL_ARGS = (
    "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init "
    "systemd.mask=serial-getty@ttyS0.service systemd.firstboot=off systemd.show_status=true "
    "systemd.default_timeout_start_sec=600"
)


class VmHostLab(HostLab):
    """``HostLab`` whose hosts are QEMU VMs with their own kernel (see the module doc)."""

    memory_mb: int = 1536
    cpus: int = 1

    def _kernel(self) -> tuple[Kernel, Path]:
        try:
            kernel = ensure_kernel()
            initrd = ensure_initramfs(
                kernel, init=HOST_INIT, modules=HOST_INITRAMFS_MODULES, name="initramfs-host"
            )
        except VmError as exc:
            raise HostLabError(f"VM hosts: {exc}") from None
        return kernel, initrd

    def console(self, name: str, tail: int = 40) -> str:
        path = self.dir / name / "console.log"
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no console log)"
        return "\n".join(lines[-tail:])

    def boot(  # type: ignore[override]
        self,
        names: Sequence[str],
        *,
        timeout: float = 300.0,
        extra_addresses: Mapping[str, Sequence[str]] | None = None,
    ) -> list[Host]:
        """Boot VM hosts (all at once) and return once each answers SSH with sshd active.

        ``extra_addresses``: more ``ADDR/PLEN`` per host on ``host0`` (a second subnet).
        """
        self._setup()
        kernel, initrd = self._kernel()
        sw = self.lab.node("sw")
        planned = self._plan(names)
        started: list[Host] = []
        for name, address in planned.items():
            hdir = self.dir / name
            hdir.mkdir(parents=True, exist_ok=True)
            (hdir / "hostname").write_text(f"{name}\n")
            (hdir / "hosts").write_text((self.dir / "etc-hosts").read_text())
            (hdir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
            extra = (extra_addresses or {}).get(name, ())
            if isinstance(extra, str):
                raise TypeError(f"extra_addresses[{name!r}]: a list of ADDR/PLEN, not a string")
            addrs = [f"{address}/{self.network.prefixlen}", *extra]
            (hdir / "addresses").write_text("".join(f"{a}\n" for a in addrs))
            tap = f"vt-{name}"
            self.lab.ip(sw, "tuntap", "add", "dev", tap, "mode", "tap")
            self.lab.ip(sw, "link", "set", tap, "master", "br0", "up")
            sock = self.lab.shortdir / f"{name}.vfs"
            start_virtiofsd(
                lambda argv, n=name: self.lab.spawn(None, argv, name=f"virtiofsd-{n}"),
                sock,
                Path("/"),
            )
            digest = hashlib.sha256(f"{self.lab.registry.run_id}/{name}".encode()).hexdigest()
            mac = "52:54:00:" + ":".join(digest[i : i + 2] for i in (0, 2, 4))
            machine_id = uuid.uuid4().hex
            append = " ".join(
                [
                    KERNEL_ARGS,
                    f"systemd.machine_id={machine_id}",
                    f"vigil.rootfs={self.rootfs.resolve()}",
                    f"vigil.moddir={kernel.modules.resolve()}",
                    f"vigil.kver={kernel.version}",
                    f"vigil.hostdir={hdir.resolve()}",
                ]
            )
            argv = [
                *qemu_argv(
                    f"vigil-vmhost-{name}", kernel, initrd, cpus=self.cpus,
                    memory_mb=self.memory_mb, append=append, console=hdir / "console.log",
                ),
                "-uuid", str(uuid.UUID(machine_id)),
                "-chardev", f"socket,id=root,path={sock}",
                "-device", "vhost-user-fs-pci,chardev=root,tag=hostroot",
                "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
            ]  # fmt: skip
            proc = self.lab.spawn(sw, argv, name=f"qemu-{name}")
            host = Host(name, address, self.network.prefixlen, proc, self)
            self.hosts[name] = host
            started.append(host)
        deadline = time.monotonic() + timeout
        for host in started:
            self._wait_vm(host, max(1.0, deadline - time.monotonic()))
        return started

    def _wait_vm(self, host: Host, timeout: float) -> None:
        last: list[str] = []

        def answers() -> str:
            # wait_for takes an exception for "not yet": a dead VM ends the wait instead.
            if not host.alive():
                return "exited"
            res = self.ssh(host, "systemctl is-active ssh", check=False, timeout=20.0)
            last[:] = [res.stdout.strip(), res.stderr.strip()[-300:]]
            return "up" if res.returncode == 0 else ""

        try:
            seen = wait_for(answers, timeout=timeout, interval=1.0, what=f"ssh to VM {host.name}")
        except AssertionError as exc:
            raise HostLabError(
                f"VM {host.name} ({host.address}) did not answer SSH within {timeout:.0f}s: "
                f"{exc}; last ssh output {last}\n--- console\n{self.console(host.name)}"
            ) from None
        if seen == "exited":
            raise HostLabError(
                f"QEMU for {host.name} exited ({host.process.returncode}) while booting:\n"
                f"{host.process.log_text(tail=20)}\n--- console\n{self.console(host.name)}"
            )

    def ssh_options(self) -> list[str]:
        """HostLab's, with a 60 s ConnectTimeout: an emulated guest on busy cores took
        more than the nspawn hosts' 5 s for sshd's banner exchange (seen after site)."""
        opts = super().ssh_options()
        return [SSH_CONNECT_TIMEOUT if o == "ConnectTimeout=5" else o for o in opts]

    def connection_vars(self) -> dict[str, str]:
        """HostLab's, with Ansible's own connection timeout raised to match."""
        return {**super().connection_vars(), "ansible_ssh_timeout": "60"}

    def poweroff(self, name: str, timeout: float = 10.0) -> None:
        """Stop one VM (QEMU ends at once; nothing of the guest outlives it)."""
        self.hosts[name].process.stop(timeout=timeout)

    def namespace_host_vars(self, node: str) -> dict[str, str]:
        """Inventory variables that make a lab namespace an Ansible host: a local
        connection whose Python runs inside the namespace (a two-line wrapper)."""
        ns = self.lab.node(node).ns
        wrapper = self.dir / f"python-{node}"
        wrapper.write_text(
            f'#!/bin/sh\nexec ip netns exec {shlex.quote(ns)} /usr/bin/python3 "$@"\n'
        )
        wrapper.chmod(0o755)
        return {"ansible_connection": "local", "ansible_python_interpreter": str(wrapper)}
