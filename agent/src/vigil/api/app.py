"""The API's routes and handlers (aiohttp), independent of how the socket is opened.

Every answer is JSON except /metrics (Prometheus text) and the SSE event stream. Errors
share one shape (see vigil.api.errors). The middleware checks the peer's uid on every
request, turns aiohttp's 404/405 into JSON, a BadRequest into a 400 naming the field, and
any other exception into a logged 500, so a handler bug can never take the agent down.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from vigil.api.errors import BadRequest, json_error, json_response, json_response_async
from vigil.api.peercred import PeerCred, is_allowed, peer_credentials
from vigil.events import OVERFLOW, Event
from vigil.log import RateLimitedLog
from vigil.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from vigil.agent import Agent

__all__ = [
    "AGENT_KEY",
    "DEFAULT_HEARTBEAT",
    "allowed_refusal",
    "build_app",
    "load_openapi",
    "sse_frame",
]

log = logging.getLogger("vigil.api")
# Refused callers can repeat as fast as they like: one line per uid and burst.
_refusal_log = RateLimitedLog(log)

DEFAULT_HEARTBEAT = 15.0
AGENT_KEY: web.AppKey[Agent] = web.AppKey("agent")
ALLOWED_KEY: web.AppKey[frozenset[int]] = web.AppKey("allowed_uids")
HEARTBEAT_KEY: web.AppKey[float] = web.AppKey("heartbeat")
STREAMS_KEY: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("streams")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@cache
def _base_openapi() -> str:
    return resources.files("vigil.api").joinpath("openapi.json").read_text()


def load_openapi(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """The packaged OpenAPI document, with subsystems' path items merged in."""
    doc: dict[str, Any] = json.loads(_base_openapi())
    if extra_paths:
        doc = copy.deepcopy(doc)
        doc.setdefault("paths", {}).update(extra_paths)
    return doc


def _peer(request: web.Request) -> PeerCred | None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return peer_credentials(sock) if sock is not None else None


def allowed_refusal(cred: PeerCred | None) -> str:
    """The 403 message: who was refused and how an operator grants access."""
    if cred is None:
        return "forbidden: the peer's credentials are unknown; connect over the Unix socket"
    return (
        f"forbidden: uid {cred.uid} may not use the vigild API; run as root or start "
        f"vigild with --api-allow-uid {cred.uid}"
    )


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    cred = _peer(request)
    allowed_uids: frozenset[int] = request.app[ALLOWED_KEY]
    if not is_allowed(cred, allowed_uids):
        _refusal_log.warning(
            f"refused:{cred.uid if cred else '?'}",
            "api: refused %s %s from pid %s uid %s (not root, not in --api-allow-uid)",
            request.method,
            request.path,
            cred.pid if cred else "?",
            cred.uid if cred else "?",
        )
        return json_error(403, allowed_refusal(cred))
    try:
        return await handler(request)
    except BadRequest as exc:
        return json_error(400, f"bad request: {exc.field}: {exc.message}", field=exc.field)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        resp = json_error(
            405, f"method {request.method} is not allowed on {request.path}; use {allowed}"
        )
        resp.headers["Allow"] = allowed
        return resp
    except web.HTTPNotFound:
        return json_error(
            404, f"no such endpoint: {request.path}; the API is described at /v1/openapi.json"
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.text or exc.reason)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        # A client can repeat a request that hits a bug: one traceback per path and burst.
        _refusal_log.error(
            f"error:{request.path}",
            "api: %s %s failed",
            request.method,
            request.path,
            exc_info=True,
        )
        return json_error(
            500, f"internal error in {request.method} {request.path}: {exc}; see the vigild log"
        )


# --------------------------------------------------------------------------- helpers


def _check_query(request: web.Request, allowed: Collection[str] = ()) -> None:
    for key in request.query:
        if key not in allowed:
            supported = ", ".join(sorted(allowed)) or "none"
            raise BadRequest(
                f"query.{key}",
                f"unknown query parameter for {request.method} {request.path} "
                f"(supported: {supported})",
            )


def _int_param(request: web.Request, name: str, text: str) -> int:
    # ASCII only: str.isdigit() is true for "²" and other digits int() refuses.
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(name, f"must be a non-negative integer, got {text!r}")
    return int(text)


_TRUE = {"1", "true", "yes", "on"}
# An empty value ("?follow") is refused rather than read as false: it looks like a yes.
_FALSE = {"0", "false", "no", "off"}


