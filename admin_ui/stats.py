"""Aggregate usage queries for the dashboard and the tokens page: one GROUP BY query per chart
or table, never a query per row. Buckets are computed in SQL with integer division on the unix
time, which SQLite and PostgreSQL both do the same way."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, case, cast, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db.tables import UsageLog

RANGES: dict[str, tuple[int, int]] = {  # name -> (seconds covered, bucket seconds)
    "1h": (3600, 60),
    "24h": (86400, 3600),
    "7d": (7 * 86400, 6 * 3600),
}


@dataclass(slots=True)
class Series:
    """Per-key time series over fixed buckets (requests, tokens, errors)."""

    buckets: list[int]  # bucket start times (unix s)
    requests: dict[str, list[int]] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, list[int]] = field(default_factory=dict)

    def totals(self) -> list[tuple[str, int, int, int]]:
        """(key, requests, tokens, errors) per key, busiest first."""
        rows = [
            (k, sum(self.requests[k]), sum(self.tokens[k]), sum(self.errors[k]))
            for k in self.requests
        ]
        return sorted(rows, key=lambda r: -r[1])


async def usage_series(
    session: AsyncSession, *, by: str, range_name: str = "24h", now: float | None = None
) -> Series:
    """Requests, tokens and errors per bucket, grouped by `model` or `channel`: one query."""
    span, step = RANGES.get(range_name, RANGES["24h"])
    now = now or time.time()
    first = (int(now) - span) // step + 1
    bucket = (cast(col(UsageLog.created_at), BigInteger) // step).label("bucket")
    key: Any = (
        col(UsageLog.model)
        if by == "model"
        else func.coalesce(func.nullif(col(UsageLog.channel_name), ""), "(no channel)")
    )
    stmt = (
        select(  # type: ignore[call-overload]
            bucket,
            key.label("key"),
            func.count(),
            func.coalesce(func.sum(UsageLog.prompt_tokens + UsageLog.completion_tokens), 0),
            func.coalesce(func.sum(case((col(UsageLog.status) >= 400, 1), else_=0)), 0),
        )
        .where(col(UsageLog.created_at) >= first * step)
        .group_by(bucket, key)
    )
    rows = (await session.exec(stmt)).all()
    buckets = [(first + i) * step for i in range(span // step)]
    out = Series(buckets=buckets)
    n = len(buckets)
    for b, k, count, tokens, errors in rows:
        i = int(b) - first
        if not 0 <= i < n:
            continue
        for store, value in ((out.requests, count), (out.tokens, tokens), (out.errors, errors)):
            store.setdefault(str(k), [0] * n)[i] += int(value)
    return out


async def token_usage(
    session: AsyncSession, token_ids: list[int], *, since: float
) -> dict[int, tuple[int, int]]:
    """(requests, tokens) since `since` per token id, for the tokens shown: one query."""
    if not token_ids:
        return {}
    stmt = (
        select(
            col(UsageLog.token_id),
            func.count(),
            func.coalesce(func.sum(UsageLog.prompt_tokens + UsageLog.completion_tokens), 0),
        )
        .where(col(UsageLog.token_id).in_(token_ids))
        .where(col(UsageLog.created_at) >= since)
        .group_by(col(UsageLog.token_id))
    )
    rows = (await session.exec(stmt)).all()
    return {int(t): (int(n), int(k)) for t, n, k in rows}
