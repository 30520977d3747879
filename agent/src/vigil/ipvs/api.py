"""The IPVS subsystem's API routes, their OpenAPI description, its status section, metrics.

Routes (docs/api.md):

- ``GET /v1/ipvs/virtual_servers`` and ``GET /v1/ipvs/virtual_servers/{name}``: every
  virtual server with its real servers: state, configured / effective / IPVS weight,
  drain, each check's last result and latency, consecutive failures, last error, and the
  kernel's counters (connections, packets, bytes, rates), read fresh from the kernel.
- ``POST /v1/ipvs/virtual_servers/{name}/real_servers/{real_server}/drain`` (body
  ``{"wait": bool, "timeout": seconds}``) and ``.../enable``: verified (vigil.ipvs.control).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from vigil.api.errors import BadRequest, json_error, json_response, json_response_async
from vigil.api.openapi_parts import action_operation
from vigil.incremental import run_steps
from vigil.ipvs.control import MAX_WAIT, ControlError
from vigil.ipvs.kernel import Counters
from vigil.ipvs.planner import config_dest_keys, dest_key, service_key

if TYPE_CHECKING:
    from vigil.ipvs.config import VirtualServerConfig
    from vigil.ipvs.kernel import ServiceKey
    from vigil.ipvs.runtime import IpvsSubsystem, RsState, VsState

__all__ = [
    "IPVS_OPENAPI_PATHS",
    "ipvs_metrics",
    "ipvs_metrics_async",
    "ipvs_routes",
    "status_section",
    "status_section_async",
    "vs_view",
]

COUNTER_FIELDS = ("conns", "packets_in", "packets_out", "bytes_in", "bytes_out")
RATE_FIELDS = ("cps", "pps_in", "pps_out", "bps_in", "bps_out")


# ---------------------------------------------------------------------------- views


_TOTALS_OF = attrgetter(*COUNTER_FIELDS)
_RATES_OF = attrgetter(*RATE_FIELDS)


def _counters(items: list[Counters]) -> tuple[dict[str, int], dict[str, int]]:
    if len(items) == 1:  # the common case: one service, one destination
        c = items[0]
        return (
            dict(zip(COUNTER_FIELDS, _TOTALS_OF(c), strict=True)),
            dict(zip(RATE_FIELDS, _RATES_OF(c), strict=True)),
        )
    totals = [sum(col) for col in zip(*map(_TOTALS_OF, items), strict=True)]
    rates = [sum(col) for col in zip(*map(_RATES_OF, items), strict=True)]
    return (
        dict(zip(COUNTER_FIELDS, totals, strict=True)),
        dict(zip(RATE_FIELDS, rates, strict=True)),
    )


def _check_views(sub: IpvsSubsystem, rs: RsState) -> list[dict[str, Any]]:
    engine = sub.engine
    if engine is None:
        return []
    try:
        health = engine.health(rs.engine_name)
    except KeyError:
        return []
    out = []
    for cfg, machine in zip(rs.cfg.checks, health.checks, strict=False):
        d = machine.to_dict()
        last = machine.last_result
        out.append(
            {
                "name": d["name"],
                "kind": cfg.kind,
                "state": d["state"],
                "ok": None if last is None else last.ok,
                "last_result": d["last_result"],
                "latency_s": d["last_latency"],
                "consecutive_failures": d["consecutive_failures"],
                "retry": d["retry"],
                "delay_loop": d["delay_loop"],
                "last_transition": d["last_transition"],
                "counters": d["counters"],
            }
        )
    return out


def _by_destination(sub: IpvsSubsystem, vs: VsState) -> tuple[dict[Any, list[Any]], ...]:
    """What is programmed and what the kernel showed, per destination, over vs's services
    (built once per virtual server, so a view of N real servers costs O(N))."""
    programmed: dict[Any, list[Any]] = {}
    observed: dict[Any, list[Any]] = {}
    for key in vs.keys:
        entry = sub.table.get(key)
        st = sub.observed.get(key)
        if entry is None and st is None:
            continue
        # DR and tunnelled destinations sit on the service's port, not the configured one
        back = config_dest_keys(vs.cfg, key) if _moves_ports(vs.cfg, key) else None
        if entry is not None:
            for dkey, dest in entry.destinations.items():
                if back is not None:
                    dkey = back.get(dkey, dkey)
                programmed.setdefault(dkey, []).append(dest)
        if st is not None:
            for d in st.destinations:
                dkey = (d.destination.addr, d.destination.port)
                if back is not None:
                    dkey = back.get(dkey, dkey)
                observed.setdefault(dkey, []).append(d)
    return programmed, observed


def _moves_ports(cfg: VirtualServerConfig, key: ServiceKey) -> bool:
    """Whether some destination of ``cfg`` sits on another port in service ``key``."""
    port = key.port or 0
    sorry = cfg.sorry_server
    if sorry is not None and sorry.forwarding.method != "nat" and sorry.port != port:
        return True
    return any(rs.forwarding.method != "nat" and rs.port != port for rs in cfg.real_servers)


def _static(rs: RsState) -> dict[str, Any]:
    """The parts of a real server's view that only its config decides, built once per
    config (its label and address as text cost more than the rest of the view)."""
    cached = rs.view_static
    if cached is not None and cached[0] is rs.cfg:
        return cached[1]
    cfg = rs.cfg
    static = {
        "name": cfg.label,
        "address": str(cfg.address),
        "forwarding": str(cfg.forwarding),
        "_dkey": (cfg.address, cfg.port),
    }
    rs.view_static = (cfg, static)
    return static


def rs_view(
    sub: IpvsSubsystem,
    vs: VsState,
    rs: RsState,
    found: tuple[dict[Any, list[Any]], ...] | None = None,
) -> dict[str, Any]:
    cfg = rs.cfg
    static = _static(rs)
    label = static["name"]
    by_programmed, by_observed = found if found is not None else _by_destination(sub, vs)
    dkey = static["_dkey"]
    programmed = by_programmed.get(dkey, ())
    observed = by_observed.get(dkey, ())
    totals, rates = _counters([d.counters for d in observed]) if observed else ({}, {})
    checks = _check_views(sub, rs) if cfg.checks else []
    failing = [c for c in checks if c["ok"] is False]
    latencies = [c["latency_s"] for c in checks if c["latency_s"] is not None]
    weights = sorted({d.weight for d in programmed})
    alive = rs.alive
    return {
        "name": label,
        "address": static["address"],
        "port": cfg.port,
        "state": "INIT" if alive is None else ("UP" if alive else "DOWN"),
        "alive": alive,
        "drained": sub.is_drained(vs.name, label),
        "suspended": vs.suspended,
        "configured_weight": cfg.weight,
        "effective_weight": rs.weight if alive is not None else cfg.weight,
        "ipvs_weight": weights[0] if len(weights) == 1 else (weights or None),
        "in_ipvs": bool(programmed),
        "forwarding": static["forwarding"],
        "inhibit_on_failure": cfg.inhibit_on_failure,
        "upper_threshold": cfg.upper_threshold,
        "lower_threshold": cfg.lower_threshold,
        "last_result": checks[0]["last_result"] if checks else None,
        "latency_s": max(latencies) if latencies else None,
        "consecutive_failures": max((c["consecutive_failures"] for c in checks), default=0),
        "last_error": failing[0]["last_result"] if failing else None,
        "reason": rs.reason or None,
        "changed_at": rs.changed_at,
        "checks": checks,
        "connections": {
            "active": sum(d.active_conns for d in observed),
            "inactive": sum(d.inactive_conns for d in observed),
            "persistent": sum(d.persistent_conns for d in observed),
        }
        if observed
        else None,
        "counters": totals if observed else None,
        "rates": rates if observed else None,
    }


def vs_view(sub: IpvsSubsystem, vs: VsState) -> dict[str, Any]:
    cfg = vs.cfg
    keys = vs.keys
    found = _by_destination(sub, vs)
    observed = [st for key in keys if (st := sub.observed.get(key)) is not None]
    totals, rates = _counters([st.counters for st in observed]) if observed else ({}, {})
    sorry = cfg.sorry_server
    sorry_view = None
    if sorry is not None:
        sorry_view = {
            "address": str(sorry.address),
            "port": sorry.port,
            "forwarding": str(sorry.forwarding),
            "active": not vs.quorum.up,
            "in_ipvs": any(
                (e := sub.table.get(k)) is not None
                and dest_key(k, sorry.address, sorry.port, sorry.forwarding) in e.destinations
                for k in keys
            ),
        }
    return {
        "name": cfg.name,
        "services": [str(service_key(ep)) for ep in cfg.services],
        "group": cfg.group,
        "protocol": cfg.protocol if cfg.fwmark is None else None,
        "scheduler": cfg.scheduler,
        "scheduler_flags": list(cfg.scheduler_flags),
        "one_packet": cfg.one_packet,
        "forwarding": str(cfg.forwarding),
        "persistence": None if cfg.persistence is None else cfg.persistence.to_dict(),
        "in_ipvs": all(k in sub.table for k in keys),
        "quorum": vs.quorum.to_dict(),
        "sorry_server": sorry_view,
        "ha_suspend": None
        if cfg.ha_suspend is None
        else {
            "instance": cfg.ha_suspend,
            "vrrp_state": sub.vrrp_state(cfg.ha_suspend),
            "suspended": vs.suspended,
        },
        "delay_loop": cfg.delay_loop,
        "counters": totals if observed else None,
        "rates": rates if observed else None,
        "real_servers": [rs_view(sub, vs, rs, found) for rs in vs.servers.values()],
    }


def _placeholder(cfg: Any) -> dict[str, Any]:
    """A configured virtual server that is not running (yet): same keys, state INIT."""
    return {
        "name": cfg.name,
        "services": [str(ep) for ep in cfg.services],
        "scheduler": cfg.scheduler,
        "in_ipvs": False,
        "quorum": {"state": "INIT", "quorum": cfg.quorum, "hysteresis": cfg.hysteresis},
        "real_servers": [
            {
                "name": rs.label,
                "address": str(rs.address),
                "port": rs.port,
                "state": "INIT",
                "configured_weight": rs.weight,
                "forwarding": str(rs.forwarding),
                "in_ipvs": False,
                "checks": [],
            }
            for rs in cfg.real_servers
        ],
    }


def kernel_view(sub: IpvsSubsystem) -> dict[str, Any]:
    return {
        "available": sub.kernel_ok,
        "used": sub._needs_kernel(),
        "error": sub.kernel_error,
        "netns": sub.kernel.netns,
        "requests": sub.kernel.requests,
        "last_read": sub.observed_at,
        "drift_interval_s": sub.drift_interval(),
        **sub.stats,
    }


def sync_view(sub: IpvsSubsystem) -> dict[str, Any] | None:
    cfg = sub.section.ipvs_sync_daemon
    if cfg is None and not sub.daemons:
        return None
    return {
        "interface": None if cfg is None else cfg.interface,
        "instance": None if cfg is None else cfg.instance,
        "vrrp_state": None if cfg is None or cfg.instance is None else sub.vrrp_state(cfg.instance),
        "syncid": None if cfg is None else cfg.syncid,
        "running": sorted(sub.daemons),
    }


def status_section(sub: IpvsSubsystem) -> dict[str, Any]:
    """IPVS's section of /v1/status (configured virtual servers as INIT before start)."""
    out: dict[str, Any] = {}
    for _ in _status_steps(sub, out):
        pass
    return out


