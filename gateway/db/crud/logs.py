"""Usage log queries (writes happen in batches in gateway.billing.usage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db.tables import UsageLog


@dataclass(slots=True)
class LogFilter:
    start: float | None = None
    end: float | None = None
    token_name: str = ""
    model: str = ""
    channel: int | None = None
    status: str = ""  # "ok" | "error" | ""

    def apply(self, stmt: Any) -> Any:
        if self.start is not None:
            stmt = stmt.where(col(UsageLog.created_at) >= self.start)
        if self.end is not None:
            stmt = stmt.where(col(UsageLog.created_at) <= self.end)
        if self.token_name:
            stmt = stmt.where(col(UsageLog.token_name) == self.token_name)
        if self.model:
            stmt = stmt.where(col(UsageLog.model) == self.model)
        if self.channel is not None:
            stmt = stmt.where(col(UsageLog.channel_id) == self.channel)
        if self.status == "ok":
            stmt = stmt.where(col(UsageLog.status) < 400)
        elif self.status == "error":
            stmt = stmt.where(col(UsageLog.status) >= 400)
        return stmt


async def list_logs(
    session: AsyncSession, *, flt: LogFilter, page: int = 0, page_size: int = 50
) -> tuple[list[UsageLog], int]:
    stmt = flt.apply(select(UsageLog)).order_by(col(UsageLog.id).desc())
    rows = (await session.exec(stmt.offset(page * page_size).limit(page_size))).all()
    total = (await session.exec(flt.apply(select(func.count()).select_from(UsageLog)))).one()
    return list(rows), int(total)


async def log_stat(session: AsyncSession, *, flt: LogFilter) -> dict[str, int]:
    stmt = flt.apply(
        select(
            func.count(),
            func.coalesce(func.sum(UsageLog.quota), 0),
            func.coalesce(func.sum(UsageLog.prompt_tokens), 0),
            func.coalesce(func.sum(UsageLog.completion_tokens), 0),
        ).select_from(UsageLog)
    )
    n, quota, prompt, completion = (await session.exec(stmt)).one()
    return {
        "requests": int(n),
        "quota": int(quota),
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
    }
