"""Redis limiter: one Lua script checks and updates every counter atomically, so all gateway
replicas share the limits without a race between check and increment.

Concurrency slots are sorted-set members scored by their expiry: `lease_ttl` seconds (15 by
default) from admission, pushed forward every `lease_ttl / 3` seconds by the replica while the
request lives (`_refresh`). Expired members are swept on every admission, so the slots of a
replica that was SIGKILLed, or that lost Redis while releasing, come back within `lease_ttl`
seconds instead of after the longest request could run. RPM/TPM counters are plain keys per
window that expire after two windows.

When Redis is unreachable the limits are still enforced, per replica (a MemoryLimiter), rather
than answering 503 to every limited token: during an outage a token may get up to one limit per
replica, which costs less than refusing every limited caller (quota is enforced in the database
either way). Each lease remembers where it was counted, and is released there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.limits.base import WINDOW_S, Ask, Lease, refuse, settled_cost, window_of
from gateway.limits.memory import MemoryLimiter

log = logging.getLogger("modelport.limits")

PREFIX = "mp:lim"

_ADMIT = """
local now = tonumber(ARGV[1])
local stale = now
local expires = now + tonumber(ARGV[3])
local gcap = tonumber(ARGV[4])
local ccap = tonumber(ARGV[5])
local rpm = tonumber(ARGV[6])
local tpm = tonumber(ARGV[7])
local cost = tonumber(ARGV[8])
if gcap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stale)
  if redis.call('ZCARD', KEYS[1]) >= gcap then return 'global' end
end
if ccap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', stale)
  if redis.call('ZCARD', KEYS[2]) >= ccap then return 'concurrency' end
end
if rpm > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= rpm then return 'rpm' end
if tpm > 0 and tonumber(redis.call('GET', KEYS[4]) or '0') + cost > tpm then return 'tpm' end
if rpm > 0 then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[9])
end
if tpm > 0 then
  redis.call('INCRBY', KEYS[4], cost)
  redis.call('EXPIRE', KEYS[4], ARGV[9])
end
if gcap > 0 then
  redis.call('ZADD', KEYS[1], expires, ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if ccap > 0 then
  redis.call('ZADD', KEYS[2], expires, ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 'ok'
"""


class RedisLimiter:
    def __init__(
        self,
        url: str,
        *,
        global_cap: int = 0,
        lease_ttl: float = 15.0,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.global_cap = global_cap
        self.lease_ttl = max(2, int(lease_ttl))
        self.prefix = prefix
        self.clock = clock  # wall clock of the RPM/TPM windows; tests replace it to decide time
        self._redis: Redis = Redis.from_url(url)
        self._admit = self._redis.register_script(_ADMIT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._held = 0
        self._live: dict[str, list[str]] = {}  # lease id -> its slot keys, while the request lives
        self._local = MemoryLimiter(global_cap=global_cap, clock=lambda: self.clock())
        self._degraded = False  # logged once per outage
        self._refresher: asyncio.Task[None] | None = None

    def _keys(self, token_id: int, win: int) -> list[str]:
        p = self.prefix
        return [
            f"{p}:global",
            f"{p}:conc:{token_id}",
            f"{p}:rpm:{token_id}:{win}",
            f"{p}:tpm:{token_id}:{win}",
        ]

    async def acquire(self, ask: Ask) -> Lease | None:
        if not (ask.limited or self.global_cap):
            return None
        now = self.clock()
        win = window_of(now)
        lease = Lease(token_id=ask.token_id, window=win)
        try:
            verdict = await self._admit(
                keys=self._keys(ask.token_id, win),
                args=[
                    now,
                    lease.lease_id,
                    self.lease_ttl,
                    self.global_cap,
                    ask.max_concurrency,
                    ask.rpm,
                    ask.tpm,
                    ask.cost if ask.tpm else 0,
                    2 * WINDOW_S,
                ],
            )
        except (RedisError, OSError) as exc:
            if not self._degraded:
                log.warning("limiter: Redis unreachable (%s); limits count per replica", exc)
                self._degraded = True
            local = self._local.acquire_now(ask)
            if local is not None:
                local.local = True
            return local
        if self._degraded:
            log.warning("limiter: Redis is back; limits are shared again")
            self._degraded = False
        reason = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        if reason != "ok":
            raise refuse(reason, ask, now)
        lease.reserved = ask.cost if ask.tpm else 0
        lease.global_slot = bool(self.global_cap)
        lease.token_slot = bool(ask.max_concurrency)
        if lease.global_slot or lease.token_slot:
            self._held += 1
            keys = self._keys(ask.token_id, win)
            self._live[lease.lease_id] = [keys[0]] * lease.global_slot + [
                keys[1]
            ] * lease.token_slot
            if self._refresher is None or self._refresher.done():
                self._refresher = asyncio.get_running_loop().create_task(
                    self._refresh(), name="limiter-lease-refresh"
                )
        return lease

    async def _refresh(self) -> None:
        """Push the expiry of every live slot forward; a holder that dies stops doing this, and
        its slots expire. `XX`: a slot already released (or swept) is never re-created."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            if not self._live:
                continue
            expires = self.clock() + self.lease_ttl
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for lease_id, keys in list(self._live.items()):
                        for key in keys:
                            pipe.zadd(key, {lease_id: expires}, xx=True)
                            pipe.expire(key, self.lease_ttl)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("limiter could not refresh %d leases: %s", len(self._live), exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def release(self, lease: Lease) -> asyncio.Task[None] | None:
        if lease.local:
            self._local.release(lease)
            return None
        if lease.released:
            return None
        lease.released = True
        if not (lease.global_slot or lease.token_slot):
            return None
        self._held -= 1
        self._live.pop(lease.lease_id, None)
        keys = self._keys(lease.token_id, lease.window)
        return self._spawn(
            self._quietly(
                "release",
                [(keys[0], lease.lease_id)] * lease.global_slot
                + [(keys[1], lease.lease_id)] * lease.token_slot,
                [],
            )
        )

    def settle(self, lease: Lease, actual_tokens: int) -> None:
        if lease.local:
            self._local.settle(lease, actual_tokens)
            return
        if lease.settled or not lease.reserved:
            return
        lease.settled = True
        delta = settled_cost(actual_tokens) - lease.reserved
        if delta:
            key = self._keys(lease.token_id, lease.window)[3]
            self._spawn(self._quietly("settle", [], [(key, delta)]))

    async def _quietly(
        self, what: str, zrem: list[tuple[str, str]], incr: list[tuple[str, int]]
    ) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, member in zrem:
                    pipe.zrem(key, member)
                for key, delta in incr:
                    pipe.incrby(key, delta)
                    pipe.expire(key, 2 * WINDOW_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the slot then expires after lease_ttl
            log.warning("limiter %s failed: %s", what, exc)

    def in_flight(self) -> int:
        return self._held + self._local.in_flight()

    async def counts(self, token_id: int) -> tuple[int, int, int]:
        """(requests, tokens, in flight) of the token's current window, for tests."""
        keys = self._keys(token_id, window_of(self.clock()))
        rpm, tpm = await self._redis.mget(keys[2], keys[3])
        conc = await self._redis.zcard(keys[1])
        return int(rpm or 0), int(tpm or 0), int(conc)

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
