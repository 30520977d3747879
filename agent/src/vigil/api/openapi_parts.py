"""Pieces of the OpenAPI document that the subsystems' ``*_OPENAPI_PATHS`` share.

Each subsystem describes its own paths (``vigil.vrrp.api``, ``vigil.ipvs.api``,
``vigil.bfd.api``); a verified control action (handover, drain, shutdown, ...) has the
same shape everywhere: POST, an optional JSON object of known properties, 200 with the
action's result once its effect was observed, and the subsystem's error answers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["action_operation"]


def action_operation(
    op_id: str,
    summary: str,
    description: str,
    props: dict[str, Any],
    *,
    parameters: list[dict[str, Any]],
    result: dict[str, Any],
    errors: dict[str, Any],
) -> dict[str, Any]:
    """The path item of one verified control action."""
    return {
        "post": {
            "summary": summary,
            "description": description,
            "operationId": op_id,
            "parameters": parameters,
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": props,
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "done and verified",
                    "content": {"application/json": {"schema": result}},
                },
                **errors,
            },
        }
    }
