"""The API served on a real Unix socket by the real app, exercised with the real client."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from test_api_harness import BAD_CONFIG, BASE_CONFIG, AgentThread, wait_for

from vigil.api.app import CORE_ROUTES, build_app, load_openapi
from vigil.config import SectionInput
from vigil.subsystem import Subsystem, SubsystemContext, SubsystemSpec


@pytest.fixture
def running() -> Iterator[AgentThread]:
    with AgentThread(heartbeat=0.2) as at:
        yield at


def raw_request(path: str, data: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on the API socket; parse the status line, headers and body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


# --------------------------------------------------------------------------- core endpoints


def test_health_ready(running: AgentThread) -> None:
    status, body = running.client.get("/v1/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["live"] is True and body["ready"] is True
    assert body["router_id"] == "unit1"
    assert body["pid"] == os.getpid()
    assert isinstance(body["uptime_s"], float)
    assert body["version"]


def test_health_503_while_starting() -> None:
    with AgentThread(start_agent=False) as at:
        status, body = at.client.get("/v1/health")
        assert status == 503
        assert body["ready"] is False and body["live"] is True
        assert body["status"] == "starting"
        at.run(at.agent.start())
        assert at.client.get("/v1/health")[0] == 200


def test_status_has_the_agent_section(running: AgentThread) -> None:
    status, body = running.client.get("/v1/status")
    assert status == 200
    assert body["agent"]["router_id"] == "unit1"
    assert body["agent"]["phase"] == "running"
    assert body["agent"]["config_source"] == str(running.config_path)


def test_status_lists_configured_instances_as_init() -> None:
    """VRRP built but not started (no root here): its section lists what is configured."""
    from vigil.subsystems import specs

    with AgentThread(factories=specs(), start_agent=False) as at:
        status, body = at.client.get("/v1/status")
    assert status == 200
    names = [i["name"] for i in body["vrrp"]["instances"]]
    assert names == ["VI_1", "VI_6"]
    vi1 = body["vrrp"]["instances"][0]
    assert vi1["state"] == "INIT"
    assert vi1["vrid"] == 51 and vi1["priority"] == 150
    assert vi1["vips"] == [{"address": "10.99.0.100/24", "dev": "eth0", "present": False}]
    assert vi1["master_address"] is None and vi1["family"] == 4


def test_config_is_redacted_with_source(running: AgentThread) -> None:
    status, body = running.client.get("/v1/config")
    assert status == 200
    assert body["source"] == str(running.config_path)
    assert isinstance(body["loaded_at"], float)
    text = json.dumps(body)
    assert "s3cret" not in text
    inst = body["config"]["vrrp_instances"][0]
    assert inst["authentication"]["password"] == "<redacted>"


def test_openapi_served_and_valid_json(running: AgentThread) -> None:
    status, body = running.client.get("/v1/openapi.json")
    assert status == 200
    assert body["openapi"].startswith("3.1")
    assert "/v1/health" in body["paths"]


def test_metrics(running: AgentThread) -> None:
    status, text = running.client.get("/metrics")
    assert status == 200
    assert 'vigil_build_info{python="' in text
    assert "vigil_up 1.0" in text
    assert 'vigil_events_total{kind="agent_started",subsystem="agent"} 1.0' in text
    assert 'vigil_config_reloads_total{result="success"} 0.0' in text
    assert "vigil_config_last_reload_timestamp_seconds " in text
    assert "process_resident_memory_bytes" in text


# --------------------------------------------------------------------------- errors


def test_unknown_path_is_json_404(running: AgentThread) -> None:
    status, body = running.client.get("/v1/nope")
    assert status == 404
    assert body["error"]["code"] == 404
    assert "/v1/nope" in body["error"]["message"]


def test_wrong_method_is_json_405(running: AgentThread) -> None:
    status, body = running.client.post("/v1/health")
    assert status == 405
    assert "POST" in body["error"]["message"] and "GET" in body["error"]["message"]
    code, headers, _ = raw_request(
        running.socket_path, b"GET /v1/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert code == 405 and headers["allow"] == "POST"


def test_unknown_query_parameter_is_400(running: AgentThread) -> None:
    status, body = running.client.get("/v1/status?verbose=1")
    assert status == 400
    assert body["error"]["field"] == "query.verbose"


@pytest.mark.parametrize(
    "payload",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /v1/health HTTP/9.9.9\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ],
    ids=["garbage", "bad-version", "bad-content-length", "tls-hello"],
)
def test_malformed_http_gets_json_400(running: AgentThread, payload: bytes) -> None:
    code, headers, body = raw_request(running.socket_path, payload)
    assert code == 400
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["error"]["code"] == 400
    assert doc["error"]["message"].startswith("malformed HTTP request:")
    # and the agent still serves
    assert running.client.get("/v1/health")[0] == 200


# --------------------------------------------------------------------------- reload


def test_reload_unchanged(running: AgentThread) -> None:
    status, body = running.client.post("/v1/reload")
    assert status == 200
    assert body["changed"] is False
    assert body["diff"]["vrrp"]["unchanged"] == ["VI_1", "VI_6"]


def test_reload_changed_reports_diff_and_event(running: AgentThread) -> None:
    running.config_path.write_text(BASE_CONFIG.replace("priority: 150", "priority: 120"))
    status, body = running.client.post("/v1/reload", {})
    assert status == 200
    assert body["changed"] is True
    assert body["diff"]["vrrp"]["changed"] == ["VI_1"]
    config = running.client.get("/v1/config")[1]["config"]
    assert config["vrrp_instances"][0]["priority"] == 120
    events = running.client.get("/v1/events")[1]
    assert events[-1]["kind"] == "config_reloaded"
    assert "VI_1" in events[-1]["message"]
    _, metrics = running.client.get("/metrics")
    assert 'vigil_config_reloads_total{result="success"} 1.0' in metrics


def test_reload_invalid_keeps_running_config(running: AgentThread) -> None:
    running.config_path.write_text(BAD_CONFIG)
    status, body = running.client.post("/v1/reload")
    assert status == 422
    err = body["error"]
    assert err["code"] == 422
    assert err["message"] == "config is invalid; the running config is unchanged"
    paths = {i["path"] for i in err["issues"]}
    assert "vrrp_instances[0].vrid" in paths
    assert any("prioirty" in p for p in paths)
    # the old config is still the running one
    cfg = running.client.get("/v1/config")[1]["config"]
    assert [i["name"] for i in cfg["vrrp_instances"]] == ["VI_1", "VI_6"]
    last = running.client.get("/v1/events")[1][-1]
    assert last["kind"] == "reload_failed"
    assert last["data"]["issues"]
    _, metrics = running.client.get("/metrics")
    assert 'vigil_config_reloads_total{result="failure"} 1.0' in metrics


def test_reload_rejects_body_fields(running: AgentThread) -> None:
    status, body = running.client.post("/v1/reload", {"path": "/etc/other.yml"})
    assert status == 400
    assert body["error"]["field"] == "body.path"
    assert str(running.config_path) in body["error"]["message"]


def test_reload_rejects_non_json_body(running: AgentThread) -> None:
    code, _, raw = raw_request(
        running.socket_path,
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{oops",
    )
    assert code == 400
    assert json.loads(raw)["error"]["field"] == "body"


# --------------------------------------------------------------------------- events


def test_events_list_and_since(running: AgentThread) -> None:
    for n in range(3):
        running.publish("test", "VI_1", f"event {n}", n=n)
    status, body = running.client.get("/v1/events")
    assert status == 200
    assert [e["seq"] for e in body] == [1, 2, 3, 4]
    assert body[1] == {
        "seq": 2,
        "time": body[1]["time"],
        "subsystem": "agent",
        "kind": "test",
        "instance": "VI_1",
        "message": "event 0",
        "data": {"n": 0},
    }
    assert [e["seq"] for e in running.client.get("/v1/events?since=2")[1]] == [3, 4]
    assert running.client.get("/v1/events?since=99")[1] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=abc", "query.since"),
        ("since=-1", "query.since"),
        ("follow=maybe", "query.follow"),
        ("follow=", "query.follow"),  # was read as false (schemathesis: not in the enum)
        # A digit to str.isdigit() but not to int(): was a 500 (found with schemathesis).
        ("since=%C2%B2", "query.since"),
    ],
)
def test_events_bad_query(running: AgentThread, query: str, field: str) -> None:
    status, body = running.client.get(f"/v1/events?{query}")
    assert status == 400
    assert body["error"]["field"] == field
    assert field in body["error"]["message"]


def test_sse_replays_since_then_streams_live(running: AgentThread) -> None:
    running.publish("test", "VI_1", "before")  # seq 2
    stream = running.client.stream("/v1/events?follow=1&since=1", timeout=10)
    first = next(stream)
    assert first["id"] == 2 and first["event"] == "test"
    assert first["data"]["message"] == "before"
    running.publish("state_change", "VI_1", "BACKUP -> MASTER: test")
    live = next(stream)
    assert live["id"] == 3 and live["event"] == "state_change"
    assert live["data"]["instance"] == "VI_1"
    stream.close()


@pytest.mark.parametrize("query", ["", "?since=1", "?follow=1&since=1"])
def test_bad_last_event_id_is_400_whenever_sent(running: AgentThread, query: str) -> None:
    """schemathesis: an invalid Last-Event-ID was accepted when `since` made it unused."""
    request = (
        f"GET /v1/events{query} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: x1\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status, _headers, body = raw_request(running.socket_path, request)
    assert status == 400
    assert json.loads(body)["error"]["field"] == "header.Last-Event-ID"


def test_sse_last_event_id_and_accept_header(running: AgentThread) -> None:
    for n in range(3):
        running.publish("test", None, f"e{n}")  # seq 2..4
    stream = running.client.stream("/v1/events", last_event_id=3, timeout=10)
    assert next(stream)["id"] == 4
    stream.close()


def test_sse_heartbeat_comment(running: AgentThread) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(running.socket_path)
        s.sendall(b"GET /v1/events?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""

        def got_heartbeat() -> bool:
            nonlocal buf
            buf += s.recv(4096)
            return b": heartbeat\n\n" in buf

        wait_for(got_heartbeat, timeout=10, what="an SSE heartbeat comment")
        assert b"content-type: text/event-stream" in buf.lower()


def test_sse_stream_ends_on_agent_stop() -> None:
    at = AgentThread()
    with at:
        stream = at.client.stream("/v1/events?follow=1&since=0", timeout=10)
        assert next(stream)["event"] == "agent_started"
        at.run(at.agent.stop())
        kinds = [m["event"] for m in stream]  # ends when the server closes the stream
        assert kinds == ["agent_stopping"]


# --------------------------------------------------------------------------- subsystems


@dataclass(frozen=True)
class SampleConfig:
    things: int = 0


@dataclass(frozen=True)
class SampleDiff:
    before: int
    after: int

    @property
    def empty(self) -> bool:
        return self.before == self.after

    def to_dict(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after}

    def summary(self) -> str:
        return f"things {self.before} -> {self.after}"


class SampleSection:
    """A config section of its own: ``sample: {things: N}``."""

    name = "sample"
    keys = ("sample",)
    global_fields: dict[Any, Any] = {}

    def validate(self, inp: SectionInput) -> int:
        raw = inp.data.get("sample") or {}
        things = raw.get("things", 0) if isinstance(raw, dict) else None
        if not isinstance(things, int) or things < 0:
            inp.error(["sample", "things"], "must be a non-negative integer")
            return 0
        return things

    def build(self, inp: SectionInput, validated: int) -> SampleConfig:
        return SampleConfig(validated)

    def to_dict(self, model: SampleConfig, *, redact: bool = True) -> dict[str, Any]:
        return {"sample": {"things": model.things}}

    def diff(self, old: SampleConfig, new: SampleConfig) -> SampleDiff:
        return SampleDiff(old.things, new.things)

    def summary(self, model: SampleConfig) -> tuple[int, str]:
        return model.things, "sample things"

    def check_cluster(self, models: Any, context: Any = None) -> list[Any]:
        return []


class SampleSubsystem:
    """A small real implementation of the Subsystem protocol for these tests."""

    name = "sample"

    def __init__(self, ctx: SubsystemContext) -> None:
        self.ctx = ctx
        self.calls: list[str] = []

    async def start(self, section: SampleConfig) -> None:
        self.calls.append(f"start:{section.things}")
        self.ctx.events.publish("state_change", "S_1", "INIT -> READY: started")

    async def apply(self, section: SampleConfig, diff: SampleDiff) -> None:
        self.calls.append(f"apply:{diff.summary()}")

    async def stop(self) -> None:
        self.calls.append("stop")

    def status(self) -> dict[str, Any]:
        return {"sockets": 1, "things": [{"name": "S_1", "state": "READY"}]}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/sample", self._get), web.get("/v1/sample/boom", self._boom)]

    def openapi_paths(self) -> dict[str, Any]:
        ok = {"responses": {"200": {"description": "ok"}}}
        return {"/v1/sample": {"get": ok}, "/v1/sample/boom": {"get": ok}}

    def collect_metrics(self) -> Iterable[Metric]:
        g = GaugeMetricFamily("vigil_sample_things", "things the sample subsystem has")
        g.add_metric([], 7)
        yield g

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.calls})

    async def _boom(self, request: web.Request) -> web.Response:
        raise RuntimeError("sample handler bug")


SAMPLE = SubsystemSpec(name="sample", section=SampleSection(), factory=SampleSubsystem)


def test_subsystem_protocol_is_satisfied() -> None:
    with AgentThread(factories=[SAMPLE]) as at:
        assert isinstance(at.agent.subsystems[0], Subsystem)


def test_subsystem_routes_status_metrics_and_lifecycle() -> None:
    with AgentThread(BASE_CONFIG + "sample: {things: 2}\n", factories=[SAMPLE]) as at:
        sub = at.agent.subsystems[0]
        assert isinstance(sub, SampleSubsystem)
        status, body = at.client.get("/v1/sample")
        assert status == 200 and body["calls"] == ["start:2"]
        st = at.client.get("/v1/status")[1]
        assert st["sample"] == {"sockets": 1, "things": [{"name": "S_1", "state": "READY"}]}
        assert st["agent"]["subsystems"] == ["sample"]
        events = at.client.get("/v1/events")[1]
        assert [e["subsystem"] for e in events if e["kind"] == "state_change"] == ["sample"]
        assert "vigil_sample_things 7.0" in at.client.get("/metrics")[1]
        assert "/v1/sample" in at.client.get("/v1/openapi.json")[1]["paths"]
        at.config_path.write_text(BASE_CONFIG.replace("priority: 100", "priority: 90"))
        assert at.client.post("/v1/reload")[0] == 200
        assert sub.calls == ["start:2", "apply:things 2 -> 0"]
        at.run(at.agent.stop())
        assert sub.calls[-1] == "stop"


def test_handler_exception_is_json_500_and_agent_survives() -> None:
    with AgentThread(factories=[SAMPLE]) as at:
        status, body = at.client.get("/v1/sample/boom")
        assert status == 500
        assert "sample handler bug" in body["error"]["message"]
        assert at.client.get("/v1/health")[0] == 200


# --------------------------------------------------------------------------- OpenAPI coverage


def _served_operations(app: web.Application) -> set[tuple[str, str]]:
    ops = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method not in ("*", "HEAD"):  # HEAD comes with web.get()
            ops.add((route.method.lower(), path))
    return ops


def _documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "delete", "patch"}
    return {(m, p) for p, item in doc["paths"].items() for m in item if m in methods}


def test_openapi_documents_exactly_the_served_routes() -> None:
    with AgentThread(start_agent=False) as at:
        app = build_app(at.agent)
        served = _served_operations(app)
        documented = _documented_operations(load_openapi())
        assert served == documented, (
            f"undocumented: {sorted(served - documented)}; "
            f"documented but not served: {sorted(documented - served)}"
        )
        assert {(m.lower(), p) for m, p, _ in CORE_ROUTES} == served


def test_openapi_covers_subsystem_routes() -> None:
    with AgentThread(factories=[SAMPLE]) as at:
        served = _served_operations(at.server.app)
        documented = _documented_operations(at.client.get("/v1/openapi.json")[1])
        assert served == documented


def test_docs_copy_of_openapi_is_identical() -> None:
    from importlib import resources
    from pathlib import Path

    packaged = resources.files("vigil.api").joinpath("openapi.json").read_text()
    docs = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    assert docs.read_text() == packaged, "run: cp agent/src/vigil/api/openapi.json docs/"


def test_openapi_covers_the_subsystems_vigild_runs() -> None:
    """The real subsystems (VRRP...) are built but never started: no socket, no netlink."""
    from vigil.subsystems import specs

    with AgentThread(factories=specs(), start_agent=False) as at:
        served = _served_operations(at.server.app)
        documented = _documented_operations(at.client.get("/v1/openapi.json")[1])
        assert served == documented, (
            f"undocumented: {sorted(served - documented)}; "
            f"documented but not served: {sorted(documented - served)}"
        )
        assert len(served) > len(CORE_ROUTES)


def test_oversized_body_is_json_413(running: AgentThread) -> None:
    body = b"{" + b" " * 100_000 + b"}"
    code, _, raw = raw_request(
        running.socket_path,
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert code == 413
    assert json.loads(raw)["error"]["code"] == 413


def test_overlong_header_line_is_json_400(running: AgentThread) -> None:
    code, _, raw = raw_request(
        running.socket_path,
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    )
    assert code in (400, 431)
    assert json.loads(raw)["error"]["message"].startswith("malformed HTTP request:")
