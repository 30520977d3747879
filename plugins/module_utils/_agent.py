# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every vigil.ha module shares, whatever subsystem it acts on: the connection to
the agent (every failure a clear ``VigilError`` naming the socket and the fix), the
common options, and the timeouts the agent accepts.

The calls go through ``_api.ApiClient`` (generated from the agent's own client).
Subsystem-specific plans live beside it (``_vrrp.py``).
"""

from __future__ import annotations

import typing as t
from urllib.parse import quote

from ansible_collections.vigil.ha.plugins.module_utils._api import (
    DEFAULT_SOCKET,
    ApiClient,
    ApiUnreachable,
    error_message,
)

__all__ = [
    "MAX_TIMEOUT",
    "QUERY_TIMEOUT",
    "AgentConnection",
    "VigilError",
    "check_timeout",
    "path_part",
    "vigil_argument_spec",
]


def path_part(name: str) -> str:
    """A name (instance, virtual server, session) as one URL path segment."""
    return quote(name, safe="")


# The agent refuses action timeouts above this (vigil.vrrp.control.MAX_TIMEOUT).
MAX_TIMEOUT = 300.0
# Default wait for a query, and the margin a state change waits beyond its action timeout.
QUERY_TIMEOUT = 10.0
ANSWER_MARGIN = 10.0
# With no action timeout, how long a state change waits for the agent's verified answer.
ACTION_DEFAULT_WAIT = 60.0


class VigilError(Exception):
    """A failure the module reports with fail_json: ``msg`` for people, ``data`` as keys."""

    def __init__(self, msg: str, **data: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.data = data


def vigil_argument_spec() -> dict[str, t.Any]:
    """The options of the ``vigil.ha.vigil`` doc fragment."""
    return {
        "socket": {"type": "path", "default": DEFAULT_SOCKET},
        "timeout": {"type": "float"},
    }


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
        raise VigilError(
            f"timeout: must be more than 0 and at most {MAX_TIMEOUT:g} seconds, got {timeout:g}; "
            "leave it unset to use the agent's default"
        )


class AgentConnection:
    """The agent's API for one module run: every failure becomes a clear VigilError."""

    def __init__(self, socket_path: str, timeout: float | None, action: bool = False) -> None:
        check_timeout(timeout)
        self.socket_path = socket_path
        self.action_timeout = timeout if action else None
        if action:
            wait = ACTION_DEFAULT_WAIT if timeout is None else timeout + ANSWER_MARGIN
        else:
            wait = QUERY_TIMEOUT if timeout is None else timeout
        self.client = ApiClient(socket_path, timeout=wait)

    def call(
        self, method: str, path: str, body: dict[str, t.Any] | None = None
    ) -> tuple[int, t.Any]:
        """One request; the socket failing becomes a VigilError that names the socket."""
        try:
            return self.client.request(method, path, body)
        except ApiUnreachable as exc:
            cause = exc.__cause__
            reason = exc.message
            if isinstance(cause, OSError) and cause.strerror:
                reason = cause.strerror
            elif cause is not None:
                reason = str(cause) or type(cause).__name__
            if isinstance(cause, PermissionError):
                fix = "run the task as root (become: true) or start vigild with --api-allow-uid"
            else:
                fix = (
                    "is vigild running on this host? Start it (systemctl start vigild), "
                    "or set the socket option to the path it listens on"
                )
            raise VigilError(
                f"cannot reach the vigil agent at {self.socket_path}: {reason}; {fix}",
                socket=self.socket_path,
            ) from None

    def get(self, path: str) -> t.Any:
        """GET that must answer 200; anything else is a VigilError with the agent's words."""
        status, body = self.call("GET", path)
        if status != 200:
            raise VigilError(
                f"GET {path}: {error_message(status, body)}", status=status, response=body
            )
        return body

    def status(self) -> dict[str, t.Any]:
        """The whole status (GET /v1/status): ``agent`` and one section per subsystem."""
        body = self.get("/v1/status")
        if not isinstance(body, dict):
            raise VigilError(f"GET /v1/status: unexpected answer {body!r}", response=body)
        return body

    def section(self, name: str) -> dict[str, t.Any]:
        """One subsystem's section of the status; a clear error if the agent has none."""
        body = self.status()
        if name not in body:
            have = ", ".join((body.get("agent") or {}).get("subsystems") or []) or "none"
            raise VigilError(
                f"the agent at {self.socket_path} runs no {name} subsystem (it runs: {have}); "
                "upgrade the agent to one with it",
                response=body,
            )
        return t.cast(dict, body[name])

    def act(
        self,
        path: str,
        body: dict[str, t.Any],
        *,
        send_timeout: bool = True,
        answer_within: float | None = None,
    ) -> dict[str, t.Any]:
        """POST a verified control action; a refusal or failed verification is a VigilError.

        The error carries what the agent observed so the task output shows why.
        ``send_timeout`` puts the action timeout in the body (not every action takes one);
        ``answer_within`` waits that long for the answer instead of the usual wait.
        """
        if send_timeout and self.action_timeout is not None:
            body = dict(body, timeout=self.action_timeout)
        usual = self.client.timeout
        if answer_within is not None:
            self.client.timeout = max(usual, answer_within)
        try:
            status, answer = self.call("POST", path, body)
        finally:
            self.client.timeout = usual
        if status == 200 and isinstance(answer, dict):
            return answer
        err = answer.get("error") if isinstance(answer, dict) else None
        data: dict[str, t.Any] = {"status": status}
        if isinstance(err, dict):
            message = str(err.get("message", ""))
            for key in (
                "instance",
                "action",
                "before",
                "observed",
                "elapsed_s",
                "rolled_back",
                "virtual_server",
                "real_server",
                "session",
            ):
                if key in err:
                    data[key] = err[key]
            if "results" in err:  # maintenance: one result per instance
                data["instance_results"] = err["results"]
        else:
            message = error_message(status, answer)
            data["response"] = answer
        raise VigilError(message or f"POST {path}: HTTP {status}", **data)
