"""Change propagation and node records through the database, for installations without Redis.

`uvicorn --workers N` (or several replicas on one PostgreSQL) needs every process to learn of an
admin write within a second, and to see the workers of the process that owns the host's runtime.
Redis pub/sub does that where it is configured; the database always can:

- `ChangeLog`: an append-only table of "reload X" events. A writer inserts one row; every process
  polls for rows newer than the last it saw (an indexed range read, four times a second, and
  before refusing a request for a model it does not route: `catch_up`) and applies the ones other
  processes wrote. Rows older than `keep_s` are pruned. With Redis the
  same events also go over pub/sub (fast path) and the log is the fallback: applying an event
  twice is harmless, since events carry no data the database does not hold.
- `DatabaseNodeStore`: heartbeat records with an expiry, the NodeStore of gateway.cluster.nodes.

PostgreSQL may commit sequence ids out of order (a row with a lower id can appear after a higher
one was read), so the poll re-reads a window below the highest id it saw and skips ids it applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.cluster.shared_read import SharedRead
from gateway.db.tables import ClusterEvent, ClusterNode

log = logging.getLogger("modelport.cluster")

Sessions = async_sessionmaker[AsyncSession]
Apply = Callable[[dict[str, Any]], Awaitable[None]]

REREAD_WINDOW = 256  # ids below the highest seen that are read again (out-of-order commits)


class ChangeLog:
    def __init__(
        self,
        sessions: Sessions,
        origin: str,
        apply: Apply,
        *,
        interval: float = 0.25,
        keep_s: float = 300.0,
    ) -> None:
        self.sessions = sessions
        self.origin = origin
        self.apply = apply
        self.interval = interval
        self.keep_s = keep_s
        self._floor = 0  # every id up to here is settled: applied, or older than this process
        self._last = 0  # the highest id seen
        self._seen: set[int] = set()  # ids above the floor already handled
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        # every event written before the call applied (see `poll`): asked before a request is
        # refused for a model this process does not route, since the channel may have been
        # added through another process a moment ago; the periodic poll goes through it too
        self.catch_up = SharedRead(self.poll)

    async def publish(self, kind: str, data: dict[str, Any]) -> None:
        async with self.sessions() as session:
            session.add(
                ClusterEvent(origin=self.origin, kind=kind, data=orjson.dumps(data).decode())
            )
            await session.commit()

    async def start(self) -> None:
        """Start after the newest event: what happened before this process is in the database."""
        async with self.sessions() as session:
            newest = (await session.execute(select(func.max(col(ClusterEvent.id))))).scalar()
        self._floor = self._last = int(newest or 0)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="change-log")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def poll(self) -> int:
        """Apply the events other processes wrote since the last poll; returns how many."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        col(ClusterEvent.id),
                        col(ClusterEvent.origin),
                        col(ClusterEvent.kind),
                        col(ClusterEvent.data),
                    )
                    .where(col(ClusterEvent.id) > self._floor)
                    .order_by(col(ClusterEvent.id))
                )
            ).all()
        applied = 0
        for event_id, origin, kind, data in rows:
            if event_id in self._seen:
                continue
            self._seen.add(event_id)
            self._last = max(self._last, event_id)
            if origin == self.origin:
                continue
            try:
                payload = orjson.loads(data) if data else {}
            except orjson.JSONDecodeError:
                payload = {}
            await self.apply({**(payload if isinstance(payload, dict) else {}), "kind": kind})
            applied += 1
        self._floor = max(self._floor, self._last - REREAD_WINDOW)
        self._seen = {i for i in self._seen if i > self._floor}
        return applied

    async def prune(self) -> None:
        async with self.sessions() as session:
            await session.execute(
                delete(ClusterEvent).where(col(ClusterEvent.created_at) < time.time() - self.keep_s)
            )
            await session.commit()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.catch_up()
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + 60.0
                    await self.prune()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("change log poll failed: %s", exc)


class DatabaseNodeStore:
    """Node records in the database (wall-clock expiry): shared by every process on it."""

    def __init__(self, sessions: Sessions, clock: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self._clock = clock

    async def put(self, record: dict[str, Any], ttl: float) -> None:
        raw = orjson.dumps(record).decode()
        expires = self._clock() + ttl
        for _ in range(2):  # a concurrent first insert of the same id: update it instead
            async with self.sessions() as session:
                row = await session.get(ClusterNode, record["node_id"])
                if row is None:
                    session.add(
                        ClusterNode(node_id=record["node_id"], record=raw, expires_at=expires)
                    )
                else:
                    row.record, row.expires_at = raw, expires
                try:
                    await session.commit()
                    return
                except IntegrityError:
                    await session.rollback()

    async def get(self, node_id: str) -> dict[str, Any] | None:
        async with self.sessions() as session:
            row = await session.get(ClusterNode, node_id)
            if row is None or row.expires_at <= self._clock():
                return None
            return dict(orjson.loads(row.record))

    async def all(self) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(col(ClusterNode.record)).where(
                        col(ClusterNode.expires_at) > self._clock()
                    )
                )
            ).scalars()
            return [orjson.loads(r) for r in rows]

    async def remove(self, node_id: str) -> None:
        async with self.sessions() as session:
            await session.execute(delete(ClusterNode).where(col(ClusterNode.node_id) == node_id))
            await session.commit()

    async def aclose(self) -> None:
        return None
