"""Cache invalidation between gateway processes: Redis pub/sub where configured, and always the
database's change log (gateway.cluster.changes), so `--workers N` without Redis agrees too and a
Redis outage delays nothing by more than a poll.

Every process keeps what the hot path reads in memory (token cache, route table, prices). An admin
write lands on one process; that process publishes `{"origin": <its id>, "kind": ...}` on one Redis
channel and every other process applies the same invalidation locally. Messages carry no data,
only "reload X": the database stays the source of truth, so a lost message costs staleness until
the next write or the token cache TTL, never a wrong answer that lasts.

Handlers apply a message with the change bus's `LocalChanges` (gateway.changes), so applying
a remote message never publishes again. A message may arrive twice (pub/sub and the log): every handler is a reload, so that costs
one more reload, never a wrong state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from gateway.cluster.changes import ChangeLog, Sessions

log = logging.getLogger("modelport.cluster")

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class ClusterBus:
    """Publish invalidations and apply the ones other processes send."""

    def __init__(
        self, redis_url: str, *, prefix: str = "modelport", sessions: Sessions | None = None
    ) -> None:
        self.origin = secrets.token_hex(8)
        self.channel = f"{prefix}:cluster:invalidate"
        self._redis: Redis | None = Redis.from_url(redis_url) if redis_url else None
        self.log = ChangeLog(sessions, self.origin, self._dispatch) if sessions else None
        self._handlers: dict[str, Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.received = 0  # remote messages applied (for tests and metrics)

    @property
    def enabled(self) -> bool:
        return self._redis is not None or self.log is not None

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    async def publish(self, kind: str, **data: Any) -> None:
        """Tell the other processes; an outage is logged, never fails the admin write."""
        if self.log is not None:
            try:
                await self.log.publish(kind, data)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("cannot record %s change: %s", kind, exc)
        if self._redis is None:
            return
        message = orjson.dumps({"origin": self.origin, "kind": kind, **data})
        try:
            await self._redis.publish(self.channel, message)
        except (RedisError, OSError) as exc:
            log.warning("cannot publish %s invalidation: %s", kind, exc)

    async def catch_up(self) -> None:
        """Apply what other processes recorded before this call (the change log; Redis messages
        arrive by themselves). An outage is logged: the caller answers from what it has."""
        if self.log is None:
            return
        try:
            await self.log.catch_up()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("change log catch-up failed: %s", exc)

    async def start(self) -> None:
        """Subscribe before returning, so a write made right after startup is not missed."""
        if self.log is not None:
            await self.log.start()
        if self._redis is None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5.0)

    async def close(self) -> None:
        if self.log is not None:
            await self.log.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            await self._redis.aclose()

    async def _run(self) -> None:
        """Listen for ever; on a lost connection, resubscribe and reload everything (messages
        sent while we were away are gone)."""
        assert self._redis is not None
        first = True
        while True:
            try:
                async with self._redis.pubsub() as ps:
                    await ps.subscribe(self.channel)
                    self._subscribed.set()
                    if not first:
                        await self._apply_all()
                    first = False
                    async for message in ps.listen():
                        if message.get("type") == "message":
                            await self._apply(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("cluster bus lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(1.0)

    async def _apply(self, raw: bytes) -> None:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(msg, dict) or msg.get("origin") == self.origin:
            return
        await self._dispatch(msg)

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        handler = self._handlers.get(str(msg.get("kind")))
        if handler is None:
            return
        self.received += 1
        await self._call(handler, msg)

    async def _apply_all(self) -> None:
        for handler in self._handlers.values():
            await self._call(handler, {"kind": "*"})

    @staticmethod
    async def _call(handler: Handler, msg: dict[str, Any]) -> None:
        """A failing reload (database briefly away) must not stop the listener."""
        try:
            await handler(msg)
        except (OSError, RedisError, SQLAlchemyError, RuntimeError, ValueError) as exc:
            log.warning("applying %s invalidation failed: %s", msg.get("kind"), exc)
