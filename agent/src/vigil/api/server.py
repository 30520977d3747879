"""Serving the API app on a Unix socket, safely.

Four things aiohttp does not do for us: (1) create the socket with mode 0600 from the
first instant (bind under a tight umask), refuse to steal a socket a live agent still
serves, and clear a stale one left by a crash; (2) answer malformed HTTP with a JSON 400
instead of aiohttp's plain-text page; (3) remove the socket on stop only if it is still
ours (another agent may have replaced it); (4) bound what clients can hold: at most
``max_connections`` connections at once (never more than a quarter of the open-files
limit, so a flood of API connections cannot take the descriptors the VRRP sockets and
netlink need), an idle connection is closed after IDLE_TIMEOUT, and at the limit the
oldest idle connection makes room for the new one (only when every connection is busy
is the new one refused with a 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import resource
import socket
import stat
import time
from collections.abc import Callable, Collection
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web, web_runner
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from vigil.api.app import DEFAULT_HEARTBEAT, allowed_refusal, build_app
from vigil.api.errors import error_body
from vigil.api.peercred import is_allowed, peer_credentials
from vigil.log import RateLimitedLog

if TYPE_CHECKING:
    from vigil.agent import Agent

__all__ = ["ApiServer", "JsonErrorRequestHandler", "SocketInUse", "bind_unix_socket"]

log = logging.getLogger("vigil.api")

#: Most API connections open at once (see connection_limit()).
MAX_CONNECTIONS = 64
#: The listen backlog, which is also how many connections asyncio accepts in one go before
#: the loop runs anything else: small, so a connection flood is taken in short slices that
#: VRRP's timers interleave with, and the rest waits in the kernel (or is refused there)
#: instead of costing the loop.
ACCEPT_BACKLOG = 16
#: How many new API connections the agent takes per second at most (a token bucket, with
#: ACCEPT_BURST at once): past that it stops reading the listening socket until the next
#: token, and more connections wait in the kernel's backlog (or are refused there). A
#: connection flood thus costs a bounded share of the one event loop that also sends the
#: VRRP adverts and BFD packets, instead of turning the agent into a CPU-bound process
#: whose timers wait for the scheduler.
ACCEPT_RATE = 200.0
ACCEPT_BURST = 16
#: An API connection without a request in progress (a fresh one, one between requests, or
#: one still sending its request head) is closed after this many seconds.
IDLE_TIMEOUT = 10.0
#: What an over-limit connection gets before it is closed.
_REFUSAL_BODY = (
    json.dumps(
        error_body(503, "too many API connections are busy; retry in a moment (see the vigild log)")
    )
    + "\n"
).encode()
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n"
) + _REFUSAL_BODY
# Lines a client can cause (malformed requests, connection floods): one per burst.
_client_log = RateLimitedLog(log)


def connection_limit(wanted: int = MAX_CONNECTIONS) -> int:
    """``wanted``, but at most a quarter of this process's open-files soft limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, max(4, soft // 4))


def _at_limit(server: object, action: str, limit: int, more: int = 0) -> None:
    """Tell the agent (an ``api_connection_limit`` event), once per burst like the log:
    at the first connection of a burst, and with ``more`` (how many came after it) when
    the burst's summary line is written."""
    report = getattr(server, "on_limit", None)
    if report is not None:
        with contextlib.suppress(Exception):
            report(action, limit, more)


def _report_limit(server: object, key: str, limit: int, msg: str, *args: Any) -> None:
    """Log ``msg`` rate-limited under ``key``; the first of a burst and its summary are
    also reported as events."""
    if _client_log.warning(
        key, msg, *args, on_summary=lambda more: _at_limit(server, key, limit, more)
    ):
        _at_limit(server, key, limit)


