# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the vigil.ha VRRP modules share: the argument spec, API calls that fail clearly, and
the plans (which instances must change) that check mode reports and real runs execute.

The planning functions take the instance list as the API gives it and return plain data,
so they are tested without an agent; the calls go through ``_api.ApiClient``.
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
    "failover_plan",
    "maintenance_plan",
    "select_instances",
    "vigil_argument_spec",
]

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

    def status(self) -> tuple[dict[str, t.Any], list[dict[str, t.Any]]]:
        """The agent's own status and its VRRP instances (GET /v1/status)."""
        body = self.get("/v1/status")
        if not isinstance(body, dict):
            raise VigilError(f"GET /v1/status: unexpected answer {body!r}", response=body)
        return body.get("agent") or {}, list((body.get("vrrp") or {}).get("instances") or [])

    def instance(self, name: str) -> dict[str, t.Any]:
        """One instance's view now (GET /v1/vrrp/instances/NAME)."""
        return t.cast(dict, self.get(f"/v1/vrrp/instances/{quote(name, safe='')}"))

    def act(self, path: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        """POST a verified control action; a refusal or failed verification is a VigilError.

        The error carries what the agent observed so the task output shows why.
        """
        if self.action_timeout is not None:
            body = dict(body, timeout=self.action_timeout)
        status, answer = self.call("POST", path, body)
        if status == 200 and isinstance(answer, dict):
            return answer
        err = answer.get("error") if isinstance(answer, dict) else None
        data: dict[str, t.Any] = {"status": status}
        if isinstance(err, dict):
            message = str(err.get("message", ""))
            for key in ("instance", "action", "before", "observed", "elapsed_s", "rolled_back"):
                if key in err:
                    data[key] = err[key]
            if "results" in err:  # maintenance: one result per instance
                data["instance_results"] = err["results"]
        else:
            message = error_message(status, answer)
            data["response"] = answer
        raise VigilError(message or f"POST {path}: HTTP {status}", **data)


def select_instances(instances: list[dict[str, t.Any]], name: str | None) -> list[dict[str, t.Any]]:
    """The instance called ``name``, or all of them when ``name`` is None."""
    if name is None:
        return list(instances)
    for inst in instances:
        if inst.get("name") == name:
            return [inst]
    have = ", ".join(sorted(str(i.get("name")) for i in instances)) or "none"
    raise VigilError(
        f"unknown VRRP instance {name!r}; this agent has: {have}",
        instance=name,
        instances_available=sorted(str(i.get("name")) for i in instances),
    )


def failover_plan(instances: list[dict[str, t.Any]], want: str) -> list[dict[str, t.Any]]:
    """The steps that make this node ``want`` ("master" or "backup") for each instance.

    Each step is {instance, state, action}: ``action`` is "takeover", "handover" or None when
    the instance already is what is wanted. An instance that cannot get there (FAULT, INIT,
    maintenance) is a VigilError naming the instance and the fix, so check mode predicts
    the failure a real run would hit.
    """
    steps = []
    for inst in instances:
        name = inst.get("name")
        state = str(inst.get("state"))
        action = None
        if want == "master" and state != "MASTER":
            if state != "BACKUP":
                reason = inst.get("fault_reason") or ", ".join(
                    f"{k}: {v}" for k, v in (inst.get("faults") or {}).items()
                )
                raise VigilError(
                    f"{name}: is {state}, not BACKUP, so it cannot take over"
                    + (f" ({reason})" if reason else "")
                    + "; fix the fault (interface, trackers) first",
                    instance=name,
                    observed=inst,
                )
            if inst.get("maintenance"):
                raise VigilError(
                    f"{name}: is in maintenance, so it cannot take over; end it first with "
                    "vigil.ha.maintenance (state: disabled)",
                    instance=name,
                    observed=inst,
                )
            action = "takeover"
        elif want == "backup" and state == "MASTER":
            action = "handover"
        steps.append({"instance": name, "state": state, "action": action})
    return steps


def maintenance_plan(instances: list[dict[str, t.Any]], enabled: bool) -> list[str]:
    """Names of the instances whose maintenance flag differs from ``enabled``."""
    return [str(i.get("name")) for i in instances if bool(i.get("maintenance")) != enabled]