async def status_section_async(sub: IpvsSubsystem) -> dict[str, Any]:
    """The same section, built a few virtual servers at a time between yields to the loop."""
    out: dict[str, Any] = {}
    await run_steps(_status_steps(sub, out))
    return out


def _status_steps(sub: IpvsSubsystem, out: dict[str, Any]) -> Iterator[None]:
    """Build the status section into ``out``, yielding after each virtual server."""
    running: dict[str, Any] = {}
    for name, vs in list(sub.vs.items()):
        running[name] = vs_view(sub, vs)
        yield None
    servers = [
        running.pop(cfg.name) if cfg.name in running else _placeholder(cfg)
        for cfg in sub.section.virtual_servers
    ]
    servers.extend(running.values())
    engine = sub.engine
    out.update(
        {
            "kernel": kernel_view(sub),
            "virtual_servers": servers,
            "sync_daemon": sync_view(sub),
            "checker": None if engine is None else engine.stats.to_dict(),
        }
    )


# ---------------------------------------------------------------------------- routes


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


def ipvs_routes(sub: IpvsSubsystem) -> list[web.RouteDef]:
    async def list_servers(request: web.Request) -> web.Response:
        await sub.refresh()
        section = await status_section_async(sub)
        return await json_response_async(
            {
                "virtual_servers": section["virtual_servers"],
                "kernel": kernel_view(sub),
                "sync_daemon": sync_view(sub),
            }
        )

    async def one_server(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        vs = sub.vs.get(name)
        if vs is None:
            have = ", ".join(sub.vs) or "none"
            return json_error(
                404, f"unknown virtual server {name!r}; this agent has: {have}", name=name
            )
        await sub.refresh()
        return json_response({**vs_view(sub, vs), "kernel": kernel_view(sub)})

    async def drain(request: web.Request) -> web.Response:
        body = await _body(request, {"wait": "boolean", "timeout": "seconds"})
        wait = body.get("wait", False)
        if not isinstance(wait, bool):
            raise BadRequest("body.wait", f"must be true or false, got {wait!r}")
        timeout = body.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or not 0 < timeout <= MAX_WAIT
        ):
            raise BadRequest(
                "body.timeout", f"must be seconds > 0 and at most {MAX_WAIT:g}, got {timeout!r}"
            )
        if timeout is not None and not wait:
            raise BadRequest("body.timeout", "only with wait: true")
        try:
            result = await sub.control.drain(
                request.match_info["name"],
                request.match_info["real_server"],
                wait=wait,
                timeout=None if timeout is None else float(timeout),
            )
        except ControlError as exc:
            return json_error(exc.status, exc.message, **exc.data)
        return json_response(result)

    async def enable(request: web.Request) -> web.Response:
        await _body(request, {})
        try:
            result = await sub.control.enable(
                request.match_info["name"], request.match_info["real_server"]
            )
        except ControlError as exc:
            return json_error(exc.status, exc.message, **exc.data)
        return json_response(result)

    rs_path = "/v1/ipvs/virtual_servers/{name}/real_servers/{real_server}"
    return [
        web.get("/v1/ipvs/virtual_servers", list_servers),
        web.get("/v1/ipvs/virtual_servers/{name}", one_server),
        web.post(f"{rs_path}/drain", drain),
        web.post(f"{rs_path}/enable", enable),
    ]


