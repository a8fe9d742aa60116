"""Usage rows and quota settlement, written in batches off the hot path.

The relay calls `record()` (synchronous, never blocks, safe from a cancelled stream's cleanup); a
background task writes every `interval` seconds or `batch_size` records: one multi-row INSERT of
usage rows, one UPDATE per token for settlement, one per channel. If the database is briefly
unreachable the batch is kept and retried, and `close()` flushes everything at shutdown, so a
graceful stop loses nothing.

Settling a limited token's request also deletes its `QuotaReservation` row in the same
transaction (gateway.billing.reservations). Should a recovery have refunded that reservation
already (this process's lease ran out while it still lived), the DELETE finds nothing and the
settlement takes the refunded amount back, so no unit is refunded twice.

A row the database refuses (PostgreSQL rejects a NUL in text) would otherwise fail its batch on
every retry and stop all recording behind it. So a batch refused for its data is written again
one record at a time: only the refused rows are lost (logged and counted in `rejected`), and
their quota settlement is still written without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.billing.reservations import ReservationLedger
from gateway.db.tables import Channel, QuotaReservation, Token, UsageLog

log = logging.getLogger("modelport.usage")

# The database refused what a row holds, not the connection: retrying the same row cannot help.
_ROW_ERRORS = (DataError, IntegrityError)


@dataclass(slots=True)
class UsageRecord:
    log: dict[str, Any] | None  # UsageLog columns; None once the database refused them
    token_id: int = 0
    unlimited: bool = True
    reserved: int = 0  # quota taken before the call
    charged: int = 0  # quota the request really costs
    channel_id: int = 0
    reservation_id: int = 0  # its QuotaReservation row, deleted with the settlement


@dataclass(slots=True)
class _Batch:
    logs: list[dict[str, Any]] = field(default_factory=list)
    remain: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    used: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    accessed: dict[int, int] = field(default_factory=dict)
    channel_used: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    held: dict[int, UsageRecord] = field(default_factory=dict)  # by reservation id

    @classmethod
    def of(cls, records: list[UsageRecord]) -> _Batch:
        batch = cls()
        for rec in records:
            batch.add(rec)
        return batch

    def add(self, r: UsageRecord) -> None:
        if r.log is not None:
            self.logs.append(r.log)
        if r.token_id:
            if r.unlimited:
                self.used[r.token_id] += r.charged
            else:  # the reservation already moved `reserved`; settle the difference
                self.remain[r.token_id] -= r.charged - r.reserved
                self.used[r.token_id] += r.charged - r.reserved
                if r.reservation_id:
                    self.held[r.reservation_id] = r
            self.accessed[r.token_id] = int(time.time())
        if r.channel_id and r.charged:
            self.channel_used[r.channel_id] += r.charged

    def __len__(self) -> int:
        return len(self.logs)


class UsageWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        interval: float = 1.0,
        batch_size: int = 500,
        max_pending: int = 200_000,
    ) -> None:
        self._sessions = sessions
        self.interval = interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._pending: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.rejected = 0  # rows the database refused (their settlement was still written)
        self.flush_errors = 0
        self.ledger = ReservationLedger(sessions)

    def record(self, rec: UsageRecord) -> None:
        if len(self._pending) >= self.max_pending:
            # Refuse to grow without bound while the database is down; count what we lost.
            self.dropped += 1
            log.error("usage backlog full (%d rows): database unreachable?", self.max_pending)
            return
        self._pending.append(rec)
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")
        self.ledger.start()

    async def _run(self) -> None:
        """Flush every interval; while the database is down, back off (up to 30 s) instead of
        retrying, and logging, every interval."""
        delay = self.interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            ok = await self.flush()
            delay = self.interval if ok else min(max(delay * 2, self.interval), 30.0)

    async def flush(self) -> bool:
        """Write everything pending; waits for a flush already in progress, so when it returns
        every record made before the call is in the database (or kept for a retry)."""
        async with self._lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        while self._pending:
            take, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            try:
                await self._write(_Batch.of(take))
            except _ROW_ERRORS as exc:
                log.warning(
                    "usage batch refused (%s); writing its %d rows one by one", exc.orig, len(take)
                )
                if not await self._write_each(take):
                    return False
            except (SQLAlchemyError, OSError) as exc:
                self._failed(exc)
                self._pending = take + self._pending
                return False
        return True

    async def _write_each(self, take: list[UsageRecord]) -> bool:
        """Write records one at a time so a refused row loses only itself; on a connection
        failure keep the rest for the next flush."""
        for i, rec in enumerate(take):
            try:
                try:
                    await self._write(_Batch.of([rec]))
                except _ROW_ERRORS as exc:
                    self._reject(rec, exc)
                    await self._write(_Batch.of([rec]))  # the settlement alone
            except _ROW_ERRORS as exc:
                log.error("usage settlement of token %d refused: %s", rec.token_id, exc.orig)
            except (SQLAlchemyError, OSError) as exc:
                self._failed(exc)
                self._pending = take[i:] + self._pending
                return False
        return True

    def _reject(self, rec: UsageRecord, exc: DataError | IntegrityError) -> None:
        self.rejected += 1
        row = rec.log or {}
        log.error(
            "usage row refused by the database, dropped (settlement kept): request %r "
            "token %r model %r: %s",
            row.get("request_id"),
            row.get("token_name"),
            row.get("model"),
            exc.orig,
        )
        rec.log = None

    def _failed(self, exc: BaseException) -> None:
        self.flush_errors += 1
        if self.flush_errors == 1 or self.flush_errors % 20 == 0:
            log.warning("usage flush failed %d time(s), will retry: %s", self.flush_errors, exc)

    async def _write(self, b: _Batch) -> None:
        async with self._sessions() as session:
            if b.logs:
                # Core insert (executemany): the ORM bulk path costs ~0.1 ms of Python per row.
                await session.execute(insert(UsageLog.__table__), b.logs)  # type: ignore[attr-defined]
            if b.held:
                await self._release(session, b)
            for tid in set(b.remain) | set(b.used) | set(b.accessed):
                values: dict[str, Any] = {"accessed_time": b.accessed.get(tid, int(time.time()))}
                if b.remain.get(tid):
                    values["remain_quota"] = col(Token.remain_quota) + b.remain[tid]
                if b.used.get(tid):
                    values["used_quota"] = col(Token.used_quota) + b.used[tid]
                await session.execute(update(Token).where(col(Token.id) == tid).values(**values))
            for cid, amount in b.channel_used.items():
                await session.execute(
                    update(Channel)
                    .where(col(Channel.id) == cid)
                    .values(used_quota=col(Channel.used_quota) + amount)
                )
            await session.commit()

    async def _release(self, session: AsyncSession, b: _Batch) -> None:
        """Delete the batch's reservation rows; one already gone was refunded by a recovery, so
        its amount is charged again here."""
        result = await session.execute(
            delete(QuotaReservation)
            .where(col(QuotaReservation.id).in_(list(b.held)))
            .returning(col(QuotaReservation.id))
        )
        gone = set(b.held) - set(result.scalars().all())
        for rid in gone:
            r = b.held[rid]
            log.warning("reservation %d of token %d was refunded before settling", rid, r.token_id)
            b.remain[r.token_id] -= r.reserved
            b.used[r.token_id] += r.reserved

    async def close(self, flush_for_s: float = 30.0) -> None:
        """Stop the flusher, then keep trying to write what is pending for `flush_for_s`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deadline = time.monotonic() + flush_for_s
        while self._pending and time.monotonic() < deadline:
            if not await self.flush():
                await asyncio.sleep(0.5)
        if self._pending:
            log.error("shutdown: %d usage rows could not be written", len(self._pending))
        await self.ledger.close()
