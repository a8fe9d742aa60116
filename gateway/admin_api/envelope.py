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


# One API's bounds: ids are Go ints in INT columns, timestamps int64 unix seconds
# (controller/log.go parses them with strconv.ParseInt(s, 10, 64)).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# One API's config.ItemsPerPage: its web pages ask for `p` without `page_size` and count on 10 rows.
ITEMS_PER_PAGE = 10
MAX_PAGE_SIZE = 500
MAX_PAGE = 10**9  # p * page_size stays far inside int64 offsets


def int_param(
    request: Request, name: str, default: int, *, lo: int = 0, hi: int = INT64_MAX
) -> int:
    """A clamped integer query parameter; a non-integer is a 400 naming it."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return min(max(int(raw), lo), hi)
    except ValueError as exc:
        raise InvalidRequest(f"query parameter {name} must be an integer, got {raw!r}") from exc


def page_params(request: Request) -> tuple[int, int]:
    """One API's `p` (0-based page) and `page_size` (default ItemsPerPage, as its frontend expects)."""
    return (
        int_param(request, "p", 0, hi=MAX_PAGE),
        int_param(request, "page_size", ITEMS_PER_PAGE, lo=1, hi=MAX_PAGE_SIZE),
    )
