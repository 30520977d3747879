"""Probe logic that needs no root: the HTTP response parser and request, keepalived's
strtol and track_file rule, the UDP reply match, MISC exit codes, hostname matching, and
the engine end to end against servers on loopback (TCP and HTTP only: no namespaces)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from vigil.ipvs.checkers import (
    CheckEngine,
    FileCheck,
    HttpCheck,
    HttpUrl,
    RealServer,
    ServerChange,
    TcpCheck,
    UdpCheck,
)
from vigil.ipvs.checkers.http import HttpProbe, ResponseParser, TlsContexts, match_hostname
from vigil.ipvs.checkers.local import file_result, misc_result, read_number, strtol
from vigil.ipvs.checkers.net import UdpProbe
from vigil.track.runner import RunResult

# ---------------------------------------------------------------------------- HTTP


def parse(chunks: list[bytes], want_body: bool = True, max_body: int = 1 << 20) -> Any:
    body = bytearray()
    p = ResponseParser(want_body, max_body, body.extend)
    for c in chunks:
        p.feed(c)
    if not p.done:
        p.eof()
    return p, bytes(body)


def test_parser_content_length_split_anywhere() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"
    for cut in range(1, len(raw)):
        p, body = parse([raw[:cut], raw[cut:]])
        assert (p.status, body, p.error) == (200, b"hello", None)


def test_parser_chunked_and_to_eof() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    for cut in range(1, len(raw), 3):
        p, body = parse([raw[:cut], raw[cut:]])
        assert (p.status, body, p.error) == (200, b"hello world", None)
    p, body = parse([b"HTTP/1.0 503 X\r\n\r\npartial", b" body"])
    assert (p.status, body, p.error) == (503, b"partial body", None)


def test_parser_stops_at_headers_without_body_need_and_caps_body() -> None:
    p, body = parse([b"HTTP/1.0 204 No\r\nContent-Length: 99\r\n\r\n"], want_body=False)
    assert p.done and p.status == 204 and body == b""
    p, body = parse([b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 100], max_body=10)
    assert p.done and body == b"x" * 10


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "after 5 body bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"", "before the response headers"),
    ],
)
def test_parser_errors(raw: bytes, error: str) -> None:
    p, _ = parse([raw])
    assert p.error is not None and error in p.error


def test_request_host_header_and_protocol() -> None:
    server = RealServer(address="fd00::2", port=8080)
    probe = HttpProbe(HttpCheck(), server, TlsContexts())
    assert probe.urls[0].request == (
        b"GET / HTTP/1.0\r\nHost: [fd00::2]:8080\r\nUser-Agent: vigil-checker\r\n\r\n"
    )
    check = HttpCheck(
        urls=(HttpUrl(path="/a", virtualhost="a.test"), HttpUrl(path="/b")),
        virtualhost="vs.test",
        http_protocol="1.1",
        tls=True,
        enable_sni=True,
    )
    probe = HttpProbe(check, RealServer(address="10.0.0.2", port=443), TlsContexts())
    a, b = probe.urls
    assert a.request.startswith(b"GET /a HTTP/1.1\r\nHost: a.test\r\n")
    assert a.request.endswith(b"Connection: close\r\n\r\n")
    assert (a.sni, b.sni) == ("a.test", "vs.test")
    assert b.request.startswith(b"GET /b HTTP/1.1\r\nHost: vs.test\r\n")


def test_sni_off_with_verify_checks_the_name_ourselves() -> None:
    check = HttpCheck(tls=True, tls_verify=True, virtualhost="web.test")
    probe = HttpProbe(check, RealServer(address="10.0.0.2", port=443), TlsContexts())
    assert probe.urls[0].sni is None and probe.urls[0].verify_name == "web.test"
    assert TlsContexts.key(check) == (True, None, False)


def test_match_hostname() -> None:
    cert = {
        "subject": ((("commonName", "cn.test"),),),
        "subjectAltName": (("DNS", "*.web.test"), ("DNS", "web.test"), ("IP Address", "10.0.0.2")),
    }
    assert match_hostname(cert, "web.test")
    assert match_hostname(cert, "a.web.test")
    assert not match_hostname(cert, "a.b.web.test")
    assert not match_hostname(cert, "cn.test")  # SANs present: CN ignored
    assert match_hostname(cert, "10.0.0.2") and not match_hostname(cert, "10.0.0.3")
    assert match_hostname({"subject": ((("commonName", "cn.test"),),)}, "cn.test")


# ---------------------------------------------------------------------------- FILE / MISC


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"42\n", 42),
        (b"  -7 apples", -7),
        (b"0x1F", 31),
        (b"010", 8),
        (b"09", 0),  # octal stops at 9, like strtol
        (b"+3", 3),
        (b"", 0),
        (b"abc", 0),
    ],
)
def test_strtol_base_zero(text: bytes, value: int) -> None:
    assert strtol(text) == value


def test_read_number_missing_and_out_of_range(tmp_path: Any) -> None:
    assert read_number(str(tmp_path / "nope")) == 0
    f = tmp_path / "v"
    f.write_text("99999999999")
    assert read_number(str(f)) is None
    f.write_text("2147483648")  # keepalived accepts INT32_MAX + 1
    assert read_number(str(f)) == 2147483648


def test_file_rule_weight_zero_is_a_status() -> None:
    status = FileCheck(path="/x", weight=0)
    assert file_result(0, status).ok and not file_result(3, status).ok
    rev = FileCheck(path="/x", weight=0, reverse=True)
    assert not file_result(0, rev).ok and file_result(3, rev).ok


def test_file_rule_weight_multiplies_and_faults_at_int_min() -> None:
    w = FileCheck(path="/x", weight=3)
    assert file_result(5, w).weight_offset == 15
    assert file_result(-5, FileCheck(path="/x", weight=3, reverse=True)).weight_offset == 15
    assert not file_result(-(2**31), FileCheck(path="/x", weight=1)).ok
    assert file_result(2**40, w).weight_offset == 2**31 - 1


def test_misc_exit_codes() -> None:
    def run(status: int) -> RunResult:
        return RunResult(ok=status == 0, duration=0.01, status=status)

    assert misc_result(run(0), dynamic=True).ok and misc_result(run(0), True).weight is None
    assert not misc_result(run(1), dynamic=True).ok
    assert misc_result(run(12), dynamic=True).weight == 10
    assert misc_result(run(255), dynamic=True).weight == 253
    assert not misc_result(run(12), dynamic=False).ok
    timed_out = RunResult(ok=False, duration=1.0, timed_out=True)
    assert "process group was killed" in (misc_result(timed_out, True).error or "")


# ---------------------------------------------------------------------------- UDP


def test_udp_reply_judge() -> None:
    check = UdpCheck(
        require_reply=True,
        reply_pattern=bytes([1, 2, 3]),
        reply_mask=bytes([0xFF, 0x0F, 0xFF]),
        min_reply_length=2,
        max_reply_length=8,
    )
    probe = UdpProbe(check, RealServer(address="10.0.0.2", port=7))
    assert probe.judge(bytes([1, 0xF2, 3, 9])).ok
    assert probe.judge(bytes([1, 2])).ok  # compared over the shorter length
    assert "at byte 2" in (probe.judge(bytes([1, 2, 4])).error or "")
    assert "outside 2..8" in (probe.judge(bytes([1])).error or "")


# ---------------------------------------------------------------------------- engine


async def _http_server(codes: dict[int, int]) -> tuple[list[asyncio.Server], list[int]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        try:
            await reader.readuntil(b"\r\n\r\n")
            code = codes.get(port, 200)
            writer.write(f"HTTP/1.0 {code} X\r\nContent-Length: 2\r\n\r\nok".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    servers, ports = [], []
    for _ in range(2):
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        ports.append(srv.sockets[0].getsockname()[1])
    return servers, ports


async def _wait(pred: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not pred():
            await asyncio.sleep(0.02)


async def test_engine_on_loopback_reports_changes_and_honours_concurrency() -> None:
    codes: dict[int, int] = {}
    servers, (p1, p2) = await _http_server(codes)
    fast: dict[str, Any] = {"delay_loop": 0.1, "warmup": 0.05, "retry": 1}
    fast["delay_before_retry"] = 0.05
    md5 = hashlib.md5(b"ok").hexdigest()
    rs = [
        RealServer(address="127.0.0.1", port=p1, checks=(TcpCheck(**fast),)),
        RealServer(
            address="127.0.0.1",
            port=p1,
            name="web",
            checks=(HttpCheck(urls=(HttpUrl(digest=md5), HttpUrl(path="/x")), **fast),),
        ),
        RealServer(address="127.0.0.1", port=p2, name="five", checks=(HttpCheck(**fast),)),
        RealServer(address="127.0.0.1", port=1, name="closed", checks=(TcpCheck(**fast),)),
    ]
    changes: list[ServerChange] = []
    engine = CheckEngine(rs, concurrency=2, on_change=changes.append)
    await engine.start()
    try:
        assert {c.server for c in changes} == {r.label for r in rs}  # the start report
        await _wait(lambda: not engine.health("closed").alive)
        codes[p2] = 500
        await _wait(lambda: not engine.health("five").alive)
        await _wait(lambda: engine.health("web").checks[0].counters.runs >= 3)
        assert engine.health("web").alive
        codes[p2] = 200
        await _wait(lambda: engine.health("five").alive)
        assert engine.stats.max_running <= 2
        assert engine.stats.probe_errors == 0
        flips = [(c.server, c.alive) for c in changes if c.was_alive is not None]
        assert ("five", False) in flips and ("five", True) in flips
        assert ("closed", False) in flips
        await engine.remove_server("five")
        assert "five" not in engine.servers()
        await engine.add_server(
            RealServer(address="127.0.0.1", port=p2, name="back", checks=(TcpCheck(**fast),))
        )
        await _wait(lambda: engine.health("back").checks[0].counters.runs >= 1)
    finally:
        await engine.stop()
        for srv in servers:
            srv.close()
    assert engine.stats.running == 0


async def test_the_start_report_logs_a_server_starting_alive_at_debug_and_one_dead_at_info(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten thousand real servers starting alive would be ten thousand INFO lines (and a
    good part of the start-up); one that starts dead is news."""
    up, down = tmp_path / "up", tmp_path / "down"
    up.write_text("0\n")
    down.write_text("1\n")
    rs = [
        RealServer(
            address="10.0.0.1", port=80, name="up", checks=(FileCheck(path=str(up), weight=0),)
        ),
        RealServer(
            address="10.0.0.2", port=80, name="down", checks=(FileCheck(path=str(down), weight=0),)
        ),
    ]
    engine = CheckEngine(rs)
    with caplog.at_level("DEBUG", logger="vigil.ipvs.checkers"):
        await engine.start()
    try:
        levels = {
            r.getMessage().split("]")[0].lstrip("["): r.levelname
            for r in caplog.records
            if "starts" in r.getMessage()
        }
        assert levels == {"up": "DEBUG", "down": "INFO"}, levels
    finally:
        await engine.stop()
