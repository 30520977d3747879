"""One source for the stdlib API client: the collection's copy is generated from the agent's.

``plugins/module_utils/_api.py`` must be the license header followed by exactly
``agent/src/vigil/client.py``; ``make sync-client`` writes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
HEADER = (
    "# Copyright (c) vigil developers\n"
    "# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)\n"
    "# SPDX-License-Identifier: GPL-3.0-or-later\n"
    "\n"
)


def test_the_collections_client_is_the_agents_byte_for_byte() -> None:
    source = (REPO / "agent" / "src" / "vigil" / "client.py").read_text()
    copy = (REPO / "plugins" / "module_utils" / "_api.py").read_text()
    assert copy == HEADER + source, (
        "plugins/module_utils/_api.py differs from agent/src/vigil/client.py; "
        "edit the agent's and run: make sync-client"
    )


def test_the_client_runs_on_the_managed_hosts_python() -> None:
    """Python 3.8 on the hosts: no 3.10+ syntax that is evaluated at run time."""
    source = (REPO / "agent" / "src" / "vigil" / "client.py").read_text()
    assert "from __future__ import annotations" in source
    for newer in ("removeprefix(", "match ", "int | float", "ExceptionGroup"):
        assert newer not in source, f"{newer!r} does not run on Python 3.8"
