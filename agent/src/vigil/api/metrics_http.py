"""A read-only Prometheus endpoint on TCP: ``vigild --metrics-listen ADDR:PORT``.

The API (with its control actions) stays on the Unix socket, where SO_PEERCRED decides
who may act. Prometheus cannot scrape a Unix socket, so this listener serves exactly one
thing, ``GET /metrics`` from the agent's registry, and nothing that changes state; every
other path is a 404, every other method a 405. It is off unless asked for.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from vigil.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from vigil.agent import Agent

__all__ = ["MetricsServer", "parse_listen"]

log = logging.getLogger("vigil.api")


def parse_listen(text: str) -> tuple[str, int]:
    """``10.0.0.1:9650``, ``[fd00::1]:9650`` or ``:9650`` (every address) -> (host, port).

    Raises ValueError with a sentence that names the fix.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(
            f"--metrics-listen {text!r}: expected ADDRESS:PORT with a port in 1..65535 "
            "(e.g. 10.0.0.11:9650, [fd00::11]:9650, or :9650 for every address)"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"--metrics-listen {text!r}: {host!r} is not an IP address; give an address "
                "of this host (IPv6 in brackets), or leave it empty for every address"
            ) from None
    return host, int(port_text)


class MetricsServer:
    """GET /metrics over TCP; start() / stop()."""

    def __init__(self, agent: Agent, host: str, port: int) -> None:
        self.agent = agent
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(body=self.agent.metrics.exposition())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics, allow_head=False)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host or None, self.port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
