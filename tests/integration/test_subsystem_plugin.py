"""A subsystem that exists only in this file plugs into a real vigild with no edit elsewhere.

The "toy" subsystem below has everything a real one has: its own section of vigil.yml
(``toy``), a status section, an event kind, a metric, an API route, a vigilctl group, and
a journal namespace with a clean-up hook. Its "kernel state" is one file per configured
light in a directory of the test's, so a crash leaves something behind to clean up.

vigild and vigilctl find it through ``VIGIL_SUBSYSTEMS`` (the registration point's plug-in
variable), run from this repository's root so the module imports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from vigil.clikit import table
from vigil.config import Issue, SectionInput
from vigil.journal import CleanupReport, JournalNamespace
from vigil.subsystem import SubsystemContext, SubsystemSpec

from tests.lab.agents import bin_path
from tests.lab.lab import Lab

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REF = f"{__name__}:SPEC"


# --------------------------------------------------------------------------- the toy


@dataclass(frozen=True)
class ToyConfig:
    dir: str = ""
    lights: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToyDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {"added": list(self.added), "removed": list(self.removed)}

    def summary(self) -> str:
        return f"lights +{len(self.added)} -{len(self.removed)}"


class ToySection:
    name = "toy"
    keys = ("toy",)
    global_fields: Mapping[Any, Any] = {}

    def validate(self, inp: SectionInput) -> ToyConfig:
        raw = inp.data.get("toy")
        if raw is None:
            return ToyConfig()
        if not isinstance(raw, dict):
            inp.error(["toy"], "must be a mapping {dir: PATH, lights: [NAME, ...]}")
            return ToyConfig()
        lights = raw.get("lights") or []
        if not isinstance(lights, list) or not all(isinstance(x, str) for x in lights):
            inp.error(["toy", "lights"], "must be a list of light names")
            lights = []
        if not isinstance(raw.get("dir"), str) or not raw["dir"].startswith("/"):
            inp.error(["toy", "dir"], "must be an absolute directory path")
        return ToyConfig(str(raw.get("dir")), tuple(lights))

    def build(self, inp: SectionInput, validated: ToyConfig) -> ToyConfig:
        return validated

    def to_dict(self, model: ToyConfig, *, redact: bool = True) -> dict[str, Any]:
        return {"toy": {"dir": model.dir, "lights": list(model.lights)}} if model.dir else {}

    def diff(self, old: ToyConfig, new: ToyConfig) -> ToyDiff:
        return ToyDiff(
            tuple(x for x in new.lights if x not in old.lights),
            tuple(x for x in old.lights if x not in new.lights),
        )

    def summary(self, model: ToyConfig) -> tuple[int, str]:
        return len(model.lights), "toy lights"

    def check_cluster(self, models: Mapping[str, ToyConfig], context: Any = None) -> list[Issue]:
        return []


class ToySubsystem:
    name = "toy"

    def __init__(self, ctx: SubsystemContext) -> None:
        self.ctx = ctx
        self.section = ToyConfig()

    def _lamp(self, light: str) -> Path:
        return Path(self.section.dir) / f"{light}.on"

    async def _switch_on(self, light: str) -> None:
        self.ctx.journal.record(light, {"file": str(self._lamp(light))})
        self.ctx.journal.flush()  # journal first, then the "kernel"
        self._lamp(light).write_text("on\n")
        self.ctx.events.publish("toy_light", light, f"light {light} is on", on=True)

    async def start(self, section: ToyConfig) -> None:
        self.section = section
        for light in section.lights:
            await self._switch_on(light)

    async def apply(self, section: ToyConfig, diff: ToyDiff) -> None:
        for light in diff.removed:
            self._lamp(light).unlink(missing_ok=True)
            self.ctx.journal.forget(light)
        self.section = section
        for light in diff.added:
            await self._switch_on(light)
        self.ctx.journal.flush()

    async def stop(self) -> None:
        for light in self.section.lights:
            self._lamp(light).unlink(missing_ok=True)
            self.ctx.journal.forget(light)
        self.ctx.journal.flush()

    def status(self) -> dict[str, Any]:
        return {"lights": [{"name": x, "on": self._lamp(x).exists()} for x in self.section.lights]}

    def routes(self) -> list[web.RouteDef]:
        async def lights(request: web.Request) -> web.Response:
            return web.json_response(self.status()["lights"])

        return [web.get("/v1/toy/lights", lights)]

    def openapi_paths(self) -> dict[str, Any]:
        return {"/v1/toy/lights": {"get": {"responses": {"200": {"description": "lights"}}}}}

    def collect_metrics(self) -> Iterable[Metric]:
        g = GaugeMetricFamily("vigil_toy_lights_on", "toy lights that are on")
        g.add_metric([], sum(1 for x in self.section.lights if self._lamp(x).exists()))
        yield g


async def toy_cleanup(ns: JournalNamespace, report: CleanupReport, netns: str | None) -> None:
    for light, entry in list(ns.entries.items()):
        path = Path(entry["file"])
        if path.exists():
            path.unlink()
            report.removed(light, f"lamp {path}", kind="toy_cleanup", file=str(path))
        else:
            report.already_gone(light, f"lamp {path}")
        ns.forget(light)


class ToyCli:
    name = "toy"
    help = "toy lights"
    aliases: tuple[str, ...] = ()

    def add_commands(self, sub: Any, common: Any) -> None:
        return None

    def status_text(self, section: dict[str, Any]) -> str:
        rows = [(x["name"], "on" if x["on"] else "off") for x in section.get("lights", [])]
        return table(("LIGHT", "STATE"), rows)

    def diff_text(self, diff: dict[str, Any]) -> str:
        return ""


SPEC = SubsystemSpec(
    name="toy",
    section=f"{__name__}:SECTION",
    factory=f"{__name__}:ToySubsystem",
    cli=f"{__name__}:CLI",
    cleanup=f"{__name__}:toy_cleanup",
)
SECTION = ToySection()
CLI = ToyCli()


# --------------------------------------------------------------------------- the test


def plugin_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {"VIGIL_SUBSYSTEMS": REF, "PYTHONPATH": f"{REPO}:{path}" if path else str(REPO)}


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_subsystem_defined_in_a_test_runs_in_a_real_vigild(lab: Lab, tmp_path: Path) -> None:
    n1 = lab.add_namespace("n1")
    lamps = tmp_path / "lamps"
    lamps.mkdir()
    config = {
        "global": {"router_id": "toy1"},
        "toy": {"dir": str(lamps), "lights": ["porch", "hall"]},
    }
    env = plugin_env()
    agent = lab.start_vigild(n1, config, env=env)

    # its config section, status section, route, event kind and metric
    status, body = agent.client.get("/v1/status")
    assert status == 200, body
    assert body["toy"] == {"lights": [{"name": "porch", "on": True}, {"name": "hall", "on": True}]}
    assert body["agent"]["subsystems"] == ["bfd", "vrrp", "ipvs", "toy"]
    assert agent.client.get("/v1/toy/lights")[1][0] == {"name": "porch", "on": True}
    events = agent.client.get("/v1/events")[1]
    toy_events = [e for e in events if e["kind"] == "toy_light"]
    assert [(e["subsystem"], e["instance"]) for e in toy_events] == [
        ("toy", "porch"),
        ("toy", "hall"),
    ]
    started = next(e for e in events if e["kind"] == "agent_started")
    assert "2 toy lights" in started["message"] and started["data"]["counts"]["toy"] == 2
    metrics = agent.client.get("/metrics")[1]
    assert "vigil_toy_lights_on 2.0" in metrics
    assert 'vigil_events_total{kind="toy_light",subsystem="toy"} 2.0' in metrics
    assert "/v1/toy/lights" in agent.client.get("/v1/openapi.json")[1]["paths"]

    # vigilctl finds the same plug-in: its JSON section and its table
    ctl = [bin_path("vigilctl"), "--socket", str(agent.socket_path)]
    out = run([*ctl, "-o", "json", "status"], env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["toy"]["lights"][1] == {"name": "hall", "on": True}
    out = run([*ctl, "status"], env)
    assert out.returncode == 0, out.stderr
    assert ["porch", "on"] in [line.split() for line in out.stdout.splitlines()]

    # a reload gives the toy its own diff
    agent.config_path.write_text(
        json.dumps({**config, "toy": {"dir": str(lamps), "lights": ["porch"]}})
    )
    status, body = agent.client.post("/v1/reload")
    assert status == 200, body
    assert body["diff"]["toy"] == {"added": [], "removed": ["hall"]}
    assert not (lamps / "hall.on").exists() and (lamps / "porch.on").exists()

    # a crash leaves the lamp on; vigild --cleanup runs the toy's hook on its journal
    lab.kill_group(agent.process, signal.SIGKILL)
    assert (lamps / "porch.on").exists()
    journal = json.loads((agent.state_dir / "toy-journal.json").read_text())
    assert list(journal["entries"]) == ["porch"]
    cleaned = run(
        [sys.executable, "-m", "vigil.daemon", "--cleanup", "--state-dir", str(agent.state_dir)],
        env,
    )
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert f"(porch) removed lamp {lamps / 'porch.on'}" in cleaned.stdout
    assert not (lamps / "porch.on").exists()
    assert json.loads((agent.state_dir / "toy-journal.json").read_text())["entries"] == {}


def test_a_bad_plugin_reference_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "vigil.yml"
    config.write_text("global: {router_id: x}\n")
    out = run(
        [bin_path("vigild"), "--check", "--config", str(config)],
        {"VIGIL_SUBSYSTEMS": "no.such.module:SPEC"},
    )
    assert out.returncode != 0
    assert "subsystem 'no.such.module:SPEC' cannot be loaded" in out.stdout + out.stderr
