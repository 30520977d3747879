"""JSON error bodies: every error the API returns has the same shape.

`{"error": {"code": 404, "message": "...", ...extra}}` — clients (vigilctl, the Ansible
modules) print `message` and never have to parse HTML or plain text.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["BadRequest", "error_body", "json_error", "json_response", "json_response_async"]


def error_body(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, indent=None, separators=(",", ":"), default=str) + "\n",
        content_type="application/json",
    )


async def json_response_async(data: Any, status: int = 200) -> web.Response:
    """``json_response`` with the same bytes, encoded in slices between yields to the loop
    (for answers of megabytes: vigil.incremental)."""
    from vigil.incremental import dumps_async

    return web.Response(
        status=status, text=await dumps_async(data) + "\n", content_type="application/json"
    )


def json_error(code: int, message: str, **extra: Any) -> web.Response:
    return json_response(error_body(code, message, **extra), status=code)


class BadRequest(Exception):
    """Raised by handlers for a bad query or body; becomes a 400 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
