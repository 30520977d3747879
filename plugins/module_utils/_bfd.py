# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the vigil.ha BFD modules share: BFD's view of the agent (the sessions as the API
lists them), finding a session, and the plan (shutdown, enable or nothing) that check mode
reports and real runs execute.

The planning functions take the API's data and return plain data, so they are tested
without an agent; the connection is ``_agent.AgentConnection``.
"""

from __future__ import annotations

import typing as t

from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    path_part,
)

__all__ = ["bfd_sessions", "select_sessions", "session_path", "session_plan"]


def bfd_sessions(conn: AgentConnection) -> list[dict[str, t.Any]]:
    """GET /v1/bfd/sessions; an agent without the BFD subsystem is a clear error."""
    status, body = conn.call("GET", "/v1/bfd/sessions")
    if status == 404 and not (isinstance(body, dict) and "sessions" in body):
        conn.section("bfd")  # raises "runs no bfd subsystem"
    if status != 200 or not isinstance(body, dict):
        body = conn.get("/v1/bfd/sessions")  # raises with the agent's words
    return list(body.get("sessions") or [])


def select_sessions(sessions: list[dict[str, t.Any]], name: str | None) -> list[dict[str, t.Any]]:
    """The session called ``name``, or all of them when ``name`` is None."""
    if name is None:
        return list(sessions)
    for session in sessions:
        if session.get("name") == name:
            return [session]
    have = [str(s.get("name")) for s in sessions]
    raise VigilError(
        f"unknown BFD session {name!r}; this agent has: {', '.join(have) or 'none'}",
        session=name,
        sessions_available=have,
    )


def session_path(name: str, action: str) -> str:
    """``/v1/bfd/sessions/NAME/ACTION`` with the name quoted."""
    return f"/v1/bfd/sessions/{path_part(name)}/{action}"


def session_plan(session: dict[str, t.Any], state: str) -> str | None:
    """``shutdown``, ``enable`` or None: AdminDown is the only state the wish is about."""
    admin_down = session.get("state") == "AdminDown"
    if state == "disabled":
        return None if admin_down else "shutdown"
    return "enable" if admin_down else None
