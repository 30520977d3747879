"""An asyncio loop in a thread that has joined a lab namespace.

For testing in-process asyncio code (the IPVS checker engine) as if it ran in a lab
node: setns(2) moves only the calling thread, so every socket the loop's code opens, and
every subprocess it forks, lives in that node's namespace, while the test thread stays
where it is. The test talks to the loop with :meth:`NetnsLoop.run` (a coroutine, bounded
by a timeout) and :meth:`NetnsLoop.call` (a plain function run on the loop thread).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["NetnsLoop"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsLoop:
    def __init__(self, ns: str, name: str = "netns-loop") -> None:
        self.ns = ns
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"{name}-{ns}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError(f"loop thread for {ns} did not start within 10 s")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({self.ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result (bounded)."""
        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Call ``fn`` on the loop thread (for reading loop-owned state safely)."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Cancel what is left on the loop, stop it and join the thread. Idempotent."""
        loop = self.loop
        if loop is None or not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)