class SocketInUse(Exception):
    """Another live process serves the socket path we were asked to use."""


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, answering parser errors with JSON bodies.

    It also enforces the server's connection limit (see the module docstring).
    """

    allowed_uids: frozenset[int] = frozenset()
    refused = False  # over the limit: answered 503 and closed, never served
    evicted = False  # closed to make room for a newer connection
    lost = False  # the peer went away (its handler may still be finishing)
    busy = False  # a request is being handled (an event stream stays busy)
    opened = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.opened = time.monotonic()
        server = self._manager
        limit = int(getattr(server, "max_connections", 0))
        if limit and server is not None:
            live = [
                h
                for h in server.connections
                if isinstance(h, JsonErrorRequestHandler) and not (h.evicted or h.lost)
            ]
            if len(live) >= limit:
                idle = [h for h in live if not h.busy]
                if idle:
                    victim = min(idle, key=lambda h: h.opened)
                    victim.evicted = True
                    victim.force_close()
                    _report_limit(
                        server,
                        "evict",
                        limit,
                        "api: %d connections open (the limit); closing the oldest idle one",
                        limit,
                    )
                else:
                    self.refused = True
                    _report_limit(
                        server,
                        "refuse",
                        limit,
                        "api: %d connections open and busy (the limit); refusing new ones",
                        limit,
                    )
                    with contextlib.suppress(Exception):
                        cast(asyncio.Transport, transport).write(_REFUSAL)
                    transport.close()
                    return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        self.lost = True  # its descriptor is closed: it no longer counts against the limit
        super().connection_lost(exc)

    async def _handle_request(self, *args: Any, **kwargs: Any) -> Any:
        self.busy = True
        try:
            return await super()._handle_request(*args, **kwargs)
        finally:
            self.busy = False

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        sock = self.transport.get_extra_info("socket") if self.transport else None
        cred = peer_credentials(sock) if sock is not None else None
        if not is_allowed(cred, self.allowed_uids):
            status, text = 403, allowed_refusal(cred)
        elif status >= 500:
            log.error("api: internal error while handling a request", exc_info=exc)
            text = "internal error; see the vigild log"
        else:
            reason = message or (str(exc) if exc else HTTPStatus(status).phrase)
            text = f"malformed HTTP request: {reason.strip()}"
            _client_log.warning(
                "malformed",
                "api: malformed request from pid %s: %s",
                cred.pid if cred else "?",
                reason,
            )
        body = json.dumps(error_body(status, text)) + "\n"
        resp = web.Response(status=status, text=body, content_type="application/json")
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    """web.Server whose connections use JsonErrorRequestHandler."""

    allowed_uids: frozenset[int] = frozenset()
    max_connections: int = 0

    def __call__(self) -> RequestHandler:
        handler = JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.allowed_uids = self.allowed_uids
        return handler


class _ApiRunner(web.AppRunner):
    """AppRunner that builds a _JsonErrorServer (same state, different protocol class)."""

    def __init__(
        self,
        app: web.Application,
        allowed_uids: frozenset[int],
        max_connections: int = 0,
        **kw: Any,
    ) -> None:
        super().__init__(app, **kw)
        self._allowed = allowed_uids
        self._max_connections = max_connections
        self.on_limit: Callable[[str, int, int], None] | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Server keeps all of its state in attributes set by __init__; changing the class
        # only changes which protocol __call__ builds.
        server.__class__ = _JsonErrorServer
        server.allowed_uids = self._allowed  # type: ignore[attr-defined]
        server.max_connections = self._max_connections  # type: ignore[attr-defined]
        server.on_limit = self.on_limit  # type: ignore[attr-defined]
        return server


class PacedAccept:
    """A token bucket for accepts: ``take(now)`` is True while a token is left;
    ``wait(now)`` is how long until the next one. Pure (the caller passes the time)."""

    def __init__(self, rate: float = ACCEPT_RATE, burst: int = ACCEPT_BURST) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)


class _PacedSocketSite(web_runner.BaseSite):
    """aiohttp's SockSite, but the listening socket is read at most ACCEPT_RATE times a
    second (see PacedAccept): asyncio's own server accepts whatever is waiting, as fast as
    a flood connects, on every turn of the loop."""

    __slots__ = ("_accepting", "_pace", "_pending", "_resume", "_sock")

    def __init__(
        self, runner: web.BaseRunner, sock: socket.socket, pace: PacedAccept | None = None
    ) -> None:
        super().__init__(runner, backlog=ACCEPT_BACKLOG)
        self._sock = sock
        self._pace = pace or PacedAccept()
        self._resume: asyncio.TimerHandle | None = None
        self._accepting = False
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def name(self) -> str:
        return f"http://unix:{self._sock.getsockname()}:"

    async def start(self) -> None:
        await super().start()
        self._watch(True)

    def _watch(self, on: bool) -> None:
        loop = asyncio.get_running_loop()
        if on and not self._accepting:
            loop.add_reader(self._sock.fileno(), self._readable)
        elif not on and self._accepting:
            loop.remove_reader(self._sock.fileno())
        self._accepting = on

    def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        for _ in range(ACCEPT_BURST):
            if not self._pace.take(loop.time()):
                # Out of tokens: leave the rest in the backlog until the next one.
                _report_limit(
                    server,
                    "pace",
                    int(self._pace.rate),
                    "api: new connections arrive faster than %d a second; taking %d a "
                    "second, the rest wait in the kernel's backlog of %d or are refused there",
                    int(self._pace.rate),
                    int(self._pace.rate),
                    ACCEPT_BACKLOG,
                )
                self._watch(False)
                self._resume = loop.call_later(self._pace.wait(loop.time()), self._resumed)
                return
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                self._pace.tokens += 1.0  # nothing was waiting: the token was not used
                return
            except OSError as exc:
                # EMFILE and friends: try again in a moment rather than spin.
                _client_log.warning("accept", "api: cannot accept a connection: %s", exc)
                self._watch(False)
                self._resume = loop.call_later(0.1, self._resumed)
                return
            conn.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(server, conn))
            self._pending.add(task)
            task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _client_log.warning("accept", "api: a new connection failed: %s", task.exception())

    def _resumed(self) -> None:
        self._resume = None
        if self._sock.fileno() >= 0:
            self._watch(True)

    async def stop(self) -> None:
        self._runner._check_site(self)
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._sock.fileno() >= 0:
            self._watch(False)
            self._sock.close()
        for task in list(self._pending):
            task.cancel()
        self._runner._unreg_site(self)


def bind_unix_socket(path: str) -> socket.socket:
    """A listening AF_UNIX socket at `path`, mode 0600, its directory created 0755.

    A socket file that nobody answers on is stale and replaced; one a live process
    answers on raises SocketInUse naming that process.
    """
    directory = Path(path).parent
    if not directory.exists():
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketInUse(f"{path} exists and is not a socket; remove it or pass --socket")
        _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(ACCEPT_BACKLOG)
    sock.setblocking(False)
    return sock


def _clear_stale(path: str) -> None:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            log.info("api: removing stale socket %s", path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        raise
    else:
        cred = peer_credentials(probe)
        who = f"pid {cred.pid}" if cred and cred.pid else "another process"
        raise SocketInUse(f"{path} is in use by {who} (another vigild?); stop it or pass --socket")
    finally:
        probe.close()


class ApiServer:
    """The agent's API on its Unix socket: start(), stop()."""

    def __init__(
        self,
        agent: Agent,
        socket_path: str,
        *,
        allowed_uids: Collection[int] = (),
        heartbeat: float = DEFAULT_HEARTBEAT,
        shutdown_timeout: float = 3.0,
        max_connections: int | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        accept_rate: float = ACCEPT_RATE,
    ) -> None:
        self.agent = agent
        self.accept_rate = accept_rate
        self.max_connections = connection_limit(
            MAX_CONNECTIONS if max_connections is None else max_connections
        )
        self.idle_timeout = idle_timeout
        self.socket_path = socket_path
        self.allowed_uids = frozenset(allowed_uids)
        self.app = build_app(agent, allowed_uids=self.allowed_uids, heartbeat=heartbeat)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._inode: tuple[int, int] | None = None

    def _at_limit(self, action: str, limit: int, more: int = 0) -> None:
        if action == "pace":
            text = (
                f"API: new connections arrive faster than {limit} a second (a flood?); "
                f"taking {limit} a second, the rest wait in the kernel's backlog or are "
                "refused there"
            )
        else:
            what = (
                "closing the oldest idle one to make room"
                if action == "evict"
                else "every one busy: refusing new ones with 503"
            )
            text = f"API: {limit} connections open (the limit), {what}"
        if more:
            text += f"; {more} more times within 10 s"
        else:
            text += "; more within 10 s are reported once, when the burst ends"
        self.agent.events.publish(
            "api_connection_limit",
            None,
            text,
            warning=True,
            action=action,
            limit=limit,
            more=more,
        )

    async def start(self) -> None:
        sock = bind_unix_socket(self.socket_path)
        st = os.stat(self.socket_path)
        self._inode = (st.st_dev, st.st_ino)
        runner = _ApiRunner(
            self.app,
            self.allowed_uids,
            self.max_connections,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
            keepalive_timeout=self.idle_timeout,
        )
        runner.on_limit = self._at_limit
        try:
            await runner.setup()
            await _PacedSocketSite(runner, sock, PacedAccept(rate=self.accept_rate)).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            self._remove_socket()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._remove_socket()

    def _remove_socket(self) -> None:
        if self._inode is None:
            return
        try:
            st = os.stat(self.socket_path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self._inode = None
