"""Agent lifecycle with subsystems that fail: start-up aborts cleanly, reloads report it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.metrics_core import Metric
from test_api_harness import BASE_CONFIG, AgentThread

from vigil.config import Config, ConfigDiff
from vigil.subsystem import SubsystemContext, SubsystemSpec

LOG: list[str] = []


class Recorder:
    """A well-behaved subsystem that records its calls in LOG."""

    def __init__(self, ctx: SubsystemContext, name: str = "first") -> None:
        self.name = name

    async def start(self, config: Config) -> None:
        LOG.append(f"{self.name}.start")

    async def apply(self, config: Config, diff: ConfigDiff) -> None:
        LOG.append(f"{self.name}.apply")

    async def stop(self) -> None:
        LOG.append(f"{self.name}.stop")

    def status(self) -> dict[str, Any]:
        return {}

    def routes(self) -> list[web.RouteDef]:
        return []

    def openapi_paths(self) -> dict[str, Any]:
        return {}

    def collect_metrics(self) -> Iterable[Metric]:
        return []


class FailsToStart(Recorder):
    async def start(self, config: Config) -> None:
        LOG.append(f"{self.name}.start")
        raise OSError("interface eth9 does not exist")


class FailsToApply(Recorder):
    async def apply(self, config: Config, diff: ConfigDiff) -> None:
        raise RuntimeError("netlink said no")


class BrokenStatusAndMetrics(Recorder):
    def status(self) -> dict[str, Any]:
        raise RuntimeError("status bug")

    def collect_metrics(self) -> Iterable[Metric]:
        raise RuntimeError("metrics bug")


@pytest.fixture(autouse=True)
def clear_log() -> None:
    LOG.clear()


def test_start_failure_stops_what_started_and_raises() -> None:
    with AgentThread(
        factories=[Recorder, lambda ctx: FailsToStart(ctx, "second")], start_agent=False
    ) as at:
        with pytest.raises(OSError, match="eth9"):
            at.run(at.agent.start())
        assert LOG == ["first.start", "second.start", "first.stop"]
        assert at.agent.phase == "stopped"
        status, body = at.client.get("/v1/health")
        assert status == 503 and body["status"] == "stopped"


def test_stop_runs_in_reverse_order() -> None:
    with AgentThread(factories=[Recorder, lambda ctx: Recorder(ctx, "second")]) as at:
        at.run(at.agent.stop())
        assert LOG == ["first.start", "second.start", "second.stop", "first.stop"]


def test_apply_failure_is_a_500_and_keeps_the_config() -> None:
    spec = SubsystemSpec(
        name="vrrp",
        section="vigil.vrrp.config:SECTION",
        factory=lambda ctx: FailsToApply(ctx, "vrrp"),
    )
    with AgentThread(factories=[spec]) as at:
        at.config_path.write_text(BASE_CONFIG.replace("priority: 150", "priority: 110"))
        status, body = at.client.post("/v1/reload")
        assert status == 500
        assert "netlink said no" in body["error"]["message"]
        assert at.client.get("/v1/config")[1]["config"]["vrrp_instances"][0]["priority"] == 150
        assert at.client.get("/v1/events")[1][-1]["kind"] == "reload_failed"


def test_reload_while_starting_is_503() -> None:
    with AgentThread(start_agent=False) as at:
        status, body = at.client.post("/v1/reload")
        assert status == 503
        assert "starting" in body["error"]["message"]


def test_unchanged_reload_does_not_call_apply() -> None:
    with AgentThread(factories=[Recorder]) as at:
        assert at.client.post("/v1/reload")[1]["changed"] is False
        assert LOG == ["first.start"]


def test_broken_subsystem_status_and_metrics_do_not_break_the_api() -> None:
    with AgentThread(factories=[BrokenStatusAndMetrics]) as at:
        status, body = at.client.get("/v1/status")
        assert status == 200
        assert body["first"] == {"error": "status bug"}
        status, text = at.client.get("/metrics")
        assert status == 200 and "vigil_up 1.0" in text
