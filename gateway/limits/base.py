"""What the limits mean, shared by both backends.

- RPM and TPM are counted in fixed one-minute windows (`window_of`). A request is admitted when
  the window still has room for one more request and for its token estimate (prompt + max
  output); the estimate is reserved at once and corrected with the real usage afterwards
  (`Limiter.settle`), so a burst of concurrent requests cannot overshoot TPM while they run.
- A request whose estimate alone exceeds the token's TPM can never be admitted: it gets a 429 that
  says so (lower max_tokens) instead of a Retry-After that would never help.
- Concurrency (per token and the global cap) is a slot held from admission until the response
  ends -- stream end, client disconnect or error -- and released exactly once (`Lease.released`).

Releases and settlements are synchronous calls: they run from cleanup code that may itself be
cancelled (a client that went away), where awaiting is not safe. The Redis backend turns them
into background tasks it tracks and drains at shutdown.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gateway.errors import RateLimited

if TYPE_CHECKING:
    from gateway.auth.tokens import Caller
    from gateway.settings import Settings

WINDOW_S = 60


def window_of(now: float) -> int:
    """The start (unix seconds) of the one-minute window `now` falls in."""
    return int(now // WINDOW_S) * WINDOW_S


def seconds_left(now: float) -> float:
    return max(1.0, window_of(now) + WINDOW_S - now)


@dataclass(slots=True)
class Lease:
    """What one admitted request holds; give it back through the limiter that issued it."""

    token_id: int
    window: int = 0
    reserved: int = 0  # TPM tokens reserved in `window`
    global_slot: bool = False
    token_slot: bool = False
    lease_id: str = field(default_factory=lambda: secrets.token_hex(8))
    released: bool = False
    settled: bool = False
    local: bool = False  # counted in this process (the shared store was unreachable)


@dataclass(frozen=True, slots=True)
class Ask:
    """One admission question: the caller's limits and this request's token estimate."""

    token_id: int
    name: str
    rpm: int
    tpm: int
    max_concurrency: int
    cost: int  # token estimate (only meaningful when tpm > 0)

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_concurrency)


def refuse(reason: str, ask: Ask, now: float) -> RateLimited:
    """The 429 for a refusal reason reported by a backend."""
    if reason == "global":
        return RateLimited(
            "the gateway is at its concurrent request limit; retry shortly",
            retry_after=1,
            code="server_busy",
        )
    if reason == "concurrency":
        return RateLimited(
            f"token '{ask.name}' already has {ask.max_concurrency} requests in flight (its "
            "concurrency limit); wait for one to finish",
            retry_after=1,
        )
    if reason == "rpm":
        return RateLimited(
            f"token '{ask.name}' reached its limit of {ask.rpm} requests per minute",
            retry_after=seconds_left(now),
        )
    if ask.cost > ask.tpm:
        return RateLimited(
            f"this request may use up to {ask.cost} tokens, more than token '{ask.name}' may use "
            f"per minute ({ask.tpm}): lower max_tokens or shorten the prompt",
            code="tpm_exceeded",
        )
    return RateLimited(
        f"token '{ask.name}' reached its limit of {ask.tpm} tokens per minute",
        retry_after=seconds_left(now),
    )


def check_window(requests: int, tokens: int, *, rpm: int, tpm: int, cost: int) -> str | None:
    """The rule both backends apply to a window's counters: None admits, else the reason."""
    if rpm and requests >= rpm:
        return "rpm"
    if tpm and tokens + cost > tpm:
        return "tpm"
    return None


def settled_cost(actual: int) -> int:
    return max(0, math.ceil(actual))


class Limiter(Protocol):
    async def acquire(self, ask: Ask) -> Lease | None:
        """Admit or raise RateLimited; None when nothing limits this request."""
        ...

    def release(self, lease: Lease) -> Awaitable[None] | None:
        """Free the lease's slots (once). A shared backend returns its pending write: await it
        (shielded) before answering, so the next request already finds the slot free."""
        ...

    def settle(self, lease: Lease, actual_tokens: int) -> None: ...

    def in_flight(self) -> int:
        """Slots held through this process (for /metrics)."""
        ...

    async def aclose(self) -> None: ...


def ask_for(caller: Caller, cost: int) -> Ask:
    return Ask(
        token_id=caller.token_id,
        name=caller.name,
        rpm=caller.rpm,
        tpm=caller.tpm,
        max_concurrency=caller.max_concurrency,
        cost=cost,
    )


def make_limiter(settings: Settings) -> Limiter:
    from gateway.cluster.namespace import namespace

    if settings.redis_url:
        from gateway.limits.redis import RedisLimiter

        return RedisLimiter(
            settings.redis_url,
            global_cap=settings.max_concurrent_requests,
            lease_ttl=settings.concurrency_lease_ttl_s,
            prefix=f"{namespace(settings)}:lim",
        )
    from gateway.limits.memory import MemoryLimiter

    return MemoryLimiter(global_cap=settings.max_concurrent_requests)


async def await_release(pending: Awaitable[None] | None) -> None:
    """Wait for what `Limiter.release` returned before answering; shielded, so a client going
    away mid-wait cannot cancel the write itself."""
    if pending is not None:
        await asyncio.shield(pending)
