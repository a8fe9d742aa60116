"""The worker's error responses, whatever went wrong.

The body is OpenAI's (modelport_wire.openai), typed by status; the gateway relays it unchanged, so a
client sees the same error whether it talks to a worker or through the gateway.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from local_runtime.engines.base import EngineError
from modelport_wire.openai import RETRY_AFTER, error_bytes, status_type


def error_json(
    status: int, message: str, *, code: str | int | None = None, param: str | None = None
) -> bytes:
    return error_bytes(message, type=status_type(status), code=code, param=param)


def error_response(
    status: int, message: str, *, code: str | int | None = None, param: str | None = None
) -> Response:
    headers = {"Retry-After": "1"} if status in RETRY_AFTER else None
    return Response(
        error_json(status, message, code=code, param=param),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, or the 400 that the worker and its fronts both answer."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EngineError(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise EngineError("request body must be a JSON object", code="invalid_json")
    return body