def _bool_param(name: str, text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise BadRequest(name, f"must be a boolean (1/0, true/false, yes/no, on/off), got {text!r}")


def _agent(request: web.Request) -> Agent:
    return request.app[AGENT_KEY]


# --------------------------------------------------------------------------- handlers


async def health(request: web.Request) -> web.StreamResponse:
    _check_query(request)
    agent = _agent(request)
    body = agent.health()
    return json_response(body, status=200 if body["status"] == "ok" else 503)


async def status(request: web.Request) -> web.StreamResponse:
    _check_query(request)
    return await json_response_async(await _agent(request).status_async())


async def config(request: web.Request) -> web.StreamResponse:
    _check_query(request)
    return json_response(_agent(request).config_view())


async def reload(request: web.Request) -> web.StreamResponse:
    _check_query(request)
    agent = _agent(request)
    raw = await request.read() if request.can_read_body else b""
    confirm = False
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BadRequest("body", f"is not valid JSON ({exc}); send {{}} or nothing") from None
        if not isinstance(body, dict):
            raise BadRequest("body", "must be a JSON object (or empty)")
        for key, value in body.items():
            if key != "confirm_stop_all":
                raise BadRequest(
                    f"body.{key}",
                    "unknown field; reload takes only confirm_stop_all and always rereads "
                    f"the configured file ({agent.config_path})",
                )
            if not isinstance(value, bool):
                raise BadRequest("body.confirm_stop_all", "must be true or false")
            confirm = value
    result = await agent.reload_from_file(confirm_stop_all=confirm)
    if result.ok:
        return json_response(result.to_dict())
    if result.code in (409, 422):
        return json_error(result.code, result.error or "config is invalid", issues=result.issues)
    return json_error(result.code, result.error or "reload failed")


def sse_frame(event: Event) -> bytes:
    """One SSE message. The overflow marker carries no id (it is not a real event)."""
    data = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
    head = f"event: {event.kind}\n" if event.kind == OVERFLOW else f"id: {event.seq}\n"
    if event.kind != OVERFLOW:
        head += f"event: {event.kind}\n"
    return f"{head}data: {data}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    _check_query(request, ("since", "follow"))
    agent = _agent(request)
    since: int | None = None
    if "since" in request.query:
        since = _int_param(request, "query.since", request.query["since"])
    follow = _bool_param("query.follow", request.query.get("follow", "0"))
    # Checked whenever it is sent, like every other input, though only a stream without
    # `since` uses it.
    last_id: int | None = None
    if "Last-Event-ID" in request.headers:
        last_id = _int_param(request, "header.Last-Event-ID", request.headers["Last-Event-ID"])
    if "text/event-stream" in request.headers.get("Accept", ""):
        follow = True
    if not follow:
        return json_response([ev.to_dict() for ev in agent.events.since(since or 0)])
    if since is None:
        since = last_id
    return await _stream_events(request, since)


async def _stream_events(request: web.Request, since: int | None) -> web.StreamResponse:
    agent = _agent(request)
    heartbeat = request.app[HEARTBEAT_KEY]
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    sub = agent.events.subscribe(since)
    task = asyncio.current_task()
    streams = request.app[STREAMS_KEY]
    if task is not None:
        streams.add(task)
    try:
        await resp.prepare(request)
        await resp.write(b": vigild event stream\nretry: 2000\n\n")
        it = aiter(sub)
        while True:
            try:
                ev = await asyncio.wait_for(anext(it), heartbeat)
            except TimeoutError:
                await resp.write(b": heartbeat\n\n")
                continue
            except StopAsyncIteration:
                break
            await resp.write(sse_frame(ev))
            if ev.kind == OVERFLOW:
                break
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        log.debug("api: event stream client went away")
    finally:
        sub.close()
        if task is not None:
            streams.discard(task)
    return resp


async def metrics(request: web.Request) -> web.StreamResponse:
    _check_query(request)
    body = await _agent(request).metrics_exposition()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def openapi(request: web.Request) -> web.StreamResponse:
    _check_query(request)
    extra: dict[str, Any] = {}
    for sub in _agent(request).subsystems:
        extra.update(sub.openapi_paths() or {})
    return json_response(load_openapi(extra))


#: the core routes: (method, path, handler); subsystems add theirs via routes()
CORE_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/v1/health", health),
    ("GET", "/v1/status", status),
    ("GET", "/v1/config", config),
    ("POST", "/v1/reload", reload),
    ("GET", "/v1/events", events),
    ("GET", "/v1/openapi.json", openapi),
    ("GET", "/metrics", metrics),
)


async def _close_streams(app: web.Application) -> None:
    """On shutdown end the open event streams so the server can stop promptly."""
    app[AGENT_KEY].events.close()
    streams: set[asyncio.Task[Any]] = app[STREAMS_KEY]
    for task in list(streams):
        task.cancel()


def build_app(
    agent: Agent,
    *,
    allowed_uids: Collection[int] = (),
    heartbeat: float = DEFAULT_HEARTBEAT,
) -> web.Application:
    """The aiohttp app for `agent`, with the subsystems' routes added."""
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[AGENT_KEY] = agent
    app[ALLOWED_KEY] = frozenset(allowed_uids)
    app[HEARTBEAT_KEY] = heartbeat
    app[STREAMS_KEY] = set()
    for method, path, handler in CORE_ROUTES:
        app.router.add_route(method, path, handler)
    for sub in agent.subsystems:
        app.router.add_routes(sub.routes() or [])
    app.on_shutdown.append(_close_streams)
    return app
