"""The VRRP subsystem's API routes, their OpenAPI description, and its metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from vigil.api.errors import json_error, json_response
from vigil.vrrp.machine import VrrpState

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

    return [
        web.get("/v1/vrrp/instances", list_instances),
        web.get("/v1/vrrp/instances/{name}", one_instance),
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

VRRP_OPENAPI_PATHS: dict[str, Any] = {
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

_COUNTERS = (
    ("adverts_sent", "VRRP advertisements sent"),
    ("adverts_received", "VRRP advertisements received and accepted"),
    ("became_master", "transitions into MASTER"),
    ("released_master", "transitions out of MASTER"),
    ("priority_zero_sent", "priority-0 advertisements sent"),
    ("priority_zero_received", "priority-0 advertisements received"),
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
    yield from (state, prio, eff, master_prio, interval, vip, *counters.values(), rejected, unknown)
