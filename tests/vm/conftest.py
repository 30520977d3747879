"""VM tests: IPVS on a real kernel, inside the QEMU VM that ``tests.lab.vm`` boots.

Run them with ``python -m tests.lab.vm pytest -q -m vm tests/vm`` (``make test-vm``): one
boot, one pytest session inside. Every test here is marked ``vm``. Outside the VM each one
**fails** (never skips) with that command in the message, so a run that forgot the VM is
never counted as passed. The namespace lab (``lab`` fixture, leak checks) is the same as in
tests/integration.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.ipvs import IpvsLab, build_ipvs_lab
from tests.lab.lab import Lab
from tests.lab.pytest_plugin import (
    lab,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_sessionstart,
    require_root,
)

__all__ = [
    "ipvs_lab",
    "lab",
    "pytest_collection_modifyitems",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
    "pytest_sessionstart",
]

VM_DIR = Path(__file__).resolve().parent
#: how long a vigild may take to answer ready in the VM: 40-60 s for two at once on a
#: quiet host, several minutes when other VMs and suites share the two cores
AGENT_START = 600.0
NOT_IN_VM = (
    "tests/vm run only inside the IPVS VM: "
    "`python -m tests.lab.vm pytest -q -m vm tests/vm` (make test-vm)"
)


def in_vm() -> bool:
    """This process runs in the VM: tests.lab.vm set VIGIL_VM=1 and the kernel has IPVS."""
    return os.environ.get("VIGIL_VM") == "1" and Path("/proc/net/ip_vs").exists()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if VM_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.vm)


@pytest.fixture(autouse=True)
def _only_in_the_vm() -> None:
    """Outside the VM every test here fails with how to run it; nothing is skipped."""
    if not in_vm():
        pytest.fail(NOT_IN_VM, pytrace=False)
    require_root()


@pytest.fixture(scope="session")
def ipvs_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpvsLab]:
    """One director, two real servers (busybox httpd) and a client (tests/lab/ipvs.py),
    built once for the modules that need a single director (test_ipvs_keepalived.py, then
    test_ipvs_kernel.py): building it costs ~20 s in the VM. Each test leaves the
    director's IPVS table, sync daemons and addresses as it found them."""
    the_lab = Lab(tmp_path_factory.mktemp("ipvs") / "lab")
    try:
        yield build_ipvs_lab(the_lab)
    finally:
        the_lab.close()
