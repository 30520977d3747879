"""The VRRP subsystem's API routes, their OpenAPI description, and its metrics."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from vigil.api.errors import BadRequest, json_error, json_response
from vigil.api.openapi_parts import action_operation
from vigil.vrrp.control import MAX_TIMEOUT, ControlError
from vigil.vrrp.machine import VrrpState
from vigil.vrrp.policy import MAX_DURATION

if TYPE_CHECKING:
    from vigil.vrrp.runtime import VrrpSubsystem

STATES = [str(s) for s in VrrpState]


def vrrp_routes(sub: VrrpSubsystem) -> list[web.RouteDef]:
    async def list_instances(request: web.Request) -> web.Response:
        return json_response({"instances": [i.to_dict() for i in sub.instances.values()]})

    async def one_instance(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        inst = sub.instance(name)
        if inst is None:
            have = ", ".join(sorted(sub.instances)) or "none"
            return json_error(
                404, f"unknown VRRP instance {name!r}; this agent has: {have}", instance=name
            )
        return json_response(inst.to_dict())

    async def list_groups(request: web.Request) -> web.Response:
        return json_response({"groups": sub.sync_groups.status()})

    return [
        web.get("/v1/vrrp/instances", list_instances),
        web.get("/v1/vrrp/instances/{name}", one_instance),
        web.get("/v1/vrrp/groups", list_groups),
        *control_routes(sub),
    ]


# ---------------------------------------------------------------------------- control


async def _body(request: web.Request, allowed: dict[str, str]) -> dict[str, Any]:
    """The JSON object body (empty is {}); unknown keys are refused, naming the field."""
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


def _seconds(body: dict[str, Any], key: str, limit: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= limit
    ):
        raise BadRequest(f"body.{key}", f"must be seconds > 0 and at most {limit:g}, got {value!r}")
    return float(value)


def control_routes(sub: VrrpSubsystem) -> list[web.RouteDef]:
    """POST routes for runtime control; each returns once its effect is observed."""
    ctl = sub.control

    def handler(
        fields: dict[str, str],
        act: Callable[[web.Request, dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body = await _body(request, fields)
            try:
                return json_response(await act(request, body))
            except ControlError as exc:
                return json_error(exc.status, exc.message, **exc.data)

        return handle

    async def maintenance(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise BadRequest("body.enabled", f"required, true or false; got {enabled!r}")
        name = body.get("instance")
        if name is not None and not isinstance(name, str):
            raise BadRequest("body.instance", f"must be an instance name or null, got {name!r}")
        return await ctl.set_maintenance(enabled, name, _seconds(body, "timeout", MAX_TIMEOUT))

    async def priority(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        if "value" not in body:
            raise BadRequest("body.value", "required: a priority 1..254, or null to clear")
        value = body["value"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise BadRequest("body.value", f"must be an integer 1..254 or null, got {value!r}")
        duration = _seconds(body, "duration", MAX_DURATION)
        if value is None and duration is not None:
            raise BadRequest("body.duration", "only with a value; clearing takes no duration")
        if value is not None and not 1 <= value <= 254:
            raise BadRequest(
                "body.value",
                f"must be 1..254 (255 is the address owner's, set in the config), got {value}",
            )
        return await ctl.set_priority(request.match_info["name"], value, duration)

    async def handover(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return await ctl.handover(
            request.match_info["name"],
            _seconds(body, "timeout", MAX_TIMEOUT),
            _seconds(body, "hold", MAX_DURATION),
        )

    async def takeover(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return await ctl.takeover(
            request.match_info["name"], _seconds(body, "timeout", MAX_TIMEOUT)
        )

    async def garp(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return await ctl.garp(request.match_info["name"])

    timeout = {"timeout": "seconds"}
    return [
        web.post(
            "/v1/vrrp/maintenance",
            handler({"enabled": "boolean", "instance": "name", **timeout}, maintenance),
        ),
        web.post(
            "/v1/vrrp/instances/{name}/priority",
            handler({"value": "1..254 or null", "duration": "seconds"}, priority),
        ),
        web.post(
            "/v1/vrrp/instances/{name}/handover",
            handler({**timeout, "hold": "seconds"}, handover),
        ),
        web.post("/v1/vrrp/instances/{name}/takeover", handler(timeout, takeover)),
        web.post("/v1/vrrp/instances/{name}/garp", handler({}, garp)),
    ]


_INSTANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "name",
        "state",
        "priority",
        "effective_priority",
        "master_address",
        "vips",
        "counters",
    ],
    "properties": {
        "name": {"type": "string"},
        "interface": {"type": "string"},
        "vmac": {"type": ["string", "null"]},
        "vrid": {"type": "integer", "minimum": 1, "maximum": 255},
        "version": {"type": "integer", "enum": [2, 3]},
        "family": {"type": "integer", "enum": [4, 6]},
        "state": {"type": "string", "enum": STATES},
        "priority": {"type": "integer", "description": "configured (base) priority"},
        "effective_priority": {
            "type": "integer",
            "description": "priority advertised and compared: base plus tracker weights",
        },
        "master_address": {
            "type": ["string", "null"],
            "description": "the current master's address as seen from this node",
        },
        "master_priority": {"type": ["integer", "null"]},
        "source_address": {"type": ["string", "null"]},
        "advert_interval": {"type": "number", "description": "configured, seconds"},
        "learned_interval": {
            "type": "number",
            "description": "Master_Adver_Interval in use, seconds",
        },
        "master_down_interval": {"type": "number"},
        "preempt": {"type": "boolean"},
        "preempt_delay": {"type": "number"},
        "unicast_peers": {"type": ["array", "null"], "items": {"type": "string"}},
        "vips": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "address": {"type": "string"},
                    "dev": {"type": "string"},
                    "present": {
                        "type": "boolean",
                        "description": "the address is in the kernel now",
                    },
                },
            },
        },
        "excluded_vips": {"type": "array", "items": {"type": "object"}},
        "fault_reason": {"type": ["string", "null"]},
        "faults": {
            "type": "object",
            "description": "why the instance is held in FAULT, by source (link, trackers)",
            "additionalProperties": {"type": "string"},
        },
        "priority_deltas": {
            "type": "object",
            "description": "tracker weight contributions to the effective priority",
            "additionalProperties": {"type": "integer"},
        },
        "priority_override": {
            "type": ["integer", "null"],
            "description": "runtime priority override, if one is set",
        },
        "trackers": {
            "type": "array",
            "description": "trackers this instance follows and what each applies now",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kind": {
                        "type": "string",
                        "enum": ["interface", "script", "file", "process", "bfd"],
                    },
                    "state": {"type": "string"},
                    "reason": {"type": ["string", "null"]},
                    "weight": {"type": "integer"},
                    "weight_reverse": {"type": "boolean"},
                },
            },
        },
        "maintenance": {
            "type": "boolean",
            "description": "in maintenance (persisted): priority 1, never preempts",
        },
        "fast_takeover_bfd": {
            "type": ["string", "null"],
            "description": "the BFD session to the master whose going Down makes this "
            "backup take over at once (fast peer detection)",
        },
        "control": {
            "type": "object",
            "description": "runtime control: priority_override (set by vigilctl priority / "
            "takeover), priority_override_expires (epoch or null), preempt_hold and "
            "preempt_hold_until (epoch; null while held: until takeover / maintenance off), "
            "vips_kept (why VIPs are kept while not master), busy (action in progress)",
        },
        "last_transition": {
            "type": ["object", "null"],
            "properties": {
                "time": {"type": "number", "description": "epoch seconds"},
                "from": {"type": "string"},
                "to": {"type": "string"},
                "trigger": {"type": "string"},
                "reason": {"type": "string"},
            },
        },
        "counters": {
            "type": "object",
            "description": "adverts_sent, adverts_received, became_master, released_master, "
            "priority_zero_sent, priority_zero_received, and rejected (per reason)",
        },
    },
}

_NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_SNAPSHOT: dict[str, Any] = {
    "type": "object",
    "description": "observed state: state, effective_priority, master_address, "
    "master_priority, vips_present, maintenance, preempt_hold",
}
_CONTROL_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["action", "instance", "ok", "message", "before", "after", "elapsed_s"],
    "properties": {
        "action": {"type": "string"},
        "instance": {"type": "string"},
        "ok": {"type": "boolean"},
        "message": {"type": "string", "description": "what was done, for people"},
        "before": _SNAPSHOT,
        "after": _SNAPSHOT,
        "elapsed_s": {"type": "number"},
    },
}
_CONTROL_ERRORS: dict[str, Any] = {
    "400": {"description": "bad body; the message and `field` name the field"},
    "404": {"description": "no such instance; the message lists the known ones"},
    "409": {
        "description": "not possible in the observed state, or rolled back; `observed` "
        "holds the state seen, `rolled_back` whether a handover was undone"
    },
    "504": {"description": "the effect was not observed in time; `observed` holds what was"},
}


def _control_op(
    op_id: str, summary: str, description: str, props: dict[str, Any], result: dict[str, Any]
) -> dict[str, Any]:
    return action_operation(
        op_id,
        summary,
        description,
        props,
        parameters=[_NAME_PARAM],
        result=result,
        errors=_CONTROL_ERRORS,
    )


_TIMEOUT_PROP = {
    "type": ["number", "null"],
    "exclusiveMinimum": 0,
    "maximum": 300,
    "description": "seconds to wait for the observed effect; omitted or null: the default",
}

VRRP_OPENAPI_PATHS: dict[str, Any] = {
    "/v1/vrrp/maintenance": {
        "post": {
            "summary": "Maintenance on or off, for one instance or all (verified, persisted)",
            "description": "On: the instance advertises priority 1 and never preempts; a "
            "master hands over make-before-break first. The flag survives restarts "
            "(state dir). Off: override and hold dropped; if this node then outranks the "
            "master and preempts, it takes mastership back make-before-break.",
            "operationId": "setVrrpMaintenance",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["enabled"],
                            "additionalProperties": False,
                            "properties": {
                                "enabled": {"type": "boolean"},
                                "instance": {
                                    "type": ["string", "null"],
                                    "description": "one instance; omitted or null: all",
                                },
                                "timeout": _TIMEOUT_PROP,
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "every instance done and verified",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "action": {"type": "string"},
                                    "enabled": {"type": "boolean"},
                                    "instances": {"type": "array", "items": {"type": "string"}},
                                    "results": {"type": "array", "items": _CONTROL_RESULT},
                                    "elapsed_s": {"type": "number"},
                                },
                            }
                        }
                    },
                },
                **_CONTROL_ERRORS,
                "503": {
                    "description": "the flag could not be persisted in the state dir (full "
                    "or read-only); nothing was changed"
                },
            },
        }
    },
    "/v1/vrrp/instances/{name}/priority": _control_op(
        "setVrrpPriority",
        "Set or clear the runtime priority override, optionally expiring",
        "value 1..254 sets the override (over base + tracker weights); null clears it. "
        "duration: seconds until it expires. Survives reloads, not restarts.",
        {
            "value": {"type": ["integer", "null"], "minimum": 1, "maximum": 254},
            "duration": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "description": "seconds until the override expires; omitted or null: never",
            },
        },
        _CONTROL_RESULT,
    ),
    "/v1/vrrp/instances/{name}/handover": _control_op(
        "handoverVrrpInstance",
        "Planned make-before-break failover from this master to the best peer",
        "Sends priority 0 but keeps the VIPs until the new master's advert was seen (plus "
        "0.2 s for its GARP/NA), then removes them. If no peer takes over within timeout, "
        "rolls back (stays master; VIPs never left) and answers 409. Afterwards this node "
        "does not preempt until takeover, maintenance off, the end of hold, or a restart.",
        {
            "timeout": _TIMEOUT_PROP,
            "hold": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "description": "seconds without preemption afterwards; omitted or null: until "
                "takeover, maintenance off or a restart",
            },
        },
        _CONTROL_RESULT,
    ),
    "/v1/vrrp/instances/{name}/takeover": _control_op(
        "takeoverVrrpInstance",
        "This backup becomes master (make-before-break)",
        "Raises the override to the master's priority + 1 if needed (kept until cleared), "
        "adds and announces the VIPs, then preempts. 409 if the master is at 254/255.",
        {"timeout": _TIMEOUT_PROP},
        _CONTROL_RESULT,
    ),
    "/v1/vrrp/instances/{name}/garp": _control_op(
        "garpVrrpInstance",
        "Resend gratuitous ARP / unsolicited NA for the VIPs now (master only)",
        "409 if this node is not MASTER.",
        {},
        _CONTROL_RESULT,
    ),
    "/v1/vrrp/instances": {
        "get": {
            "summary": "Every VRRP instance's live state",
            "operationId": "listVrrpInstances",
            "responses": {
                "200": {
                    "description": "the instances",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "instances": {"type": "array", "items": _INSTANCE_SCHEMA}
                                },
                            }
                        }
                    },
                }
            },
        }
    },
    "/v1/vrrp/instances/{name}": {
        "get": {
            "summary": "One VRRP instance's live state",
            "operationId": "getVrrpInstance",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {
                    "description": "the instance",
                    "content": {"application/json": {"schema": _INSTANCE_SCHEMA}},
                },
                "404": {"description": "no such instance; the message lists the known ones"},
            },
        }
    },
}

_GROUP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "state", "members"],
    "properties": {
        "name": {"type": "string"},
        "state": {
            "type": "string",
            "enum": ["INIT", "MASTER", "BACKUP", "FAULT", "STOP"],
            "description": "the last state all members agreed on (FAULT: any member is)",
        },
        "consistent": {
            "type": "boolean",
            "description": "false while the members are between states (mixed)",
        },
        "members": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "state": {"type": ["string", "null"], "description": "null: not running"},
                    "faults": {
                        "type": "object",
                        "description": "the member's own FAULT reasons (not the group's)",
                        "additionalProperties": {"type": "string"},
                    },
                    "held": {
                        "type": "boolean",
                        "description": "kept from preempting because another member was "
                        "beaten by a peer (until a member of the group becomes master)",
                    },
                },
            },
        },
        "last_change": {
            "type": ["object", "null"],
            "properties": {
                "time": {"type": "number", "description": "epoch seconds"},
                "from": {"type": "string"},
                "to": {"type": "string"},
                "reason": {"type": "string"},
            },
        },
        "notify": {"type": "object", "description": "the group's notify commands and timeout"},
    },
}

VRRP_OPENAPI_PATHS["/v1/vrrp/groups"] = {
    "get": {
        "summary": "Every VRRP sync group: its state and its members' states",
        "operationId": "listVrrpSyncGroups",
        "responses": {
            "200": {
                "description": "the sync groups, in config order",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"groups": {"type": "array", "items": _GROUP_SCHEMA}},
                        }
                    }
                },
            }
        },
    }
}

_COUNTERS = (
    ("adverts_sent", "VRRP advertisements sent"),
    ("adverts_received", "VRRP advertisements received and accepted"),
    ("became_master", "transitions into MASTER"),
    ("released_master", "transitions out of MASTER"),
    ("priority_zero_sent", "priority-0 advertisements sent"),
    ("priority_zero_received", "priority-0 advertisements received"),
    ("advert_send_failures", "advertisements this master could not send"),
    (
        "answers_suppressed",
        "answers to lower-priority or priority-0 adverts left out by the rate limit",
    ),
)


def vrrp_metrics(sub: VrrpSubsystem) -> Iterator[Metric]:
    instances = list(sub.instances.values())
    state = GaugeMetricFamily(
        "vigil_vrrp_state", "1 for the instance's current state", labels=["instance", "state"]
    )
    prio = GaugeMetricFamily("vigil_vrrp_priority", "configured priority", labels=["instance"])
    eff = GaugeMetricFamily(
        "vigil_vrrp_effective_priority", "advertised priority", labels=["instance"]
    )
    master_prio = GaugeMetricFamily(
        "vigil_vrrp_master_priority", "the master's priority as seen here", labels=["instance"]
    )
    interval = GaugeMetricFamily(
        "vigil_vrrp_advert_interval_seconds",
        "Master_Adver_Interval in use",
        labels=["instance"],
    )
    vip = GaugeMetricFamily(
        "vigil_vrrp_vip_present", "1 if the VIP is in the kernel", labels=["instance", "address"]
    )
    maint = GaugeMetricFamily(
        "vigil_vrrp_maintenance", "1 if the instance is in maintenance", labels=["instance"]
    )
    counters = {
        key: CounterMetricFamily(f"vigil_vrrp_{key}", text, labels=["instance"])
        for key, text in _COUNTERS
    }
    rejected = CounterMetricFamily(
        "vigil_vrrp_rejected",
        "advertisements rejected, by reason",
        labels=["instance", "reason"],
    )
    for inst in instances:
        d = inst.to_dict()
        name = d["name"]
        for s in STATES:
            state.add_metric([name, s], 1.0 if d["state"] == s else 0.0)
        prio.add_metric([name], d["priority"])
        eff.add_metric([name], d["effective_priority"])
        if d["master_priority"] is not None:
            master_prio.add_metric([name], d["master_priority"])
        interval.add_metric([name], d["learned_interval"])
        maint.add_metric([name], 1.0 if d.get("maintenance") else 0.0)
        for v in (*d["vips"], *d["excluded_vips"]):
            vip.add_metric([name, v["address"]], 1.0 if v["present"] else 0.0)
        for key, family in counters.items():
            family.add_metric([name], d["counters"].get(key, 0))
        for reason, count in d["counters"]["rejected"].items():
            rejected.add_metric([name, reason], count)
    unknown = CounterMetricFamily(
        "vigil_vrrp_unknown_vrid",
        "adverts for a VRID no instance here uses",
        labels=["socket"],
    )
    for key, count in sub.unknown_vrid.items():
        unknown.add_metric([key], count)
    journal_failures = CounterMetricFamily(
        "vigil_vrrp_journal_write_failures",
        "state journal writes that failed (full or read-only state dir)",
    )
    journal_failures.add_metric([], sub.journal.failures)
    journal_ok = GaugeMetricFamily(
        "vigil_vrrp_journal_ok", "1 if the last state journal write succeeded"
    )
    journal_ok.add_metric([], 0.0 if sub.journal.error else 1.0)
    yield from (state, prio, eff, master_prio, interval, vip, maint)
    yield from (*counters.values(), rejected, unknown, journal_failures, journal_ok)
