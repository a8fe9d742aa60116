"""A fake Anthropic Messages API: a real HTTP server speaking Anthropic's wire format.

    with start_fake_anthropic() as fake:
        ...  # point a channel (api_base) at fake.url with api_key fake.api_key
        fake.set_behaviour(status=529)  # every request now answers overloaded_error
        assert fake.requests[-1].body["system"] == "be brief"

`POST /v1/messages` checks `x-api-key` and `anthropic-version` as Anthropic does, answers a
`message` object or the SSE events message_start / content_block_start / ping /
content_block_delta / content_block_stop / message_delta / message_stop, with usage, and errors in
Anthropic's `{"type": "error", "error": {"type", "message"}}` shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.support.provider_server import (
    Behaviour,
    FakeProvider,
    ProviderState,
    record_request,
    stall,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

# The Messages API rejects any other top-level field ("Extra inputs are not permitted").
KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
    }
)
DEFAULT_KEY = "sk-ant-fake-key-0123456789"
RETRY_AFTER = "7"  # seconds, sent with every 429 as Anthropic does


class StreamCut(Exception):
    """Raised inside the streaming body so uvicorn drops the connection mid-response."""


def _error(status: int, message: str | None) -> JSONResponse:
    type_ = ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": type_, "message": message or f"fake {type_}"}}
    headers = {"request-id": "req_fake"}
    if status == 429:
        headers["retry-after"] = RETRY_AFTER
    return JSONResponse(body, status_code=status, headers=headers)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


TOOL_USE_ID = "toolu_fake_01"


def _stop_reason(b: Behaviour) -> str:
    return b.finish_reason or ("tool_use" if b.tool_call else "end_turn")


def _message(body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": b.text}]
    if b.tool_call:
        name, arguments = b.tool_call
        content.append({"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": arguments})
    return {
        "id": "msg_fake_0001",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": _stop_reason(b),
        "stop_sequence": None,
        "usage": {"input_tokens": b.input_tokens, "output_tokens": b.output_tokens},
    }


async def _stream(body: dict[str, Any], b: Behaviour, request: Request) -> AsyncIterator[bytes]:
    if b.stall_after == 0:
        await stall(request)
        return
    start = {
        "id": "msg_fake_0001",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": b.input_tokens, "output_tokens": 1},
    }
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    yield _event("ping", {"type": "ping"})
    for i, piece in enumerate(b.chunks):
        if b.cut_after is not None and i >= b.cut_after:
            raise StreamCut("fake Anthropic cut the stream")
        if b.stall_after is not None and i >= b.stall_after:
            await stall(request)
            return
        if b.error_event_after is not None and i >= b.error_event_after:
            err = {"type": "overloaded_error", "message": b.error_message or "Overloaded"}
            yield _event("error", {"type": "error", "error": err})
            return
        delta = {"type": "text_delta", "text": piece}
        yield _event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )
    yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    if b.tool_call:
        for event in _tool_use_events(*b.tool_call):
            yield event
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(b), "stop_sequence": None},
            "usage": {"output_tokens": b.output_tokens},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


def _tool_use_events(name: str, arguments: dict[str, Any]) -> list[bytes]:
    """A tool_use block as Anthropic streams it: the input JSON in partial_json pieces."""
    block = {"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {}}
    raw = orjson.dumps(arguments).decode()
    half = len(raw) // 2
    events = [
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": block},
        )
    ]
    for part in (raw[:half], raw[half:]):
        delta = {"type": "input_json_delta", "partial_json": part}
        events.append(
            _event(
                "content_block_delta", {"type": "content_block_delta", "index": 1, "delta": delta}
            )
        )
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 1}))
    return events


def build_app(state: ProviderState, api_key: str) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        body, b, status = await record_request(state, request)
        if request.headers.get("x-api-key") != api_key:
            return _error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "anthropic-version: header is required")
        if status is not None:
            return _error(status, b.error_message)
        if not isinstance(body, dict) or "max_tokens" not in body or "messages" not in body:
            return _error(400, "max_tokens: Field required")
        extra = sorted(set(body) - KNOWN_FIELDS)
        if extra:
            return _error(400, f"{extra[0]}: Extra inputs are not permitted")
        if body.get("stream"):
            return StreamingResponse(_stream(body, b, request), media_type="text/event-stream")
        return JSONResponse(_message(body, b), headers={"request-id": "req_fake"})

    return app


class FakeAnthropic(FakeProvider):
    """Handle on a running fake: `url` is the api_base (no /v1), `api_key` the key it accepts."""

    build_app = staticmethod(build_app)

    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        super().__init__(api_key)


def start_fake_anthropic(api_key: str = DEFAULT_KEY) -> FakeAnthropic:
    """Start a fake on a free port. Stop it with `.stop()` or use it as a context manager."""
    return FakeAnthropic(api_key)
