"""The BFD subsystem's API routes, their OpenAPI description, and its metrics.

Routes: ``GET /v1/bfd/sessions``, ``GET /v1/bfd/sessions/{name}``, and the verified
actions ``POST /v1/bfd/sessions/{name}/shutdown`` and ``.../enable`` (see
:class:`vigil.bfd.subsystem.BfdControl`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from vigil.api.errors import BadRequest, json_error, json_response
from vigil.api.openapi_parts import action_operation
from vigil.bfd.control import MAX_WAIT, ControlError
from vigil.bfd.packet import RejectReason, State

if TYPE_CHECKING:
    from vigil.bfd.subsystem import BfdSubsystem

__all__ = ["BFD_OPENAPI_PATHS", "bfd_metrics", "bfd_routes"]

STATES = [str(s) for s in State]


async def _body(request: web.Request, allowed: dict[str, str]) -> dict[str, Any]:
    raw = await request.read() if request.can_read_body else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest("body", f"is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadRequest("body", "must be a JSON object")
    for key in body:
        if key not in allowed:
            have = ", ".join(f"{k} ({t})" for k, t in allowed.items()) or "none"
            raise BadRequest(f"body.{key}", f"unknown field; {request.path} takes: {have}")
    return body


def _timeout(body: dict[str, Any]) -> float | None:
    value = body.get("timeout")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_WAIT
    ):
        raise BadRequest("body.timeout", f"must be seconds > 0 and at most {MAX_WAIT:g}")
    return float(value)


def bfd_routes(sub: BfdSubsystem) -> list[web.RouteDef]:
    def unknown(name: str) -> web.Response:
        have = ", ".join(sub.session_names()) or "none"
        return json_error(
            404, f"unknown BFD session {name!r}; this agent has: {have}", session=name
        )

    async def list_sessions(request: web.Request) -> web.Response:
        return json_response({"sessions": sub.views()})

    async def one_session(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in sub.session_names():
            return unknown(name)
        return json_response(sub.view(name))

    def action(
        fields: dict[str, str],
        act: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body = await _body(request, fields)
            name = request.match_info["name"]
            if name not in sub.session_names():
                return unknown(name)
            try:
                return json_response(await act(name, body))
            except ControlError as exc:
                return json_error(exc.status, exc.message, **exc.data)
            except KeyError as exc:  # configured but could not start (its port is taken)
                return json_error(409, str(exc.args[0]), session=name)

        return handle

    async def shutdown(name: str, body: dict[str, Any]) -> dict[str, Any]:
        result = await sub.control.shutdown_session(name, _timeout(body))
        return {"action": "shutdown", "ok": True, **result}

    async def enable(name: str, body: dict[str, Any]) -> dict[str, Any]:
        wait_up = body.get("wait_up", True)
        if not isinstance(wait_up, bool):
            raise BadRequest("body.wait_up", f"must be true or false, got {wait_up!r}")
        result = await sub.control.enable_session(name, _timeout(body), wait_up)
        return {"action": "enable", "ok": True, **result}

    return [
        web.get("/v1/bfd/sessions", list_sessions),
        web.get("/v1/bfd/sessions/{name}", one_session),
        web.post("/v1/bfd/sessions/{name}/shutdown", action({"timeout": "seconds"}, shutdown)),
        web.post(
            "/v1/bfd/sessions/{name}/enable",
            action({"timeout": "seconds", "wait_up": "boolean"}, enable),
        ),
    ]


# ---------------------------------------------------------------------------- OpenAPI

_NULLABLE_NUMBER = {"type": ["number", "null"]}
_SESSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "peer", "state", "remote_state", "counters"],
    "properties": {
        "name": {"type": "string"},
        "peer": {"type": "string"},
        "local": {"type": ["string", "null"]},
        "interface": {"type": ["string", "null"]},
        "multihop": {"type": "boolean"},
        "state": {"type": "string", "enum": STATES},
        "remote_state": {"type": "string", "enum": STATES},
        "local_diag": {"type": "integer", "description": "our diagnostic code (RFC 5880 4.1)"},
        "local_diag_text": {"type": "string"},
        "remote_diag": {"type": "integer", "description": "the peer's last diagnostic"},
        "remote_diag_text": {"type": "string"},
        "local_discr": {"type": "integer"},
        "remote_discr": {"type": "integer"},
        "tx_interval": {
            **_NULLABLE_NUMBER,
            "description": "negotiated transmit interval, seconds (before jitter)",
        },
        "rx_interval": {
            **_NULLABLE_NUMBER,
            "description": "interval packets are expected at, seconds",
        },
        "detection_time": {
            **_NULLABLE_NUMBER,
            "description": "seconds without a packet before the session goes Down",
        },
        "detect_mult": {"type": "integer"},
        "remote_detect_mult": {"type": "integer"},
        "uptime": {**_NULLABLE_NUMBER, "description": "seconds Up (null unless Up)"},
        "rtt": {
            **_NULLABLE_NUMBER,
            "description": "the last Poll/Final round trip, seconds (an occasional sample)",
        },
        "source_port": {"type": "integer"},
        "counters": {
            "type": "object",
            "description": "packets_in, packets_out, up_transitions, down_transitions, "
            "polls_started, polls_completed, finals_sent, send_failures, ...",
            "additionalProperties": {"type": "integer"},
        },
        "rejects": {
            "type": "object",
            "description": "packets dropped for this session, by reason",
            "additionalProperties": {"type": "integer"},
        },
        "auth_failures": {"type": "integer"},
        "last_transition": {"type": ["object", "null"]},
        "config": {"type": "object", "description": "the session's config, secrets redacted"},
        "profile": {"type": ["string", "null"]},
        "tracker": {"type": "string", "description": "its key in the tracker registry"},
        "shutdown_by_operator": {
            "type": "boolean",
            "description": "shut down with POST .../shutdown (kept across restarts)",
        },
        "error": {"type": ["string", "null"], "description": "why the session is not running"},
    },
}
_RESULT = {
    "type": "object",
    "properties": {
        "action": {"type": "string"},
        "ok": {"type": "boolean"},
        "session": {"type": "string"},
        "message": {"type": "string"},
        "before": {"type": "object"},
        "after": {"type": "object"},
        "elapsed_s": {"type": "number"},
        "peer_acknowledged": {"type": "boolean"},
    },
}
_ERRORS = {
    "400": {"description": "a bad body field (named in the error)"},
    "404": {"description": "no such session; the message lists the known ones"},
    "409": {"description": "the session is configured but could not start"},
    "503": {"description": "the admin state could not be saved; nothing changed"},
    "504": {"description": "the effect was not observed in time (error.observed)"},
}
_NAME_PARAM = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]


def _action(op_id: str, summary: str, description: str, props: dict[str, Any]) -> dict[str, Any]:
    return action_operation(
        op_id, summary, description, props, parameters=_NAME_PARAM, result=_RESULT, errors=_ERRORS
    )


_TIMEOUT = {
    "type": ["number", "null"],
    "exclusiveMinimum": 0,
    "maximum": MAX_WAIT,
    "description": "seconds to wait; omitted or null: the default",
}

BFD_OPENAPI_PATHS: dict[str, Any] = {
    "/v1/bfd/sessions": {
        "get": {
            "summary": "Every BFD session's live state",
            "operationId": "listBfdSessions",
            "responses": {
                "200": {
                    "description": "the sessions, in config order",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "sessions": {"type": "array", "items": _SESSION_SCHEMA}
                                },
                            }
                        }
                    },
                }
            },
        }
    },
    "/v1/bfd/sessions/{name}": {
        "get": {
            "summary": "One BFD session's live state",
            "operationId": "getBfdSession",
            "parameters": _NAME_PARAM,
            "responses": {
                "200": {
                    "description": "the session",
                    "content": {"application/json": {"schema": _SESSION_SCHEMA}},
                },
                "404": {"description": "no such session; the message lists the known ones"},
            },
        }
    },
    "/v1/bfd/sessions/{name}/shutdown": _action(
        "shutdownBfdSession",
        "Shut a session down (AdminDown), verified and kept across restarts",
        "The peer is told (AdminDown, diagnostic 7) and goes Down without taking it for a "
        "failure (RFC 5882). Returns once the session is AdminDown here and, if it was "
        "Up, the peer answered Down (peer_acknowledged; waits up to timeout, default 3 s).",
        {"timeout": _TIMEOUT},
    ),
    "/v1/bfd/sessions/{name}/enable": _action(
        "enableBfdSession",
        "Enable a shut-down session, verified",
        "AdminDown -> Down, then the three-way handshake. With wait_up (default true) "
        "returns once the session is Up (timeout default 10 s; 504 with what was seen).",
        {"timeout": _TIMEOUT, "wait_up": {"type": "boolean", "default": True}},
    ),
}


# ---------------------------------------------------------------------------- metrics


def bfd_metrics(sub: BfdSubsystem) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "vigil_bfd_session_state", "1 for the session's current state", labels=["session", "state"]
    )
    up = GaugeMetricFamily("vigil_bfd_session_up", "1 if the session is Up", labels=["session"])
    detect = GaugeMetricFamily(
        "vigil_bfd_detection_time_seconds",
        "seconds without a packet before the session goes Down",
        labels=["session"],
    )
    tx = GaugeMetricFamily(
        "vigil_bfd_tx_interval_seconds", "negotiated transmit interval", labels=["session"]
    )
    rtt = GaugeMetricFamily(
        "vigil_bfd_rtt_seconds", "the last Poll/Final round trip", labels=["session"]
    )
    transitions = CounterMetricFamily(
        "vigil_bfd_transitions",
        "transitions to Up and from Up to Down or AdminDown",
        labels=["session", "direction"],
    )
    packets_in = CounterMetricFamily(
        "vigil_bfd_packets_in", "control packets accepted", labels=["session"]
    )
    packets_out = CounterMetricFamily(
        "vigil_bfd_packets_out", "control packets sent", labels=["session"]
    )
    auth = CounterMetricFamily(
        "vigil_bfd_auth_failures", "packets failing authentication", labels=["session"]
    )
    rejected = CounterMetricFamily(
        "vigil_bfd_rejected",
        "packets dropped, by reason (session '' when no session could be found)",
        labels=["session", "reason"],
    )
    for view in sub.views():
        name = view["name"]
        for s in STATES:
            state.add_metric([name, s], 1.0 if view["state"] == s else 0.0)
        up.add_metric([name], 1.0 if view["state"] == "Up" else 0.0)
        if view.get("detection_time") is not None:
            detect.add_metric([name], view["detection_time"])
        if view.get("tx_interval") is not None:
            tx.add_metric([name], view["tx_interval"])
        if view.get("rtt") is not None:
            rtt.add_metric([name], view["rtt"])
        counters = view.get("counters") or {}
        transitions.add_metric([name, "up"], counters.get("up_transitions", 0))
        transitions.add_metric([name, "down"], counters.get("down_transitions", 0))
        packets_in.add_metric([name], counters.get("packets_in", 0))
        packets_out.add_metric([name], counters.get("packets_out", 0))
        auth.add_metric([name], view.get("auth_failures", 0))
        for reason, count in (view.get("rejects") or {}).items():
            rejected.add_metric([name, reason], count)
    if sub.engine is not None:
        for reason, count in sub.engine.stats()["unmatched"].items():
            rejected.add_metric(["", RejectReason(reason).value], count)
    yield from (state, up, detect, tx, rtt, transitions, packets_in, packets_out, auth, rejected)
