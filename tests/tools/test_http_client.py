"""tests/lab/http_client.py against a real HTTP server on loopback: ok and failed requests
are recorded as JSON lines with their start on the test's clock."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.http_client import get, read_records
from tests.lab.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/":
            self.send_error(404)
            return
        body = b"web1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_get_returns_the_body_and_fails_on_refusal(server: int) -> None:
    assert get("127.0.0.1", server, 2.0) == "web1"
    with pytest.raises(OSError):
        get("127.0.0.1", _closed_port(), 2.0)


def test_records_every_request_with_its_start(server: int, tmp_path: Path) -> None:
    out = tmp_path / "client.jsonl"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.lab.http_client", "--target", "127.0.0.1",
         "--port", str(server), "--interval", "0.02", "--max-duration", "30", "--out", str(out)],
        cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        wait_for(lambda: len(read_records(str(out))) >= 5, timeout=20, what="5 records")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    records = read_records(str(out))
    assert all(r["ok"] and r["body"] == "web1" for r in records), records
    assert all(started <= r["t"] <= time.monotonic() for r in records), records
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)


def test_a_refused_request_is_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "client.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "tests.lab.http_client", "--target", "127.0.0.1",
         "--port", str(_closed_port()), "--interval", "0.05", "--max-duration", "0.3",
         "--out", str(out)],
        cwd=REPO_ROOT, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 0
    records = read_records(str(out))
    assert records and not any(r["ok"] for r in records), records
    assert all(r["error"] for r in records), records
