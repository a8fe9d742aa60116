"""OpenAI's error body and server-sent-event framing, defined once.

Error: `{"error": {"message", "type", "param", "code"}}`, the four keys in this order, all present
(openai/openai-openapi openapi.yaml, components.schemas `Error` requires type, message, param and
code; `ErrorResponse` requires `error`: lines 38249 and 38286 at commit f85dbe2). The official
clients read `error.message` and `error.code`.

Streams: every event is `data: <json>\\n\\n` and the stream ends with `data: [DONE]\\n\\n`. An error
after the first byte cannot change the status (already 200), so it goes out as a
`data: {"error": ...}` event, which the official clients raise on.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field

# OpenAI's (type, code) for an error that has nothing but its status to go by.
STATUS_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    422: ("invalid_request_error", "invalid_request"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    503: ("service_unavailable", "service_unavailable"),
}

# Statuses that tell the client to come back later: overloaded, or not ready yet.
RETRY_AFTER = frozenset({429, 503})


def status_type(status: int) -> str:
    """OpenAI's `type` for a status: the table's, else a server or a request error."""
    kind = STATUS_KINDS.get(status)
    if kind is not None:
        return kind[0]
    return "server_error" if status >= 500 else "invalid_request_error"


def status_code(status: int, default: str = "error") -> str:
    """OpenAI's `code` for a status, `default` for one the table does not name."""
    kind = STATUS_KINDS.get(status)
    return kind[1] if kind is not None else default


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | int | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_bytes(message: str, **kw: Any) -> bytes:
    return orjson.dumps(error_body(message, **kw))


class ErrorObject(BaseModel):
    """The OpenAPI schema of the error object (what clients parse), not used to build bodies."""

    message: str = Field(description="what went wrong and what the caller can do about it")
    type: str = Field(description="invalid_request_error, authentication_error, ...")
    param: str | None = Field(description="the request field at fault, if one is")
    code: str | int | None = Field(description="a stable machine-readable code")


class ErrorResponse(BaseModel):
    error: ErrorObject


# --- server-sent events -------------------------------------------------------------------------
DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
# Proxies (nginx) buffer responses unless told not to; a buffered stream is not a stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(data: bytes) -> bytes:
    """Frame one already-encoded JSON payload (pass-through bytes are never re-encoded)."""
    return b"data: " + data + b"\n\n"


def frame_json(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


def error_frame(
    message: str, *, type: str = "server_error", code: str | int | None = None
) -> bytes:
    """The event that ends a stream which fails after its first byte."""
    return frame_json(error_body(message, type=type, code=code))
