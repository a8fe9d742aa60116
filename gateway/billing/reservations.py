"""Quota reservations that survive the process that took them.

A limited token's quota is taken before the upstream is called (`reserve`) and settled after it
answers (the usage writer). Between the two, the only record of the money in flight used to be
in memory: a process killed with SIGKILL mid-stream left the reserved units neither refunded nor
settled, and no usage row. Now every reservation is a `QuotaReservation` row, written in the
reservation's own transaction and deleted in its settlement's, and tagged with its `holder`, the
process that will settle it.

A holder proves it lives by renewing its `GatewayLease`. Any process (the next start of a crashed
one, or a surviving replica) refunds the reservations of holders that are gone: lease expired,
or -- on the same host and PID namespace -- the process no longer exists, which lets a restart
after a crash settle at once instead of waiting for the lease to run out. Each refund writes a
usage row saying what happened. Two processes recovering together cannot both refund a row: the
refund happens only where this transaction's DELETE of the row took it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

from sqlalchemy import delete, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db.tables import GatewayLease, QuotaReservation, Token, TokenStatus, UsageLog

log = logging.getLogger("modelport.billing")

LEASE_S = 30.0  # a holder silent this long is gone (renewed every LEASE_S / 6)
RECOVERED_STATUS = 500


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return ""


def new_holder() -> str:
    """host/pid-namespace/pid/nonce: enough to tell, on the same host, that a holder's process
    is gone (the nonce keeps a reused pid from posing as the dead holder)."""
    return f"{socket.gethostname()}/{_pid_namespace()}/{os.getpid()}/{secrets.token_hex(4)}"


def gone_here(holder: str) -> bool:
    """True only when the holder ran on this host, in this PID namespace, and its pid is not
    running. Anything unsure (another host or namespace, a pid now reused) says False, and the
    lease decides."""
    parts = holder.split("/")
    if len(parts) != 4 or not parts[1] or parts[1] != _pid_namespace():
        return False
    if parts[0] != socket.gethostname() or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but not ours to signal
        return False
    return False


async def reserve(
    session: AsyncSession,
    *,
    token_id: int,
    amount: int,
    holder: str,
    request_id: str,
    model: str,
) -> int | None:
    """Take `amount` from a limited token and record it, in one transaction; the reservation's
    id (0 when there was nothing to take), or None when the token has not enough quota (or is
    disabled).

    The conditional UPDATE is the check: two concurrent reservations can never both see the same
    remaining quota (One API's check-then-decrement race)."""
    taken = await session.exec(
        update(Token)
        .where(col(Token.id) == token_id)
        .where(col(Token.status) == TokenStatus.ENABLED)
        .where(col(Token.remain_quota) >= amount)
        .where(col(Token.remain_quota) > 0)
        .values(
            remain_quota=col(Token.remain_quota) - amount,
            used_quota=col(Token.used_quota) + amount,
        )
    )
    if not taken.rowcount:
        await session.rollback()
        return None
    if not amount:  # a free model: nothing in flight to keep
        await session.commit()
        return 0
    row = QuotaReservation(
        token_id=token_id, amount=amount, holder=holder, request_id=request_id, model=model
    )
    session.add(row)
    await session.flush()
    rid = row.id
    await session.commit()
    return rid


class ReservationLedger:
    """This process's lease, and the recovery of other holders' orphaned reservations."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, lease_s: float = LEASE_S
    ) -> None:
        self._sessions = sessions
        self.lease_s = lease_s
        self.holder = new_holder()
        self.recovered = 0  # reservations this process refunded for dead holders
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reservation-lease")

    async def _run(self) -> None:
        while True:
            try:
                await self.renew()
                await self.recover()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("reservation lease/recovery failed, will retry: %s", exc)
            await asyncio.sleep(self.lease_s / 6)

    async def renew(self) -> None:
        expires = time.time() + self.lease_s
        async with self._sessions() as session:
            result = await session.exec(
                update(GatewayLease)
                .where(col(GatewayLease.holder) == self.holder)
                .values(expires_at=expires)
            )
            if not result.rowcount:
                session.add(GatewayLease(holder=self.holder, expires_at=expires))
            await session.commit()

    async def recover(self) -> int:
        """Refund every reservation whose holder is gone; returns how many this call refunded."""
        now = time.time()
        async with self._sessions() as session:
            leases = (await session.exec(select(GatewayLease))).all()
            live = {x.holder for x in leases if x.expires_at > now and not gone_here(x.holder)}
            live.add(self.holder)
            # A holder writes its lease before it serves, but a reservation younger than a
            # lease may still belong to a process whose first lease write is in flight.
            orphans = [
                r
                for r in (await session.exec(select(QuotaReservation))).all()
                if r.holder not in live
                and (gone_here(r.holder) or r.created_at < now - self.lease_s)
            ]
            refunded = 0
            for r in orphans:
                took = await session.exec(
                    delete(QuotaReservation).where(col(QuotaReservation.id) == r.id)
                )
                if not took.rowcount:  # another process recovered it first
                    continue
                await self._refund(session, r, now)
                refunded += 1
            dead = [x.holder for x in leases if x.holder not in live]
            if dead:
                await session.exec(delete(GatewayLease).where(col(GatewayLease.holder).in_(dead)))
            await session.commit()
        if refunded:
            self.recovered += refunded
            log.warning("refunded %d quota reservation(s) left by stopped processes", refunded)
        return refunded

    async def _refund(self, session: AsyncSession, r: QuotaReservation, now: float) -> None:
        await session.exec(
            update(Token)
            .where(col(Token.id) == r.token_id)
            .values(
                remain_quota=col(Token.remain_quota) + r.amount,
                used_quota=col(Token.used_quota) - r.amount,
            )
        )
        name = (await session.exec(select(Token.name).where(col(Token.id) == r.token_id))).first()
        session.add(
            UsageLog(
                created_at=now,
                request_id=r.request_id,
                token_id=r.token_id,
                token_name=name or "",
                model=r.model,
                status=RECOVERED_STATUS,
                error=(
                    f"the gateway process stopped before this request was settled; its "
                    f"reservation of {r.amount} quota units was refunded"
                ),
            )
        )

    async def close(self) -> None:
        """Stop renewing and drop the lease: called after the usage writer's last flush, so
        whatever is still reserved (a flush that failed) is left for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with self._sessions() as session:
                await session.exec(
                    delete(GatewayLease).where(col(GatewayLease.holder) == self.holder)
                )
                await session.commit()
