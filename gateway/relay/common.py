"""Building a RelayCall from a validated JSON request: one place for every JSON surface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Request

from gateway.auth.tokens import Caller
from gateway.errors import InvalidRequest
from gateway.relay.service import RelayCall
from gateway.upstreams.base import UpstreamRequest


async def json_call(
    request: Request,
    caller: Caller,
    *,
    surface: str,
    model: str,
    stream: bool = False,
    estimate_prompt: Callable[[], int] | None = None,
    max_output_tokens: int = 0,
    content: Callable[[], str] | None = None,
    count_usage: Callable[[dict[str, Any]], tuple[int, int]] | None = None,
) -> RelayCall:
    raw = await request.body()  # cached by Starlette after validation read it
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # FastAPI accepted it, so this is rare (NaN...)
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    return RelayCall(
        caller=caller,
        request=UpstreamRequest(surface=surface, model=model, stream=stream, body=body, raw=raw),
        request_id=getattr(request.state, "request_id", ""),
        estimate_prompt=estimate_prompt,
        max_output_tokens=max_output_tokens,
        count_usage=count_usage,
        content=content() if (content and caller.log_content) else "",
    )
