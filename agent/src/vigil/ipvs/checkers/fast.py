"""Callback-style runs for the two checks that dominate a large director: TCP and plain
HTTP.

A coroutine run costs a Task, a Future per wait, a timeout context and a handful of
handles; at a thousand checks a second that is most of the engine's CPU. These runs are
plain objects driven by one timer and a :class:`Poller`: connect_ex, writable (SO_ERROR
read only when the poll says error or hang-up), send the request, readable -> parse, done.
The result goes to the engine's ``done`` callback exactly once; ``cancel()`` closes
everything. Same settings, same results and error texts as the coroutine probes (which
stay for TLS and the other kinds).

A connect to a server on the same host or across a bridge is usually over (connected or
refused) when ``connect()`` returns: the handshake runs in the kernel before the call
comes back. A run started with ``defer=True`` therefore arms no timer yet; its starter
calls :meth:`Poller.settle` once it has started its batch, which polls the set once
without waiting, finishes what is already over in the same loop turn, and only then arms
the connect timer (at the deadline counted from the run's start) of each run still
connecting. A check then costs one loop turn instead of two, and most cost no timer.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import hashlib
import os
import select
import socket
import weakref
from collections.abc import Callable
from typing import Any

from .core import CheckResult
from .settings import NetCheck
from .sockets import Endpoint, close, fail, open_stream, os_error

__all__ = ["FastHttpRun", "FastTcpRun", "Poller", "Run"]

Done = Callable[[CheckResult], None]
#: called with the events epoll reported for the descriptor
Handler = Callable[[int], None]
OK = CheckResult(ok=True)

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_TROUBLE = select.EPOLLERR | select.EPOLLHUP


class Poller:
    """One epoll set for the check sockets of a loop; the loop watches the set itself.

    Through asyncio a check's socket costs an ``add_writer`` and a ``remove_writer``
    (HTTP: and a reader pair), each a selector key, a Handle and an ``epoll_ctl``. Here
    a socket is added once (writable: connected), switched with one ``MOD`` (readable:
    the reply), and never deleted: closing it takes it out of the set (the descriptor
    is never duplicated). Level-triggered, so nothing is lost between two polls.

    A descriptor closed and reused within one batch of events: the stale event is not
    handed to the new socket's handler (:meth:`_ready` compares handlers).

    ``pending``: runs started with ``defer=True`` that wait for :meth:`settle` to poll
    once and arm their timers.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Poller] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weakly: the loop holds this poller (its reader), not the other way round, so a
        # closed and dropped loop takes its poller (and the epoll descriptor) with it
        self._loop = weakref.ref(loop)
        self.epoll = select.epoll()
        self.handlers: dict[int, Handler] = {}
        self.pending: list[Run] = []
        loop.add_reader(self.epoll.fileno(), self._ready)

    #: the last loop asked for and its poller, both weakly (a run asks once per check,
    #: and the weak dictionary's lookup makes a new weak reference each time)
    _last: tuple[weakref.ReferenceType[Any], weakref.ReferenceType[Poller]] | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Poller:
        last = cls._last
        if last is not None and last[0]() is loop:
            poller = last[1]()
            if poller is not None and not poller.epoll.closed:
                return poller
        poller = cls._by_loop.get(loop)
        if poller is None or poller.epoll.closed:
            poller = cls._by_loop[loop] = cls(loop)
        cls._last = (weakref.ref(loop), weakref.ref(poller))
        return poller

    def watch(self, fd: int, events: int, handler: Handler) -> None:
        """Call ``handler`` while ``fd`` is ready for ``events`` (replaces a watch)."""
        if fd in self.handlers:
            try:
                self.epoll.modify(fd, events)
            except FileNotFoundError:  # closed without forget(): a new socket
                self.epoll.register(fd, events)
        else:
            try:
                self.epoll.register(fd, events)
            except FileExistsError:  # registered, handler forgotten: take it over
                self.epoll.modify(fd, events)
        self.handlers[fd] = handler

    def forget(self, fd: int) -> None:
        """``fd`` is about to be closed, which removes it from the set."""
        self.handlers.pop(fd, None)

    def close(self) -> None:
        if not self.epoll.closed:
            loop = self._loop()
            if loop is not None and not loop.is_closed():
                loop.remove_reader(self.epoll.fileno())
            self.epoll.close()
        self.handlers.clear()

    def settle(self) -> None:
        """Finish the deferred runs whose sockets are ready already, then arm the timers
        of the others (whatever a handler raised: no run may be left without one)."""
        pending, self.pending = self.pending, []
        try:
            self._ready()
        finally:
            for run in pending:
                if not run.finished and run.timer is None:
                    run.arm_at(run.deadline, run.timeout_error())

    def _ready(self) -> None:
        try:
            events = self.epoll.poll(0, 512)
        except OSError:
            return
        handlers = self.handlers
        batch = [(fd, ev, handlers.get(fd)) for fd, ev in events]
        for fd, ev, handler in batch:
            if handler is not None and handlers.get(fd) is handler:
                handler(ev)


