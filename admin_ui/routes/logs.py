"""Usage logs: One API's filters (time, token, model, channel, status), paging, request detail.
Queries are gateway.db.crud.logs (LogFilter, list_logs, log_stat), the admin API's own."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from admin_ui.web import UserDep, render
from gateway.db.crud.channels import all_channels
from gateway.db.crud.logs import LogFilter, list_logs, log_stat
from gateway.db.tables import UsageLog
from gateway.services import services_of

router = APIRouter(prefix="/logs")
PAGE_SIZE = 50
FILTERS = ("start", "end", "token", "model", "channel", "status")


def _ts(value: str) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


@router.get("")
async def list_page(request: Request, session: UserDep) -> Response:
    q = {n: request.query_params.get(n, "").strip() for n in FILTERS}
    flt = LogFilter(
        start=_ts(q["start"]),
        end=_ts(q["end"]),
        token_name=q["token"],
        model=q["model"],
        channel=int(q["channel"]) if q["channel"].isdigit() else None,
        status=q["status"] if q["status"] in ("ok", "error") else "",
    )
    raw_page = request.query_params.get("p", "0")
    page = int(raw_page) if raw_page.isdigit() else 0
    async with services_of(request).sessions() as db:
        rows, total = await list_logs(db, flt=flt, page=page, page_size=PAGE_SIZE)
        stat = await log_stat(db, flt=flt)
        channels = [c for c in await all_channels(db) if not c.builtin]
    query = urlencode({k: v for k, v in q.items() if v})
    return render(
        request,
        "logs.html",
        session,
        page="logs",
        rows=rows,
        total=total,
        p=page,
        pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        q=q,
        query=query,
        stat=stat,
        channels=channels,
    )


@router.get("/{log_id}")
async def detail(log_id: int, request: Request, session: UserDep) -> Response:
    async with services_of(request).sessions() as db:
        row = await db.get(UsageLog, log_id)
    template = "partials/log_detail.html" if request.headers.get("hx-request") else "log_page.html"
    return render(
        request, template, session, page="logs", row=row, log_id=log_id, status=200 if row else 404
    )
