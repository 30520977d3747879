"""HTTP_GET and SSL_GET: one GET per URL over a raw asyncio protocol.

Why not aiohttp's client here: a health check needs per-checker source address, mark
and device on the socket, SNI on or off independently of the Host header, certificate
checks on or off, and nothing else (no pooling, cookies, redirects or decompression).
A small :class:`asyncio.Protocol` over our own connected socket gives exactly that, and
costs a fraction of the CPU per request (see ``bench/checkers.py``).

TLS runs in asyncio's memory-BIO SSL layer, so handshakes never block the loop.
Contexts are built once per (verify, CA file) and cached: loading a CA store reads files,
so :meth:`TlsContexts.prepare` builds them in a thread before the engine starts.

A response is judged as keepalived does: the status code against the URL's codes, then
the MD5 of the body against ``digest``, then ``regex`` (or ``regex_no_match``). When the
URL needs neither digest nor regex the check ends at the status line.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .core import CheckResult
from .fast import FastHttpRun
from .httpparse import ResponseParser
from .settings import HttpCheck, HttpUrl, RealServer
from .sockets import Endpoint, close, connect, fail

__all__ = ["HttpProbe", "ResponseParser", "TlsContexts", "match_hostname"]


class TlsContexts:
    """SSL contexts shared by all checkers, one per (verify, ca_file, check_hostname)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[bool, str | None, bool], ssl.SSLContext] = {}

    @staticmethod
    def build(verify: bool, ca_file: str | None, check_hostname: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = check_hostname
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
        else:
            ctx.load_default_certs()
        return ctx

    @staticmethod
    def key(check: HttpCheck) -> tuple[bool, str | None, bool]:
        # OpenSSL checks the name only when it is also sent as SNI; else we check it.
        return (check.tls_verify, check.ca_file, check.tls_verify and check.enable_sni)

    async def prepare(self, checks: list[HttpCheck]) -> None:
        """Build the contexts these checks need, off the loop (CA stores are files)."""
        loop = asyncio.get_running_loop()
        for check in checks:
            k = self.key(check)
            if check.tls and k not in self._cache:
                self._cache[k] = await loop.run_in_executor(None, self.build, *k)

    def get(self, check: HttpCheck) -> ssl.SSLContext | None:
        """The context for ``check``, or None if :meth:`prepare` has not built it."""
        return self._cache.get(self.key(check))


def _dns_match(pattern: str, name: str) -> bool:
    """RFC 6125 matching with a wildcard only as the whole left-most label."""
    p, n = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if p.startswith("*."):
        head, _, tail = n.partition(".")
        return bool(head) and tail == p[2:]
    return p == n


def match_hostname(cert: dict[str, Any], name: str) -> bool:
    """Whether a verified peer certificate (``getpeercert()``) is for ``name``."""
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    sans = cert.get("subjectAltName", ())
    if ip is not None:
        return any(
            kind == "IP Address" and ipaddress.ip_address(value.strip()) == ip
            for kind, value in sans
        )
    dns = [value for kind, value in sans if kind == "DNS"]
    if dns:
        return any(_dns_match(v, name) for v in dns)
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and _dns_match(value, name):
                return True
    return False


class _Reader(asyncio.Protocol):
    """Feeds a :class:`ResponseParser` and resolves ``finished`` when it is done."""

    def __init__(self, parser: ResponseParser, finished: asyncio.Future[None]) -> None:
        self.parser = parser
        self.finished = finished

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if self.parser.done and not self.finished.done():
            self.finished.set_result(None)

    def eof_received(self) -> bool | None:
        self.parser.eof()
        if not self.finished.done():
            self.finished.set_result(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.parser.done:
            if exc is not None:
                self.parser._finish(f"connection lost: {exc}")
            else:
                self.parser.eof()
        if not self.finished.done():
            self.finished.set_result(None)


@dataclass(frozen=True)
class _PreparedUrl:
    url: HttpUrl
    request: bytes
    sni: str | None  # server name sent in the TLS handshake
    verify_name: str | None  # name checked by us when OpenSSL does not (SNI off)
    digest: bytes | None
    regex: re.Pattern[bytes] | None

    @property
    def want_body(self) -> bool:
        return self.digest is not None or self.regex is not None


class HttpProbe:
    """All URLs of one HTTP_GET / SSL_GET checker, each on its own connection."""

    def __init__(self, check: HttpCheck, server: RealServer, contexts: TlsContexts) -> None:
        self.check = check
        self.endpoint = Endpoint.for_check(check, server)
        self.contexts = contexts
        self.read_timeout = check.effective_read_timeout()
        self.urls = [self._prepare(u) for u in check.urls]

    def _prepare(self, url: HttpUrl) -> _PreparedUrl:
        check, ep = self.check, self.endpoint
        vhost = url.virtualhost or check.virtualhost
        default_port = 443 if check.tls else 80
        literal = f"[{ep.address}]" if ":" in ep.address else ep.address
        host = vhost or (literal if ep.port == default_port else f"{literal}:{ep.port}")
        version = "1.1" if check.http_protocol == "1.1" else "1.0"
        lines = [
            f"GET {url.path} HTTP/{version}",
            f"Host: {host}",
            f"User-Agent: {check.user_agent}",
        ]
        if check.http_protocol != "1.0":
            lines.append("Connection: close")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        name = check.sni_name or vhost
        sni = name if check.tls and check.enable_sni else None
        verify_name = None
        if check.tls and check.tls_verify and not check.enable_sni:
            verify_name = name or ep.address
        return _PreparedUrl(
            url=url,
            request=request,
            sni=sni,
            verify_name=verify_name,
            digest=bytes.fromhex(url.digest) if url.digest else None,
            regex=re.compile(url.regex.encode()) if url.regex else None,
        )

    def make_run(self, loop: asyncio.AbstractEventLoop, done: Callable[[CheckResult], None]) -> Any:
        """The callback-driven run (:mod:`.fast`) for plain HTTP; None: use :meth:`run`."""
        if self.check.tls:
            return None
        return FastHttpRun(loop, self, done)

    async def run(self) -> CheckResult:
        for prepared in self.urls:
            result = await self._get(prepared)
            if not result.ok:
                return result
        return CheckResult(ok=True)

    async def _get(self, p: _PreparedUrl) -> CheckResult:
        loop = asyncio.get_running_loop()
        check = self.check
        connected = await connect(loop, check, self.endpoint)
        if isinstance(connected, CheckResult):
            return connected
        sock: socket.socket | None = connected
        md5 = hashlib.md5(usedforsecurity=False) if p.digest is not None else None
        body = bytearray() if p.regex is not None else None

        def on_body(chunk: bytes) -> None:
            if md5 is not None:
                md5.update(chunk)
            if body is not None:
                body.extend(chunk)

        parser = ResponseParser(p.want_body, check.max_body, on_body)
        finished: asyncio.Future[None] = loop.create_future()
        transport: asyncio.Transport | None = None
        try:
            ctx = None
            if check.tls:
                ctx = self.contexts.get(check)
                if ctx is None:
                    return fail("TLS context not prepared (engine bug)")
            try:
                async with asyncio.timeout(check.connect_timeout):
                    transport, _ = await loop.create_connection(
                        lambda: _Reader(parser, finished),
                        sock=connected,
                        ssl=ctx,
                        server_hostname=(p.sni or "") if ctx is not None else None,
                        ssl_handshake_timeout=check.connect_timeout if ctx is not None else None,
                    )
            except TimeoutError:
                return fail(f"TLS handshake timeout after {check.connect_timeout:g}s")
            except ssl.SSLCertVerificationError as exc:
                return fail(f"TLS certificate: {exc.verify_message or exc.reason}")
            except (ssl.SSLError, OSError) as exc:
                return fail(f"TLS handshake: {exc}")
            sock = None  # the transport owns it now
            if p.verify_name is not None:
                cert = transport.get_extra_info("peercert")
                if not cert or not match_hostname(cert, p.verify_name):
                    return fail(f"TLS certificate is not for {p.verify_name}")
            transport.write(p.request)
            try:
                async with asyncio.timeout(self.read_timeout):
                    await finished
            except TimeoutError:
                got = "no response" if parser.status is None else f"status {parser.status}"
                return fail(f"{p.url.path}: read timeout after {self.read_timeout:g}s ({got})")
            return self._judge(p, parser, md5, body)
        finally:
            if transport is not None:
                # no TLS close_notify round trip (keepalived's quiet shutdown): the answer
                # is judged, drop the connection now
                transport.abort()
            elif sock is not None:
                close(sock, check)

    @staticmethod
    def _judge(
        p: _PreparedUrl,
        parser: ResponseParser,
        md5: Any,
        body: bytearray | None,
    ) -> CheckResult:
        path = p.url.path
        if parser.status is None:
            return fail(f"{path}: {parser.error or 'no response'}")
        if not p.url.status_ok(parser.status):
            return fail(f"{path}: HTTP status {parser.status}")
        if parser.error is not None:
            return fail(f"{path}: {parser.error}")
        if p.digest is not None and md5.digest() != p.digest:
            return fail(f"{path}: MD5 digest {md5.hexdigest()} does not match")
        if p.regex is not None:
            matched = p.regex.search(body or b"") is not None
            if matched == p.url.regex_no_match:
                return fail(f"{path}: body {'matches' if matched else 'does not match'} regex")
        return CheckResult(ok=True)
