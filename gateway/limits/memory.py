"""In-process limiter: exact for one gateway process (no await between check and update)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.limits.base import Ask, Lease, check_window, refuse, settled_cost, window_of


@dataclass(slots=True)
class _Counters:
    window: int = 0
    requests: int = 0
    tokens: int = 0
    in_flight: int = 0


class MemoryLimiter:
    def __init__(self, *, global_cap: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.global_cap = global_cap
        self.clock = clock  # wall clock of the RPM/TPM windows; tests replace it to decide time
        self._tokens: dict[int, _Counters] = {}
        self._global = 0

    async def acquire(self, ask: Ask) -> Lease | None:
        return self.acquire_now(ask)

    def acquire_now(self, ask: Ask) -> Lease | None:
        if not (ask.limited or self.global_cap):
            return None
        now = self.clock()
        if self.global_cap and self._global >= self.global_cap:
            raise refuse("global", ask, now)
        lease = Lease(token_id=ask.token_id)
        if ask.limited:
            c = self._tokens.get(ask.token_id)
            if c is None:
                c = self._tokens[ask.token_id] = _Counters()
            win = window_of(now)
            if c.window != win:
                c.window, c.requests, c.tokens = win, 0, 0
            if ask.max_concurrency and c.in_flight >= ask.max_concurrency:
                raise refuse("concurrency", ask, now)
            reason = check_window(c.requests, c.tokens, rpm=ask.rpm, tpm=ask.tpm, cost=ask.cost)
            if reason:
                raise refuse(reason, ask, now)
            c.requests += 1
            if ask.tpm:
                c.tokens += ask.cost
                lease.window, lease.reserved = win, ask.cost
            if ask.max_concurrency:
                c.in_flight += 1
                lease.token_slot = True
        if self.global_cap:
            self._global += 1
            lease.global_slot = True
        return lease

    def release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        if lease.global_slot:
            self._global -= 1
        if lease.token_slot and (c := self._tokens.get(lease.token_id)) is not None:
            c.in_flight -= 1

    def settle(self, lease: Lease, actual_tokens: int) -> None:
        if lease.settled or not lease.reserved:
            return
        lease.settled = True
        c = self._tokens.get(lease.token_id)
        if c is not None and c.window == lease.window:
            c.tokens = max(0, c.tokens + settled_cost(actual_tokens) - lease.reserved)

    def in_flight(self) -> int:
        return self._global if self.global_cap else sum(c.in_flight for c in self._tokens.values())

    def window_counts(self, token_id: int) -> tuple[int, int, int]:
        """(requests, tokens, in flight) of the token's current window, for tests and metrics."""
        c = self._tokens.get(token_id)
        if c is None or c.window != window_of(self.clock()):
            return 0, 0, c.in_flight if c else 0
        return c.requests, c.tokens, c.in_flight

    async def aclose(self) -> None:
        return None
