"""pytest integration of the lab: the ``lab`` fixture, failure logs, leak checks.

tests/integration/conftest.py imports these hooks and fixtures; a child pytest (the leak
tests) loads the module with ``-p tests.lab.pytest_plugin``.

- Session start: leftovers of *dead* runs are removed (live runs are left alone).
- ``lab``: one Lab per test in the test's tmp dir, closed in a finalizer that runs on
  failure and on Ctrl-C; a test that needs root fails (never skips) without it.
- A failing test's report gets the tail of every lab process log.
- Session finish: if this run left any namespace, process group or directory behind, the
  session fails with the list (and the leftovers are then removed).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import lifecycle, registry
from .cleanup import cleanup_dead_runs, cleanup_run
from .lab import Lab, delete_netns, netns_exists
from .procs import group_members

__all__ = [
    "lab",
    "pytest_collection_modifyitems",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "require_root",
]

ROOT_MESSAGE = (
    "vigil integration tests need root (network namespaces, raw sockets); "
    "run them as root, e.g. `sudo make test-integration`"
)
INTEGRATION_DIR = Path(__file__).resolve().parents[1] / "integration"
LAB_KEY = pytest.StashKey[Lab]()


def require_root() -> None:
    """Fail (not skip) a test that needs root when it runs without."""
    if os.geteuid() != 0:
        pytest.fail(ROOT_MESSAGE, pytrace=False)


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        return
    problems = cleanup_dead_runs(verbose=False)
    for p in problems:
        print(f"vigil lab: cleanup of an earlier run: {p}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """A fresh lab for this test; everything in it is removed afterwards, whatever happens."""
    require_root()
    the_lab = Lab(tmp_path / "lab")
    request.node.stash[LAB_KEY] = the_lab
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    the_lab = item.stash.get(LAB_KEY, None)
    if the_lab is not None and report.failed:
        for name, text in the_lab.logs(tail=60).items():
            report.sections.append((f"lab log {name} ({report.when})", text or "(empty)"))
    return report


def leftovers(run: registry.RunRegistry) -> list[str]:
    """What this run still has in the kernel or on disk (recorded or named as ours)."""
    found: list[str] = []
    for entry in run.resources():
        kind, key = entry["kind"], str(entry["key"])
        if (
            (kind == "netns" and netns_exists(key))
            or (kind == "pgid" and group_members(int(key)))
            or (kind == "dir" and Path(key).exists())
            or (kind == "mount" and os.path.ismount(key))
        ):
            found.append(f"{kind} {key}")
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        for ns in sorted(os.listdir(netns_dir)):
            if ns.startswith(f"{run.prefix}-") and f"netns {ns}" not in found:
                found.append(f"netns {ns} (not in the registry)")
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # trylast: after pytest's own sessionfinish has torn down the fixtures still set up
    # (after Ctrl-C that happens only there), so only real leaks remain.
    run = registry.current_run_if_started()
    if run is None:
        return
    unclosed = [f"lab {lb.lab_id} was not closed by its test" for lb in lifecycle.open_labs()]
    errors = lifecycle.close_all()
    left = unclosed + leftovers(run)
    if not left and not errors:
        run.remove_if_empty()
        return
    reporter: Any = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"vigil lab run {run.run_id} left resources behind:", *left, *errors]
    if reporter is not None:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    info = registry.RunInfo(run.run_id, run.dir, None, None)
    cleanup_run(info, verbose=False)
    for line in left:  # namespaces named as ours but never recorded
        if line.startswith("netns ") and "not in the registry" in line:
            delete_netns(line.split()[1])