# ---------------------------------------------------------------------------- OpenAPI

_TOTALS = {
    "type": ["object", "null"],
    "description": "the kernel's totals since the service/destination was added: conns, "
    "packets_in, packets_out, bytes_in, bytes_out (null: IPVS not read)",
}
_RATES = {
    "type": ["object", "null"],
    "description": "the kernel's rate estimates per second: cps, pps_in, pps_out, bps_in, bps_out",
}
_CHECK = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {
            "type": "string",
            "enum": ["tcp", "http", "https", "dns", "udp", "ping", "smtp", "misc", "file"],
        },
        "state": {"type": "string", "enum": ["INIT", "UP", "FAILING", "DOWN", "STOPPED"]},
        "ok": {"type": ["boolean", "null"], "description": "the last run's outcome"},
        "last_result": {"type": ["string", "null"]},
        "latency_s": {"type": ["number", "null"]},
        "consecutive_failures": {"type": "integer"},
        "retry": {"type": "integer"},
        "delay_loop": {"type": "number"},
        "last_transition": {"type": ["object", "null"]},
        "counters": {"type": "object"},
    },
}
_REAL_SERVER = {
    "type": "object",
    "required": ["name", "address", "port", "state", "configured_weight", "in_ipvs"],
    "properties": {
        "name": {"type": "string", "description": "address:port, its name in drain/enable"},
        "address": {"type": "string"},
        "port": {"type": "integer", "description": "0: the port the client used"},
        "state": {"type": "string", "enum": ["INIT", "UP", "DOWN"]},
        "alive": {"type": ["boolean", "null"]},
        "drained": {"type": "boolean"},
        "suspended": {"type": "boolean", "description": "checks suspended (ha_suspend)"},
        "configured_weight": {"type": "integer"},
        "effective_weight": {
            "type": "integer",
            "description": "configured plus dynamic checks (MISC dynamic, FILE)",
        },
        "ipvs_weight": {
            "type": ["integer", "null", "array"],
            "description": "the weight in the kernel (0 drained or inhibited; null: absent)",
        },
        "in_ipvs": {"type": "boolean"},
        "forwarding": {"type": "string"},
        "inhibit_on_failure": {"type": "boolean"},
        "upper_threshold": {"type": "integer"},
        "lower_threshold": {"type": "integer"},
        "last_result": {"type": ["string", "null"]},
        "latency_s": {"type": ["number", "null"]},
        "consecutive_failures": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"], "description": "why it last changed"},
        "changed_at": {"type": ["number", "null"], "description": "epoch seconds"},
        "checks": {"type": "array", "items": _CHECK},
        "connections": {
            "type": ["object", "null"],
            "description": "active, inactive and persistent connections (summed over services)",
        },
        "counters": _TOTALS,
        "rates": _RATES,
    },
}
_VIRTUAL_SERVER = {
    "type": "object",
    "required": ["name", "services", "scheduler", "quorum", "real_servers"],
    "properties": {
        "name": {"type": "string"},
        "services": {"type": "array", "items": {"type": "string"}},
        "group": {"type": ["string", "null"]},
        "protocol": {"type": ["string", "null"]},
        "scheduler": {"type": "string"},
        "scheduler_flags": {"type": "array", "items": {"type": "string"}},
        "one_packet": {"type": "boolean"},
        "forwarding": {"type": "string"},
        "persistence": {"type": ["object", "null"]},
        "in_ipvs": {"type": "boolean"},
        "quorum": {
            "type": "object",
            "description": "state UP/DOWN, quorum, hysteresis, live_weight, lost_below, "
            "regained_at",
        },
        "sorry_server": {"type": ["object", "null"]},
        "ha_suspend": {"type": ["object", "null"]},
        "delay_loop": {"type": "number"},
        "counters": _TOTALS,
        "rates": _RATES,
        "real_servers": {"type": "array", "items": _REAL_SERVER},
    },
}
_KERNEL = {
    "type": "object",
    "description": "available (IPVS usable), used, error (why not), netns, requests (netlink "
    "requests sent), last_read (epoch), drift_interval_s, passes, drift_checks (netlink "
    "dumps), light_checks (drift checks /proc/net/ip_vs answered), proc_misreads (drift "
    "checks where /proc/net/ip_vs differed and netlink did not), drift_corrections, ops, "
    "op_failures",
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_RS = {
    "name": "real_server",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "address:port ([v6]:port), or the address when it is unique",
}
_SNAPSHOT = {
    "type": "object",
    "description": "observed: state, drained, in_ipvs, ipvs_weight, active_connections, "
    "inactive_connections",
}
_RESULT = {
    "type": "object",
    "required": ["action", "virtual_server", "real_server", "ok", "message", "before", "after"],
    "properties": {
        "action": {"type": "string", "enum": ["drain", "enable"]},
        "virtual_server": {"type": "string"},
        "real_server": {"type": "string"},
        "ok": {"type": "boolean"},
        "message": {"type": "string"},
        "before": _SNAPSHOT,
        "after": _SNAPSHOT,
        "wait": {
            "type": "object",
            "description": "with wait: outcome (drained | timeout | standby, with reason), "
            "active_connections, waited_s, timeout_s",
        },
        "elapsed_s": {"type": "number"},
    },
}
_ERRORS = {
    "400": {"description": "bad body; the message and `field` name the field"},
    "404": {"description": "no such virtual server or real server; the message lists them"},
    "409": {"description": "another action on this real server is in progress"},
    "500": {"description": "the drain state could not be persisted; nothing changed"},
    "503": {"description": "IPVS is not available (the message says why)"},
    "504": {"description": "the effect was not observed; `observed` holds what was"},
}


def _action(op_id: str, summary: str, description: str, props: dict[str, Any]) -> dict[str, Any]:
    return action_operation(
        op_id, summary, description, props, parameters=[_NAME, _RS], result=_RESULT, errors=_ERRORS
    )


IPVS_OPENAPI_PATHS: dict[str, Any] = {
    "/v1/ipvs/virtual_servers": {
        "get": {
            "summary": "Every virtual server with its real servers, health and kernel counters",
            "operationId": "listIpvsVirtualServers",
            "responses": {
                "200": {
                    "description": "the virtual servers (counters read from the kernel now)",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "virtual_servers": {"type": "array", "items": _VIRTUAL_SERVER},
                                    "kernel": _KERNEL,
                                    "sync_daemon": {"type": ["object", "null"]},
                                },
                            }
                        }
                    },
                }
            },
        }
    },
    "/v1/ipvs/virtual_servers/{name}": {
        "get": {
            "summary": "One virtual server",
            "operationId": "getIpvsVirtualServer",
            "parameters": [_NAME],
            "responses": {
                "200": {
                    "description": "the virtual server",
                    "content": {"application/json": {"schema": _VIRTUAL_SERVER}},
                },
                "404": {"description": "no such virtual server; the message lists them"},
            },
        }
    },
    "/v1/ipvs/virtual_servers/{name}/real_servers/{real_server}/drain": _action(
        "drainIpvsRealServer",
        "Drain a real server: weight 0, established connections continue (persisted)",
        "Returns once IPVS shows weight 0. With wait: then until its active connections "
        "reach zero or timeout (default 60 s) passes; wait.outcome says which.",
        {
            "wait": {"type": "boolean"},
            "timeout": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "maximum": MAX_WAIT,
                "description": "seconds (with wait: true); omitted or null: 60",
            },
        },
    ),
    "/v1/ipvs/virtual_servers/{name}/real_servers/{real_server}/enable": _action(
        "enableIpvsRealServer",
        "Lift a drain: the real server gets its weight back (its health still decides)",
        "Returns once IPVS shows the expected weight.",
        {},
    ),
}


