"""One API's response envelope, and body parsing that reports errors in it."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from pydantic import ValidationError

from gateway.errors import InvalidRequest


def ok(data: Any = None, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"success": True, "message": message, "data": data, **extra}


def fail(message: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "message": message, "data": None, **extra}


async def json_body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc


def first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request body"
    e = errors[0]
    loc = ".".join(str(p) for p in e.get("loc", ()))
    return f"{loc}: {e.get('msg')}" if loc else str(e.get("msg"))


def int_param(request: Request, name: str, default: int, *, lo: int = 0, hi: int = 10**9) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return min(max(int(raw), lo), hi)
    except ValueError as exc:
        raise InvalidRequest(f"query parameter {name} must be an integer, got {raw!r}") from exc
