"""Everything under agent/tests is a fast unit test: no root, no namespaces."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "agent/tests" in str(item.fspath):
            item.add_marker(pytest.mark.unit)
