"""pytest fixtures for the nspawn host lab. Import them into a test module::

    from tests.hosts.fixtures import host_lab, hosts_rootfs, module_host_lab  # noqa: F401

- ``hosts_rootfs`` (session): the cached rootfs, built on first use (about a minute).
- ``host_lab`` (function): a ``HostLab`` over the test's own ``lab``; boot hosts with
  ``host_lab.boot(["h1", "h2"])``.
- ``module_host_lab`` (module): one ``HostLab`` shared by a module's tests (for suites
  that converge a pair once and then look at it from several sides); its ``Lab`` is closed
  at the end of the module whatever happens, and a failing test gets its process logs.

Tests using them are marked ``hosts`` by their module (``pytestmark``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.lab import Lab
from tests.lab.pytest_plugin import LAB_KEY, require_root

from .hostlab import HostLab
from .rootfs import RootfsError, ensure_rootfs

__all__ = ["host_lab", "hosts_rootfs", "module_host_lab", "stash_lab"]


@pytest.fixture(scope="session")
def hosts_rootfs() -> Path:
    """The rootfs every host boots (built once per recipe, cached in .lab/)."""
    require_root()
    try:
        return ensure_rootfs()
    except RootfsError as exc:
        pytest.fail(f"host lab rootfs: {exc}", pytrace=False)


@pytest.fixture
def host_lab(lab: Lab, hosts_rootfs: Path) -> HostLab:
    """A host lab in this test's ``lab`` (torn down with it)."""
    return HostLab(lab, hosts_rootfs)


@pytest.fixture(scope="module")
def module_host_lab(
    hosts_rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostLab]:
    """A host lab shared by the tests of one module."""
    require_root()
    the_lab = Lab(tmp_path_factory.mktemp("hostlab") / "lab")
    try:
        yield HostLab(the_lab, hosts_rootfs)
    finally:
        the_lab.close()


def stash_lab(request: pytest.FixtureRequest, hl: HostLab) -> None:
    """Attach a shared lab to the current test so its failure report has the logs."""
    request.node.stash[LAB_KEY] = hl.lab
