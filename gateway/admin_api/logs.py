"""/api/log/*: usage logs with One API's filters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.admin_api.envelope import int_param, ok
from gateway.db.crud.logs import LogFilter, list_logs, log_stat
from gateway.deps import SessionDep

router = APIRouter(prefix="/log")


def _filter(request: Request) -> LogFilter:
    q = request.query_params
    start, end, channel = (
        int_param(request, n, 0) for n in ("start_timestamp", "end_timestamp", "channel")
    )
    return LogFilter(
        start=start or None,
        end=end or None,
        channel=channel or None,
        token_name=q.get("token_name", ""),
        model=q.get("model_name", ""),
        status=q.get("status", ""),
    )


@router.get("/")
async def get_logs(request: Request, session: SessionDep) -> dict[str, Any]:
    rows, total = await list_logs(
        session,
        flt=_filter(request),
        page=int_param(request, "p", 0),
        page_size=int_param(request, "page_size", 50, lo=1, hi=500),
    )
    return ok([r.model_dump() for r in rows], total=total)


@router.get("/stat")
async def get_stat(request: Request, session: SessionDep) -> dict[str, Any]:
    return ok(await log_stat(session, flt=_filter(request)))
