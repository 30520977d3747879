"""Fast tests of the test and benchmark tools themselves (bench/, tests/lab/): no root, no
namespaces, no timing. Marked ``unit`` like agent/tests."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/tools" in str(item.fspath):
            item.add_marker(pytest.mark.unit)
