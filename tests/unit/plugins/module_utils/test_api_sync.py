# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_api.py must behave exactly like the agent's own vigil.client.

The collection cannot import the agent package on managed hosts, so it carries a copy
generated from the agent's (``make sync-client``; agent/tests/test_client_source.py checks
it byte for byte). These tests drive both against the same real vigild and compare every
answer, error and message.
"""

from __future__ import annotations

import inspect
import os
import socket
import tempfile
import typing as t

import pytest
from ansible_collections.vigil.ha.plugins.module_utils import _api

client_mod = pytest.importorskip("vigil.client", reason="never skipped when vigil is installed")

VOLATILE = {"uptime_s", "last_event_seq", "time", "elapsed_s"}


def scrub(value: t.Any) -> t.Any:
    """Drop the keys that change between two calls a few milliseconds apart."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def both(agent_socket: str) -> tuple[t.Any, t.Any]:
    return client_mod.ApiClient(agent_socket, timeout=5.0), _api.ApiClient(agent_socket, 5.0)


def test_public_names_and_signatures_match() -> None:
    assert sorted(_api.__all__) == sorted(client_mod.__all__)
    assert _api.DEFAULT_SOCKET == client_mod.DEFAULT_SOCKET
    for name in client_mod.__all__:
        ours, theirs = getattr(_api, name), getattr(client_mod, name)
        if not callable(theirs):
            continue
        members = [name]
        if inspect.isclass(theirs):
            members = [
                f"{name}.{m}" for m, v in vars(theirs).items() if callable(v) and m[0] != "_"
            ] + [f"{name}.__init__"]
        for dotted in members:
            attr = dotted.split(".")[1:]
            a, b = ours, theirs
            for part in attr:
                a, b = getattr(a, part), getattr(b, part)
            sig_a, sig_b = inspect.signature(a), inspect.signature(b)
            assert [(p.name, p.kind, p.default) for p in sig_a.parameters.values()] == [
                (p.name, p.kind, p.default) for p in sig_b.parameters.values()
            ], dotted


REQUESTS: list[tuple[str, str, dict[str, t.Any] | None]] = [
    ("GET", "/v1/health", None),
    ("GET", "/v1/status", None),
    ("GET", "/v1/config", None),
    ("GET", "/v1/vrrp/instances", None),
    ("GET", "/v1/vrrp/instances/VI_9", None),
    ("GET", "/v1/no-such-thing", None),
    ("GET", "/v1/events?sinse=1", None),
    ("POST", "/v1/health", None),
    ("POST", "/v1/reload", None),
    ("POST", "/v1/reload", {"path": "/etc/passwd"}),
    ("POST", "/v1/vrrp/maintenance", {}),
    ("POST", "/v1/vrrp/maintenance", {"enabled": False, "instance": "VI_9"}),
    ("GET", "/metrics", None),
]


def test_same_answers_from_a_real_agent(agent: t.Any) -> None:
    """One agent for every request (ansible-test forks per test: starts are per test)."""
    theirs, ours = both(agent.socket)
    statuses = set()
    for method, path, body in REQUESTS:
        what = f"{method} {path} {body}"
        status_b, body_b = theirs.request(method, path, body)
        status_a, body_a = ours.request(method, path, body)
        statuses.add(status_a)
        assert status_a == status_b, what
        assert type(body_a) is type(body_b), what
        if isinstance(body_b, str):  # /metrics: counters move; compare the metric names
            names_a = sorted({ln.split("{")[0].split(" ")[0] for ln in body_a.splitlines()})
            names_b = sorted({ln.split("{")[0].split(" ")[0] for ln in body_b.splitlines()})
            assert names_a == names_b, what
            assert "vigil_up 1.0" in body_a
        else:
            assert scrub(body_a) == scrub(body_b), what
        if status_b >= 400:
            assert _api.error_message(status_a, body_a) == client_mod.error_message(
                status_b, body_b
            ), what
    assert statuses == {200, 400, 404, 405}


def test_same_event_stream(agent: t.Any) -> None:
    theirs, ours = both(agent.socket)
    first_b = next(iter(theirs.stream("/v1/events?follow=1&since=0", timeout=5.0)))
    first_a = next(iter(ours.stream("/v1/events?follow=1&since=0", timeout=5.0)))
    assert first_a == first_b
    assert first_a["event"] == "agent_started"
    err_b = err_a = None
    with pytest.raises(client_mod.ApiError) as exc_b:
        next(iter(theirs.stream("/v1/events?follow=maybe", timeout=5.0)))
    err_b = exc_b.value
    with pytest.raises(_api.ApiError) as exc_a:
        next(iter(ours.stream("/v1/events?follow=maybe", timeout=5.0)))
    err_a = exc_a.value
    assert (err_a.status, err_a.body, str(err_a)) == (err_b.status, err_b.body, str(err_b))
    assert err_a.status == 400


def unreachable_messages(path: str) -> tuple[str, str]:
    with pytest.raises(client_mod.ApiUnreachable) as exc_b:
        client_mod.ApiClient(path, timeout=2.0).get("/v1/health")
    with pytest.raises(_api.ApiUnreachable) as exc_a:
        _api.ApiClient(path, timeout=2.0).get("/v1/health")
    return exc_a.value.message, exc_b.value.message


def test_same_error_for_a_missing_socket() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        ours, theirs = unreachable_messages(os.path.join(d, "none.sock"))
    assert ours == theirs
    assert "No such file or directory" in ours and "none.sock" in ours


def test_same_error_for_a_socket_nobody_listens_on() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        path = os.path.join(d, "dead.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.close()  # the file stays, nobody listens: connection refused
        ours, theirs = unreachable_messages(path)
    assert ours == theirs
    assert "Connection refused" in ours


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"error": {"code": 404, "message": "no such endpoint"}}),
        (
            422,
            {
                "error": {
                    "code": 422,
                    "message": "config is invalid",
                    "issues": [
                        {"path": "vrrp_instances[0].vrid", "message": "too big", "line": 6,
                         "file": "/etc/vigil/vigil.yml"},
                        {"path": "global.x", "message": "unknown key"},
                        "a bare string issue",
                    ],
                }
            },
        ),
        (500, "plain text"),
        (409, {"something": "else"}),
    ],
)  # fmt: skip
def test_same_error_messages(status: int, body: t.Any) -> None:
    assert _api.error_message(status, body) == client_mod.error_message(status, body)