class Run:
    """One run: connect with a timeout, then :meth:`connected`; finishes once."""

    # one of these per check: no per-instance __dict__
    __slots__ = (
        "_starting",
        "check",
        "deadline",
        "done",
        "endpoint",
        "fd",
        "finished",
        "loop",
        "poller",
        "sock",
        "timer",
        "watching",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, check: NetCheck, endpoint: Endpoint, done: Done
    ) -> None:
        self.loop = loop
        self.poller = Poller.of(loop)
        self.check = check
        self.endpoint = endpoint
        self.done = done
        self.sock: _socket.socket | None = None
        self.fd = -1
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0  # of the connect, while it waits for Poller.settle
        self.finished = False
        self.watching = False
        self._starting = False

    def start(self, defer: bool = False) -> bool:
        """Begin; an outcome known at once is reported from the loop, not from here, so
        the engine never recurses through a queue of failing runs.

        ``defer``: if the connect is in progress, arm no timer but wait in the poller's
        ``pending`` for :meth:`Poller.settle`, which the caller promises to call before
        it hands the loop back. Returns True if the run waits for it.
        """
        self._starting = True
        try:
            return self._start(defer)
        finally:
            self._starting = False

    def _start(self, defer: bool) -> bool:
        try:
            sock = self.sock = open_stream(self.check, self.endpoint.family)
        except OSError as exc:
            self.finish(fail(os_error("socket setup (bindto/bind_port/bind_if/fwmark)", exc)))
            return False
        self.fd = sock.fileno()
        err = sock.connect_ex(self.endpoint.sockaddr)
        if err == 0:
            self.connected()
        elif err in (errno.EINPROGRESS, errno.EAGAIN):
            self.poller.watch(self.fd, _OUT, self._on_connect)
            self.watching = True
            if defer:
                self.deadline = self.loop.time() + self.check.connect_timeout
                self.poller.pending.append(self)
                return True
            self.arm(self.check.connect_timeout, self.timeout_error())
        else:
            self.finish(fail(f"connect: {_lower(os.strerror(err))}"))
        return False

    def timeout_error(self) -> str:
        return f"connect timeout after {self.check.connect_timeout:g}s"

    def arm(self, seconds: float, error: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(seconds, self._expired, error)

    def arm_at(self, when: float, error: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._expired, error)

    def _expired(self, error: str) -> None:
        self.timer = None
        self.finish(fail(error))

    def _on_connect(self, events: int) -> None:
        assert self.sock is not None
        # SO_ERROR is non-zero only with EPOLLERR up (tcp_poll): no read on a clean connect
        if events & _TROUBLE:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.finish(fail(f"connect: {_lower(os.strerror(err))}"))
                return
        self.connected()

    def connected(self) -> None:
        raise NotImplementedError

    def finish(self, result: CheckResult) -> None:
        if self.finished:
            return
        self.finished = True
        self._release()
        if self._starting:
            self.loop.call_soon(self.done, result)
        else:
            self.done(result)

    def cancel(self) -> None:
        """Stop without a result (engine stopped, server removed)."""
        if not self.finished:
            self.finished = True
            self._release()

    def _release(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            if self.watching:
                self.poller.forget(self.fd)
                self.watching = False
            if self.check.bind_port is None:
                self.sock.close()
            else:
                close(self.sock, self.check)  # resets the connection (see close)
            self.sock = None


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


class FastTcpRun(Run):
    __slots__ = ()

    def connected(self) -> None:
        self.finish(OK)


class FastHttpRun(Run):
    """Plain HTTP: each URL of the checker in turn, each on its own connection."""

    __slots__ = ("body", "child", "final", "index", "md5", "parser", "probe", "sent", "url")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        probe: Any,  # http.HttpProbe (its prepared URLs and judge)
        done: Done,
        index: int = 0,
    ) -> None:
        super().__init__(loop, probe.check, probe.endpoint, self._url_done)
        self.probe = probe
        self.final = done
        self.index = index
        self.url = probe.urls[index]
        self.sent = 0
        self.md5: Any = None
        self.body: bytearray | None = None
        self.parser: Any = None
        self.child: FastHttpRun | None = None

    def connected(self) -> None:
        from .httpparse import ResponseParser

        p = self.url
        if p.digest is not None:
            self.md5 = hashlib.md5(usedforsecurity=False)
        if p.regex is not None:
            self.body = bytearray()
        self.parser = ResponseParser(p.want_body, self.probe.check.max_body, self._on_body)
        self._send()

    def _on_body(self, chunk: bytes) -> None:
        if self.md5 is not None:
            self.md5.update(chunk)
        if self.body is not None:
            self.body.extend(chunk)

    def _send(self, events: int = 0) -> None:
        assert self.sock is not None
        request = self.url.request
        try:
            self.sent += self.sock.send(request[self.sent :])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self.finish(fail(os_error("send request", exc)))
            return
        if self.sent < len(request):
            self.poller.watch(self.fd, _OUT, self._send)
            self.watching = True
            return
        timeout = self.probe.read_timeout
        self.arm(timeout, "")
        self.poller.watch(self.fd, _IN, self._on_read)
        self.watching = True

    def _expired(self, error: str) -> None:
        if error:
            super()._expired(error)
            return
        self.timer = None
        got = "no response" if self.parser.status is None else f"status {self.parser.status}"
        path, timeout = self.url.url.path, self.probe.read_timeout
        self.finish(fail(f"{path}: read timeout after {timeout:g}s ({got})"))

    def _on_read(self, events: int) -> None:
        assert self.sock is not None
        parser = self.parser
        for _ in range(64):
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if parser.status is None:
                    self.finish(fail(f"{self.url.url.path}: {os_error('read', exc)}"))
                    return
                parser.eof()
                break
            if not data:
                parser.eof()
                break
            parser.feed(data)
            if parser.done:
                break
        if parser.done:
            self.finish(self.probe._judge(self.url, parser, self.md5, self.body))

    def _url_done(self, result: CheckResult) -> None:
        nxt = self.index + 1
        if not result.ok or nxt >= len(self.probe.urls):
            self.final(result)
            return
        self.child = FastHttpRun(self.loop, self.probe, self.final, nxt)
        self.child.start()

    def cancel(self) -> None:
        super().cancel()
        if self.child is not None:
            self.child.cancel()
