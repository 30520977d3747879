"""Talk to vigild's local API over its Unix socket, with the standard library only.

One source, two homes: this file is ``vigil.client`` in the agent (``vigilctl`` and the
test lab use it) and, byte for byte after a license header, the Ansible collection's
``plugins/module_utils/_api.py``, whose modules run on managed hosts with whatever Python
they have (3.8 or later, no aiohttp, no vigil package). Edit it here and run
``make sync-client``; a unit test fails while the two differ.

Example::

    client = ApiClient("/run/vigil/vigil.sock")
    status, body = client.get("/v1/status")
"""

from __future__ import annotations

import http.client
import json
import socket
import typing as t

DEFAULT_SOCKET = "/run/vigil/vigil.sock"

__all__ = [
    "DEFAULT_SOCKET",
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "UnixHTTPConnection",
    "error_message",
]


class ApiUnreachable(Exception):
    """The agent's socket is missing, refuses connections or stopped answering."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(Exception):
    """The agent answered with an error status where a stream was expected."""

    def __init__(self, status: int, body: t.Any) -> None:
        super().__init__(error_message(status, body))
        self.status = status
        self.body = body


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection that connects to a Unix stream socket instead of host:port."""

    def __init__(self, socket_path: str, timeout: float | None = 5.0) -> None:
        # "localhost" only fills the Host header, as curl --unix-socket does.
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def error_message(status: int, body: t.Any) -> str:
    """One line for an error answer: the agent's message (and its issues), or the raw body."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        text = str(err.get("message", ""))
        issues = err.get("issues")
        if isinstance(issues, list) and issues:
            text += "".join("\n  " + _issue_text(issue) for issue in issues)
        return f"HTTP {status}: {text}"
    return f"HTTP {status}: {body}"


def _issue_text(issue: t.Any) -> str:
    if not isinstance(issue, dict):
        return str(issue)
    where = ""
    if issue.get("file"):
        where = f"{issue['file']}:"
        if issue.get("line"):
            where += f"{issue['line']}:"
        where += " "
    path = f"{issue['path']}: " if issue.get("path") else ""
    return f"{where}{path}{issue.get('message', '')}"


class ApiClient:
    """Synchronous JSON client for vigild; one connection per request."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _unreachable(self, exc: BaseException) -> ApiUnreachable:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = reason or type(exc).__name__
        if isinstance(exc, PermissionError):
            hint = "the socket is root-only: run as root, or start vigild with --api-allow-uid"
        else:
            hint = "is vigild running? pass --socket"
        return ApiUnreachable(f"cannot reach vigild at {self.socket_path}: {reason} ({hint})")

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, t.Any] | None,
        accept: str,
        timeout: float | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[UnixHTTPConnection, http.client.HTTPResponse]:
        conn = UnixHTTPConnection(self.socket_path, timeout=timeout)
        hdrs = {"Accept": accept}
        if headers:
            hdrs.update(headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=hdrs)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unreachable(exc) from exc

    def request(
        self, method: str, path: str, body: dict[str, t.Any] | None = None
    ) -> tuple[int, t.Any]:
        """Send one request; return (status, decoded JSON, or the text if not JSON)."""
        conn, resp = self._send(method, path, body, "application/json", self.timeout)
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        finally:
            conn.close()
        text = raw.decode("utf-8", errors="replace")
        ctype = resp.getheader("Content-Type", "") or ""
        if "json" in ctype:
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text
        return resp.status, text

    def get(self, path: str) -> tuple[int, t.Any]:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, t.Any] | None = None) -> tuple[int, t.Any]:
        return self.request("POST", path, body)

    def stream(
        self,
        path: str,
        *,
        last_event_id: int | None = None,
        timeout: float | None = 60.0,
    ) -> t.Iterator[dict[str, t.Any]]:
        """Iterate Server-Sent Events from ``path`` as {id, event, data} dicts.

        ``data`` is decoded JSON when it parses, else the text. The read timeout must be
        longer than the server's heartbeat (15 s); None waits forever. A non-200 answer
        raises ApiError; a socket failure raises ApiUnreachable.
        """
        headers = None
        if last_event_id is not None:
            headers = {"Last-Event-ID": str(last_event_id)}
        conn, resp = self._send("GET", path, None, "text/event-stream", timeout, headers)
        try:
            if resp.status != 200:
                raw = resp.read().decode("utf-8", errors="replace")
                try:
                    body: t.Any = json.loads(raw)
                except ValueError:
                    body = raw
                raise ApiError(resp.status, body)
            yield from _parse_sse(resp)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        finally:
            conn.close()


def _parse_sse(resp: http.client.HTTPResponse) -> t.Iterator[dict[str, t.Any]]:
    """Parse the text/event-stream format (only the fields vigild sends)."""
    event: dict[str, t.Any] = {}
    data_lines: list[str] = []
    while True:
        line_b = resp.readline()
        if not line_b:
            return
        line = line_b.decode("utf-8", errors="replace").rstrip("\r\n")
        if line == "":
            if data_lines or event:
                text = "\n".join(data_lines)
                try:
                    data: t.Any = json.loads(text)
                except ValueError:
                    data = text
                yield {
                    "id": event.get("id"),
                    "event": event.get("event", "message"),
                    "data": data,
                }
            event, data_lines = {}, []
            continue
        if line.startswith(":"):
            continue  # a comment: the heartbeat
        field, _sep, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data_lines.append(value)
        elif field == "id":
            event["id"] = int(value) if value.isdigit() else value
        elif field == "event":
            event["event"] = value
