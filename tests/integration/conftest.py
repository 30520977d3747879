"""Namespace integration tests: every test here is marked `integration` and runs as root.

The fixtures and hooks live in tests/lab/pytest_plugin.py so a child pytest (the leak
tests) can load the very same ones with ``-p tests.lab.pytest_plugin``.
"""

import pytest

from tests.lab.pytest_plugin import (
    lab,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_sessionstart,
    require_root,
)

__all__ = [
    "lab",
    "pytest_collection_modifyitems",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
    "pytest_sessionstart",
]


@pytest.fixture(autouse=True)
def _integration_needs_root() -> None:
    """Without root every integration test fails with the reason; nothing is skipped."""
    require_root()
