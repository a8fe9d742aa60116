"""A fake Gemini API (Google AI Studio): a real HTTP server speaking Gemini's wire format.

    with start_fake_gemini() as fake:
        ...  # point a channel at fake.url (bare host; /v1beta is the API version path)
        fake.set_behaviour(status=429)

Routes, under /v1beta (and /v1, /v1alpha) `models/{model}:ACTION`:
`generateContent`, `streamGenerateContent` (`?alt=sse`: SSE frames; otherwise one JSON array),
`embedContent`, `batchEmbedContents`. Auth is `x-goog-api-key` or `?key=`; like the real API, a
wrong key answers 400 INVALID_ARGUMENT with reason API_KEY_INVALID and a missing key 403
PERMISSION_DENIED. Errors use Google's `{"error": {"code", "message", "status"}}` shape.
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
    fake_vector,
    record_request,
    stall,
)

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

DEFAULT_KEY = "AIza-fake-gemini-key-0123456789"


class StreamCut(Exception):
    """Raised inside the streaming body so uvicorn drops the connection mid-response."""


def _error(status: int, message: str | None, details: list[Any] | None = None) -> JSONResponse:
    err: dict[str, Any] = {
        "code": status,
        "message": message or f"fake {STATUS_NAMES.get(status, 'UNKNOWN')}",
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        err["details"] = details
    return JSONResponse({"error": err}, status_code=status)


def _auth_error(request: Request, api_key: str) -> JSONResponse | None:
    given = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if given == api_key:
        return None
    if not given:
        return _error(
            403, "Method doesn't allow unregistered callers (callers without established identity)."
        )
    reason = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
    }
    return _error(400, "API key not valid. Please pass a valid API key.", [reason])


def _usage(b: Behaviour, candidates: int) -> dict[str, int]:
    return {
        "promptTokenCount": b.input_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": b.input_tokens + candidates,
    }


def _response(model: str, text: str, finish: str | None, usage: dict[str, int]) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": "fake-gemini-0001",
    }


async def _sse(model: str, b: Behaviour, request: Request | None) -> AsyncIterator[bytes]:
    last = len(b.chunks) - 1
    for i, piece in enumerate(b.chunks):
        if b.cut_after is not None and i >= b.cut_after:
            raise StreamCut("fake Gemini cut the stream")
        if request is not None and b.stall_after is not None and i >= b.stall_after:
            await stall(request)
            return
        if b.error_event_after is not None and i >= b.error_event_after:
            err = {"code": 503, "message": b.error_message or "overloaded", "status": "UNAVAILABLE"}
            yield b"data: " + orjson.dumps({"error": err}) + b"\r\n\r\n"
            return
        finish = (b.finish_reason or "STOP") if i == last else None
        # Gemini sends usageMetadata with every chunk; the last one has the final counts.
        used = b.output_tokens if i == last else i + 1
        frame = _response(model, piece, finish, _usage(b, used))
        yield b"data: " + orjson.dumps(frame) + b"\r\n\r\n"


def _content_text(content: Any) -> str:
    parts = content.get("parts", []) if isinstance(content, dict) else []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


def build_app(state: ProviderState, api_key: str) -> FastAPI:
    app = FastAPI()

    @app.post("/{version}/models/{model_action}")
    async def models(version: str, model_action: str, request: Request) -> Response:
        body, b, status = await record_request(state, request)
        if version not in ("v1", "v1beta", "v1alpha") or ":" not in model_action:
            return _error(404, f"unknown route {request.url.path}")
        auth = _auth_error(request, api_key)
        if auth is not None:
            return auth
        if status is not None:
            return _error(status, b.error_message)
        model, action = model_action.rsplit(":", 1)
        body = body if isinstance(body, dict) else {}
        if action == "generateContent":
            if not body.get("contents"):
                return _error(400, "* GenerateContentRequest.contents: contents is not specified")
            usage = _usage(b, b.output_tokens)
            return JSONResponse(_response(model, b.text, b.finish_reason or "STOP", usage))
        if action == "streamGenerateContent":
            if request.query_params.get("alt") == "sse":
                return StreamingResponse(_sse(model, b, request), media_type="text/event-stream")
            frames = [orjson.loads(f[len(b"data: ") :]) async for f in _sse(model, b, None)]
            return JSONResponse(frames)
        if action == "embedContent":
            text = _content_text(body.get("content"))
            return JSONResponse(
                {"embedding": {"values": fake_vector(text, b.embedding_dimensions)}}
            )
        if action == "batchEmbedContents":
            texts = [_content_text(r.get("content")) for r in body.get("requests", [])]
            vectors = [{"values": fake_vector(t, b.embedding_dimensions)} for t in texts]
            return JSONResponse({"embeddings": vectors})
        return _error(404, f"unknown method {action}")

    return app


class FakeGemini(FakeProvider):
    """Handle on a running fake: `url` is the bare host, `api_key` the key it accepts."""

    build_app = staticmethod(build_app)

    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        super().__init__(api_key)


def start_fake_gemini(api_key: str = DEFAULT_KEY) -> FakeGemini:
    """Start a fake on a free port. Stop it with `.stop()` or use it as a context manager."""
    return FakeGemini(api_key)
