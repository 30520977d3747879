"""tests.lab.vm refuses, before it boots anything, a checkout the guest cannot see.

The guest mounts fresh tmpfs on /tmp and /var/tmp (stage 2's fstab), which hides a
checkout there, its VM cache and the kernel modules in it: a run from such a clone used
to boot, fail to bind the modules ("cannot mount what /run/vigil-vm/fstab lists") and
reboot. These run on the host without QEMU: the refusal comes first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab import vm


@pytest.mark.parametrize(
    ("path", "hidden"),
    [
        ("/tmp", "/tmp"),
        ("/tmp/vigil-clean", "/tmp"),
        ("/var/tmp/x/y", "/var/tmp"),
        ("/tmpfoo/vigil", None),
        ("/work/main", None),
        ("/var/lib/tmp", None),
    ],
)
def test_what_the_guest_tmpfs_hides(path: str, hidden: str | None) -> None:
    assert vm.hidden_in_guest(Path(path)) == hidden


def test_a_run_from_under_tmp_is_refused_with_the_fix() -> None:
    where = Path("/tmp/vigil-clean-clone")  # (need not exist: nothing is booted)
    with pytest.raises(vm.VmError) as err:
        vm.run_in_vm(["true"], cwd=where, timeout=5)
    text = str(err.value)
    assert f"the command's directory, {where}, is under /tmp" in text
    assert "clone the repository (or set VIGIL_LAB_CACHE) outside /tmp and /var/tmp" in text
