"""Runs a real Agent + ApiServer on a Unix socket in a background thread for unit tests.

The API is served by the same code as in vigild (no mocks); the test thread talks to it
with the real stdlib ApiClient. The thread owns its own event loop so the blocking client
can be used directly from synchronous tests. Shared by test_api*.py and test_cli*.py.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vigil.api.server import ApiServer
from vigil.client import ApiClient
from vigil.config import load_config
from vigil.daemon import Agent
from vigil.subsystem import SubsystemFactory, SubsystemSpec
from vigil.subsystems import sections

T = TypeVar("T")

BASE_CONFIG = """\
global:
  router_id: unit1
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 51
    priority: 150
    version: 2
    authentication: {type: pass, password: s3cret}
    virtual_ipaddresses: [10.99.0.100/24]
  - name: VI_6
    interface: eth0
    vrid: 52
    priority: 100
    version: 3
    advert_interval: 0.5
    virtual_ipaddresses: [fd00:99::100/64]
"""

# A config that fails validation in two places at once.
BAD_CONFIG = """\
global:
  router_id: unit1
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 300
    prioirty: 150
    virtual_ipaddresses: [10.99.0.100/24]
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class AgentThread:
    """An Agent and its API server running on a private loop in a daemon thread."""

    def __init__(
        self,
        config_text: str = BASE_CONFIG,
        *,
        factories: Sequence[SubsystemFactory | SubsystemSpec] = (),
        heartbeat: float = 15.0,
        start_agent: bool = True,
        allowed_uids: Sequence[int] = (),
        server_options: dict[str, Any] | None = None,
    ) -> None:
        # Short path: AF_UNIX paths are limited to 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="vgt", dir="/tmp"))
        self.config_path = self.dir / "vigil.yml"
        self.config_path.write_text(config_text)
        self.socket_path = str(self.dir / "run" / "vigil.sock")
        self.state_dir = self.dir / "state"
        # A bare factory becomes a spec without a config section of its own.
        self.specs = [
            f
            if isinstance(f, SubsystemSpec)
            else SubsystemSpec(name=getattr(f, "name", f"sub{i}"), section=None, factory=f)
            for i, f in enumerate(factories)
        ]
        self.heartbeat = heartbeat
        self.start_agent = start_agent
        self.allowed_uids = list(allowed_uids)
        self.server_options = dict(server_options or {})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.agent: Agent
        self.server: ApiServer
        self.client = ApiClient(self.socket_path, timeout=10.0)

    def __enter__(self) -> AgentThread:
        self.thread.start()
        try:
            self.run(self._setup())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if hasattr(self, "server"):
                self.run(self._teardown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def sections(self) -> list[Any]:
        """Every registered section, and those of test subsystems that bring their own."""
        out = sections()
        known = {s.name for s in out}
        for spec in self.specs:
            section = spec.load_section()
            if section is not None and section.name not in known:
                out.append(section)
        return out

    async def _setup(self) -> None:
        config = load_config(str(self.config_path), sections=self.sections())
        self.agent = Agent(
            config,
            config_path=str(self.config_path),
            socket_path=self.socket_path,
            state_dir=self.state_dir,
            specs=self.specs,
            sections=self.sections(),
        )
        self.server = ApiServer(
            self.agent,
            self.socket_path,
            heartbeat=self.heartbeat,
            allowed_uids=self.allowed_uids,
            **self.server_options,
        )
        await self.server.start()
        if self.start_agent:
            await self.agent.start()

    async def _teardown(self) -> None:
        await self.agent.stop()
        await self.server.stop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        """Run a coroutine on the agent's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a plain function on the agent's loop thread (the bus is not thread-safe)."""

        async def _call() -> T:
            return fn(*args, **kwargs)

        return self.run(_call())

    def publish(self, kind: str, instance: str | None = None, message: str = "", **data: Any):
        return self.call(self.agent.events.publish, kind, instance, message, **data)
