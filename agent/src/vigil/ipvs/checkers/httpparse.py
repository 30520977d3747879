"""An HTTP/1.x response parser fed bytes as they arrive (status, headers, body, digest).

Pure: no sockets. The asyncio probe (``http``) and the callback-driven fast path
(``fast``) both feed it.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_HEADER = 16384


class ResponseParser:
    """Incremental HTTP/1.x response reader: status, headers, body (length, chunked or to
    EOF). ``want_body`` False stops after the headers. Feed bytes; ``done`` says when."""

    def __init__(self, want_body: bool, max_body: int, on_body: Callable[[bytes], None]) -> None:
        self.want_body = want_body
        self.max_body = max_body
        self.on_body = on_body
        self.status: int | None = None
        self.done = False
        self.error: str | None = None
        self.body_bytes = 0
        self._head = bytearray()
        self._length: int | None = None
        self._chunked = False
        self._chunk_left = 0
        self._chunk_buf = bytearray()
        self._chunk_state = "size"  # size / data / crlf / trailer

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        if self.status is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end, sep = self._head.find(b"\n\n"), 2
            if end < 0:
                if len(self._head) > MAX_HEADER:
                    self._finish(f"response headers longer than {MAX_HEADER} bytes")
                return
            head, rest = bytes(self._head[:end]), bytes(self._head[end + sep :])
            self._head.clear()
            if not self._parse_head(head):
                return
            if not self.want_body:
                self._finish(None)
                return
            data = rest
        if data:
            self._body(data)

    def eof(self) -> None:
        if self.done:
            return
        if self.status is None:
            self._finish("connection closed before the response headers")
        elif self._chunked or (self._length is not None and self.body_bytes < self._length):
            self._finish(f"connection closed after {self.body_bytes} body bytes")
        else:
            self._finish(None)

    def _parse_head(self, head: bytes) -> bool:
        lines = head.split(b"\n")
        parts = lines[0].rstrip(b"\r").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            self._finish(f"not an HTTP response: {lines[0][:40]!r}")
            return False
        self.status = int(parts[1])
        for raw in lines[1:]:
            name, _, value = raw.rstrip(b"\r").partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                try:
                    self._length = int(value.strip())
                except ValueError:
                    self._finish("bad Content-Length")
                    return False
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
        if self._chunked:
            self._length = None
        if self._length == 0 and self.want_body:
            self._finish(None)
            return False
        return True

    def _take(self, data: bytes) -> None:
        room = self.max_body - self.body_bytes
        if room > 0:
            self.on_body(data[:room])
        self.body_bytes += len(data)
        if self.body_bytes >= self.max_body:
            self._finish(None)  # enough to judge; do not read a huge body

    def _body(self, data: bytes) -> None:
        if not self._chunked:
            if self._length is not None:
                data = data[: self._length - self.body_bytes]
            self._take(data)
            if self._length is not None and self.body_bytes >= self._length:
                self._finish(None)
            return
        self._chunk_buf += data
        for _ in range(10_000):
            if self.done:
                return
            if self._chunk_state == "data":
                if not self._chunk_buf:
                    return
                piece = bytes(self._chunk_buf[: self._chunk_left])
                del self._chunk_buf[: len(piece)]
                self._chunk_left -= len(piece)
                self._take(piece)
                if self._chunk_left == 0:
                    self._chunk_state = "crlf"
                continue
            nl = self._chunk_buf.find(b"\n")
            if nl < 0:
                if len(self._chunk_buf) > 1024:
                    self._finish("bad chunked encoding")
                return
            line = bytes(self._chunk_buf[:nl]).strip()
            del self._chunk_buf[: nl + 1]
            if self._chunk_state == "crlf":
                self._chunk_state = "size"
            elif self._chunk_state == "trailer":
                if not line:
                    self._finish(None)
            else:
                try:
                    size = int(line.split(b";")[0], 16)
                except ValueError:
                    self._finish("bad chunk size")
                    return
                if size == 0:
                    self._chunk_state = "trailer"
                else:
                    self._chunk_left, self._chunk_state = size, "data"
        self._finish("too many chunks")

    def _finish(self, error: str | None) -> None:
        self.done = True
        self.error = error
