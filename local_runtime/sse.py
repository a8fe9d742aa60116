"""Server-sent events framing, in one place, for every engine that streams.

Engines return complete SSE streams (frames already framed, ending with `data: [DONE]`), so the
worker forwards bytes without re-encoding and an engine that proxies an OpenAI-compatible server
(vLLM) can pass its upstream bytes straight through.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"

MEDIA_TYPE = "text/event-stream"
# Proxies (nginx) buffer responses unless told not to; a buffered stream is not a stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(data: bytes) -> bytes:
    """Frame one already-encoded JSON payload."""
    return b"data: " + data + b"\n\n"


def frame_json(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


def error_frame(
    message: str, *, type: str = "server_error", code: str | int | None = None
) -> bytes:
    """An error after the first byte has gone out: the status is already 200, so say it inline.

    OpenAI clients raise on a `data: {"error": ...}` event, which is what the official servers send.
    """
    return frame_json({"error": {"message": message, "type": type, "param": None, "code": code}})
