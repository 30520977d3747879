# shellcheck shell=sh
# vigil VM, stage 2: runs as PID 1 in the guest after the initramfs switched to the overlay
# root (the host's / read-only over virtiofs, a tmpfs on top). Started by stage 1 as
#   /bin/busybox sh /run/vigil-vm/stage2.sh
# with the run share (the host's run directory, read-write) mounted at /run/vigil-vm.
# It prepares the system, loads modules, runs ONE command and reboots (QEMU runs with
# -no-reboot, so a reboot ends QEMU). It must never exit: PID 1 exiting panics the kernel
# (panic=-1 also ends QEMU, but without an exit status for the host).
# Input (written by tests/lab/vm.py): params.sh, command.sh. Output: modules.txt, ready,
# output.log (the command's stdout+stderr), exit_status.

R=/run/vigil-vm
B=/bin/busybox
# Shell builtins only where possible (read, echo): under TCG each process costs ~0.2 s.
uptime() { read -r up _ </proc/uptime; echo "$up"; }
say() { echo "vigil-vm: [$(uptime)] $*" >/dev/console; }
debug() { [ -z "$DEBUG" ] || say "$@"; }
finish() {
    $B sync
    say "rebooting"
    $B reboot -f
    $B sleep 5
    $B poweroff -f
}

# shellcheck source=/dev/null
. "$R/params.sh" || { say "cannot read $R/params.sh"; finish; }

debug "stage 2"
$B mkdir -p /dev/pts /dev/shm /tmp /var/tmp "/lib/modules/$KVER"
# The cached kernel's modules, at the path modprobe (and the kernel's autoload) look at.
$B mount -a -T "$R/fstab" || { say "cannot mount what $R/fstab lists"; finish; }
debug "mounted"
$B hostname vigil-vm

# Modules: IPVS with every scheduler this kernel has, then what the namespace lab needs
# (the host has these built in). One modprobe for all; the host reads /proc/modules.
# shellcheck disable=SC2086 # one word per module
/sbin/modprobe -a -q $MODULES || say "modprobe failed for some of: $MODULES"
$B cp /proc/modules "$R/modules.txt"
debug "modules loaded"
uptime >"$R/ready"
say "ready; running the command"

# Redirected to output.log, which the host streams while the command runs.
$B timeout "$GUEST_TIMEOUT" $B sh "$R/command.sh" >"$R/output.log" 2>&1 </dev/null
status=$?
echo "$status" >"$R/exit_status.tmp"
$B mv "$R/exit_status.tmp" "$R/exit_status"
uptime >"$R/done"
say "command exited with status $status"
finish
