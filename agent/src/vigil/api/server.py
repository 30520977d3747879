"""Serving the API app on a Unix socket, safely.

Three things aiohttp does not do for us: (1) create the socket with mode 0600 from the
first instant (bind under a tight umask), refuse to steal a socket a live agent still
serves, and clear a stale one left by a crash; (2) answer malformed HTTP with a JSON 400
instead of aiohttp's plain-text page; (3) remove the socket on stop only if it is still
ours (another agent may have replaced it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
from collections.abc import Collection
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from vigil.api.app import DEFAULT_HEARTBEAT, allowed_refusal, build_app
from vigil.api.errors import error_body
from vigil.api.peercred import is_allowed, peer_credentials

if TYPE_CHECKING:
    from vigil.agent import Agent

__all__ = ["ApiServer", "JsonErrorRequestHandler", "SocketInUse", "bind_unix_socket"]

log = logging.getLogger("vigil.api")


class SocketInUse(Exception):
    """Another live process serves the socket path we were asked to use."""


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, answering parser errors with JSON bodies."""

    allowed_uids: frozenset[int] = frozenset()

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
            log.warning("api: malformed request from pid %s: %s", cred.pid if cred else "?", reason)
        body = json.dumps(error_body(status, text)) + "\n"
        resp = web.Response(status=status, text=body, content_type="application/json")
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    """web.Server whose connections use JsonErrorRequestHandler."""

    allowed_uids: frozenset[int] = frozenset()

    def __call__(self) -> RequestHandler:
        handler = JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.allowed_uids = self.allowed_uids
        return handler


class _ApiRunner(web.AppRunner):
    """AppRunner that builds a _JsonErrorServer (same state, different protocol class)."""

    def __init__(self, app: web.Application, allowed_uids: frozenset[int], **kw: Any) -> None:
        super().__init__(app, **kw)
        self._allowed = allowed_uids

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Server keeps all of its state in attributes set by __init__; changing the class
        # only changes which protocol __call__ builds.
        server.__class__ = _JsonErrorServer
        server.allowed_uids = self._allowed  # type: ignore[attr-defined]
        return server


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
    sock.listen(128)
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
    ) -> None:
        self.agent = agent
        self.socket_path = socket_path
        self.allowed_uids = frozenset(allowed_uids)
        self.app = build_app(agent, allowed_uids=self.allowed_uids, heartbeat=heartbeat)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._inode: tuple[int, int] | None = None

    async def start(self) -> None:
        sock = bind_unix_socket(self.socket_path)
        st = os.stat(self.socket_path)
        self._inode = (st.st_dev, st.st_ino)
        runner = _ApiRunner(
            self.app,
            self.allowed_uids,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
        )
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
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
