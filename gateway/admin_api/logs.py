"""/api/log/*: usage logs with One API's filters and field names.

One API's log page (songquanpeng/one-api web/default/src/components/LogsTable.js) always sends
`p, type, username, token_name, model_name, start_timestamp, end_timestamp, channel` and reads
`created_at, type, username, token_name, model_name, quota, prompt_tokens, completion_tokens,
channel, content` (model/log.go's json tags); rows carry those names beside modelport's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.admin_api.envelope import INT32_MAX, INT64_MAX, int_param, ok, page_params
from gateway.billing.prices import QUOTA_PER_USD
from gateway.db.crud.logs import LogFilter, list_logs, log_stat
from gateway.db.tables import UsageLog
from gateway.deps import SessionDep

router = APIRouter(prefix="/log")

# One API's log types (model/log.go): 0 asks for all, 2 is a consumption (a relayed request).
# Every modelport usage row is a request, so other types (top-up, manage, system, test) match none.
LOG_TYPE_ALL = 0
LOG_TYPE_CONSUME = 2


def _timestamp(request: Request, name: str) -> float:
    """Unix seconds, 0 for none. One API reads an unparsable value as 0 (its page sends `NaN`
    when a date field is cleared); a bound before 1970 is none too."""
    raw = request.query_params.get(name, "")
    try:
        value = float(raw)
    except ValueError:
        return 0
    return value if 0 < value < INT64_MAX else 0


def _filter(request: Request) -> LogFilter | None:
    q = request.query_params
    if int_param(request, "type", LOG_TYPE_ALL) not in (LOG_TYPE_ALL, LOG_TYPE_CONSUME):
        return None
    start, end = (_timestamp(request, n) for n in ("start_timestamp", "end_timestamp"))
    channel = int_param(request, "channel", 0, hi=INT32_MAX)
    return LogFilter(
        start=start or None,
        end=end or None,
        channel=channel or None,
        # a token is modelport's account: One API's `username` filter names it too
        token_name=q.get("token_name", "") or q.get("username", ""),
        model=q.get("model_name", ""),
        status=q.get("status", ""),
    )


def one_api_row(row: UsageLog) -> dict[str, Any]:
    data = row.model_dump()
    data.update(
        model_name=row.model,
        channel=row.channel_id,
        type=LOG_TYPE_CONSUME,
        username=row.token_name,
        elapsed_time=row.latency_ms,
        cost_usd=row.quota / QUOTA_PER_USD,  # quota is in One API's units, 500000 = 1 USD
    )
    return data


@router.get("/")
async def get_logs(request: Request, session: SessionDep) -> dict[str, Any]:
    flt = _filter(request)
    if flt is None:
        return ok([], total=0)
    p, size = page_params(request)
    rows, total = await list_logs(session, flt=flt, page=p, page_size=size)
    return ok([one_api_row(r) for r in rows], total=total)


@router.get("/stat")
async def get_stat(request: Request, session: SessionDep) -> dict[str, Any]:
    flt = _filter(request)
    if flt is None:
        return ok({"requests": 0, "quota": 0, "prompt_tokens": 0, "completion_tokens": 0})
    return ok(await log_stat(session, flt=flt))
