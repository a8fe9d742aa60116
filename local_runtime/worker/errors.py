"""The OpenAI error body the worker answers with, whatever went wrong.

`{"error": {"message", "type", "param", "code"}}` is what OpenAI clients parse; the gateway relays
it unchanged, so a client sees the same error whether it talks to a worker or through the gateway.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from local_runtime.engines.base import EngineError

# Statuses that tell the client to come back: overloaded, or not ready yet.
RETRY_AFTER = frozenset({429, 503})

# OpenAI's `type` for each status we produce.
_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


def error_body(
    message: str, *, status: int = 400, code: str | int | None = None, param: str | None = None
) -> dict[str, dict[str, object]]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(
                status, "server_error" if status >= 500 else "invalid_request_error"
            ),
            "param": param,
            "code": code,
        }
    }


def error_response(
    status: int, message: str, *, code: str | int | None = None, param: str | None = None
) -> Response:
    headers = {"Retry-After": "1"} if status in RETRY_AFTER else None
    return Response(
        orjson.dumps(error_body(message, status=status, code=code, param=param)),
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