# ---------------------------------------------------------------------------- metrics


def ipvs_metrics(sub: IpvsSubsystem) -> Iterator[Metric]:
    out: list[Metric] = []
    for _ in _metric_steps(sub, out):
        pass
    yield from out


async def ipvs_metrics_async(sub: IpvsSubsystem) -> list[Metric]:
    """The same families, built a few virtual servers at a time between yields."""
    out: list[Metric] = []
    await run_steps(_metric_steps(sub, out))
    return out


def _metric_steps(sub: IpvsSubsystem, out: list[Metric]) -> Iterator[None]:
    """Build the IPVS metric families into ``out``, yielding after each virtual server."""
    rs_labels = ["virtual_server", "real_server"]
    up = GaugeMetricFamily(
        "vigil_ipvs_real_server_up", "1 while the real server is alive", labels=rs_labels
    )
    drained = GaugeMetricFamily(
        "vigil_ipvs_real_server_drained", "1 while the real server is drained", labels=rs_labels
    )
    in_ipvs = GaugeMetricFamily(
        "vigil_ipvs_real_server_in_ipvs", "1 while the real server is in IPVS", labels=rs_labels
    )
    weight = GaugeMetricFamily(
        "vigil_ipvs_real_server_weight",
        "configured, effective (with dynamic checks) and ipvs (in the kernel) weight",
        labels=[*rs_labels, "kind"],
    )
    conns = GaugeMetricFamily(
        "vigil_ipvs_real_server_connections",
        "connections to the real server by state (active, inactive, persistent)",
        labels=[*rs_labels, "state"],
    )
    rs_totals = {
        f: CounterMetricFamily(
            f"vigil_ipvs_real_server_{f}", f"kernel total {f} of the real server", labels=rs_labels
        )
        for f in COUNTER_FIELDS
    }
    rs_rates = GaugeMetricFamily(
        "vigil_ipvs_real_server_rate",
        "the kernel's rate estimates per second (cps, pps_in, pps_out, bps_in, bps_out)",
        labels=[*rs_labels, "rate"],
    )
    check_up = GaugeMetricFamily(
        "vigil_ipvs_check_up",
        "1 while the checker counts the server up",
        labels=[*rs_labels, "check"],
    )
    latency = GaugeMetricFamily(
        "vigil_ipvs_check_latency_seconds", "the last run's latency", labels=[*rs_labels, "check"]
    )
    failures = GaugeMetricFamily(
        "vigil_ipvs_check_consecutive_failures",
        "failed runs in a row",
        labels=[*rs_labels, "check"],
    )
    runs = CounterMetricFamily(
        "vigil_ipvs_check_runs", "checker runs by result", labels=[*rs_labels, "check", "result"]
    )
    quorum = GaugeMetricFamily(
        "vigil_ipvs_quorum_up", "1 while the virtual server has quorum", labels=["virtual_server"]
    )
    live = GaugeMetricFamily(
        "vigil_ipvs_live_weight",
        "the live weight counted for the quorum",
        labels=["virtual_server"],
    )
    sorry = GaugeMetricFamily(
        "vigil_ipvs_sorry_server_active",
        "1 while the sorry server serves",
        labels=["virtual_server"],
    )
    suspended = GaugeMetricFamily(
        "vigil_ipvs_checks_suspended",
        "1 while checks are suspended (ha_suspend)",
        labels=["virtual_server"],
    )
    vs_totals = {
        f: CounterMetricFamily(
            f"vigil_ipvs_virtual_server_{f}", f"kernel total {f} of the virtual server",
            labels=["virtual_server"],
        )
        for f in COUNTER_FIELDS
    }  # fmt: skip
    vs_rates = GaugeMetricFamily(
        "vigil_ipvs_virtual_server_rate",
        "the kernel's rate estimates per second",
        labels=["virtual_server", "rate"],
    )
    for vs in list(sub.vs.values()):
        yield None
        view = vs_view(sub, vs)
        name = vs.name
        quorum.add_metric([name], 1.0 if vs.quorum.up else 0.0)
        live.add_metric([name], vs.quorum.weight or 0)
        if vs.cfg.sorry_server is not None:
            sorry.add_metric([name], 0.0 if vs.quorum.up else 1.0)
        suspended.add_metric([name], 1.0 if vs.suspended else 0.0)
        for f in COUNTER_FIELDS:
            if view["counters"] is not None:
                vs_totals[f].add_metric([name], view["counters"][f])
        for f in RATE_FIELDS:
            if view["rates"] is not None:
                vs_rates.add_metric([name, f], view["rates"][f])
        for rs in view["real_servers"]:
            labels = [name, rs["name"]]
            up.add_metric(labels, 1.0 if rs["alive"] else 0.0)
            drained.add_metric(labels, 1.0 if rs["drained"] else 0.0)
            in_ipvs.add_metric(labels, 1.0 if rs["in_ipvs"] else 0.0)
            weight.add_metric([*labels, "configured"], rs["configured_weight"])
            weight.add_metric([*labels, "effective"], rs["effective_weight"])
            if isinstance(rs["ipvs_weight"], int):
                weight.add_metric([*labels, "ipvs"], rs["ipvs_weight"])
            if rs["connections"] is not None:
                for state, count in rs["connections"].items():
                    conns.add_metric([*labels, state], count)
                for f in COUNTER_FIELDS:
                    rs_totals[f].add_metric(labels, rs["counters"][f])
                for f in RATE_FIELDS:
                    rs_rates.add_metric([*labels, f], rs["rates"][f])
            for check in rs["checks"]:
                clabels = [*labels, check["name"]]
                check_up.add_metric(clabels, 1.0 if check["state"] in ("UP", "FAILING") else 0.0)
                if check["latency_s"] is not None:
                    latency.add_metric(clabels, check["latency_s"])
                failures.add_metric(clabels, check["consecutive_failures"])
                counters = check["counters"]
                runs.add_metric([*clabels, "success"], counters.get("successes", 0))
                runs.add_metric([*clabels, "failure"], counters.get("failures", 0))
    kernel = GaugeMetricFamily(
        "vigil_ipvs_kernel_available", "1 while IPVS is usable (0: see the status's error)"
    )
    kernel.add_metric([], 1.0 if sub.kernel_ok else 0.0)
    requests = CounterMetricFamily("vigil_ipvs_netlink_requests", "IPVS netlink requests sent")
    requests.add_metric([], sub.kernel.requests)
    drift = CounterMetricFamily(
        "vigil_ipvs_drift_corrections", "times the kernel table was changed by someone else"
    )
    drift.add_metric([], sub.stats["drift_corrections"])
    op_failures = CounterMetricFamily("vigil_ipvs_op_failures", "IPVS requests the kernel refused")
    op_failures.add_metric([], sub.stats["op_failures"])
    daemon = GaugeMetricFamily(
        "vigil_ipvs_sync_daemon_running",
        "1 while the sync daemon runs in this state",
        labels=["state"],
    )
    for state in ("master", "backup"):
        daemon.add_metric([state], 1.0 if state in sub.daemons else 0.0)
    engine = sub.engine
    in_flight = GaugeMetricFamily("vigil_ipvs_checks_in_flight", "checks running now")
    queued = GaugeMetricFamily("vigil_ipvs_checks_queued", "due checks waiting for a slot")
    if engine is not None:
        in_flight.add_metric([], engine.stats.running)
        queued.add_metric([], engine.stats.queued)
    notify = CounterMetricFamily("vigil_ipvs_notify_runs", "notify commands run", labels=["result"])
    notify.add_metric(["ok"], sub.notifier.runs - sub.notifier.failures)
    notify.add_metric(["failed"], sub.notifier.failures)
    out.extend((up, drained, in_ipvs, weight, conns, *rs_totals.values(), rs_rates))
    out.extend((check_up, latency, failures, runs, quorum, live, sorry, suspended))
    out.extend((*vs_totals.values(), vs_rates, kernel, requests, drift, op_failures, daemon))
    out.extend((in_flight, queued, notify))


def now() -> float:
    return time.time()
