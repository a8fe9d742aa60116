"""Guessing limits: failed credential attempts per key (client address, username), counted
*before* the credential is checked.

A limiter that checks the count, verifies, and records the failure afterwards lets N parallel
guesses all pass the check before the first failure is recorded (40 concurrent UI logins were all
evaluated). Here `acquire` takes a slot on every key before verification; `release` turns it into
a recorded failure or gives it back. Attempts in flight count like failures, so at most `limit`
guesses per key are ever evaluated in `window_s`, however many arrive at once. A success is never
recorded: a valid credential costs nothing after it is known.

The counts are in-process (per replica), like the UI sessions' cache: N replicas behind one
balancer allow at most N times the limit, still a constant.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.errors import RateLimited

# Defaults (failed attempts per client address per minute) of the Settings fields
# admin_token_failures, api_key_failures, ui_login_failures and auth_failure_window_s.
UI_LOGIN_FAILURES = 5  # also per username
ADMIN_TOKEN_FAILURES = 20
API_KEY_FAILURES = 30
WINDOW_S = 60.0
MAX_KEYS = 100_000  # a flood of random usernames or addresses cannot grow the table forever


@dataclass(slots=True)
class _Slot:
    failures: deque[float] = field(default_factory=deque)
    pending: int = 0


class AttemptLimiter:
    def __init__(self, *, limit: int, window_s: float = WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock: Callable[[], float] = time.monotonic  # tests replace it to decide time
        self._slots: dict[str, _Slot] = {}

    def _slot(self, key: str, now: float) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= MAX_KEYS:
                self._prune(now)
            slot = self._slots[key] = _Slot()
        while slot.failures and now - slot.failures[0] > self.window_s:
            slot.failures.popleft()
        return slot

    def _prune(self, now: float) -> None:
        for key, slot in list(self._slots.items()):
            if slot.pending == 0 and (not slot.failures or now - slot.failures[-1] > self.window_s):
                del self._slots[key]
        if len(self._slots) >= MAX_KEYS:  # still full: forget the idle ones
            self._slots = {k: s for k, s in self._slots.items() if s.pending}

    def acquire(self, keys: Sequence[str]) -> int:
        """0: the attempt may go ahead (a slot is taken on every key; `release` it). Else the
        seconds to wait, and nothing is taken. Synchronous, so atomic on the event loop."""
        now = self.clock()
        slots = [self._slot(k, now) for k in keys]
        wait = 0.0
        for slot in slots:
            if len(slot.failures) + slot.pending >= self.limit:
                oldest = slot.failures[0] if slot.failures else now
                wait = max(wait, self.window_s - (now - oldest), 1.0)
        if wait:
            return int(wait) + 1
        for slot in slots:
            slot.pending += 1
        return 0

    def acquire_or_raise(self, keys: Sequence[str], what: str, client: str | None) -> None:
        """`acquire`, or a 429 (RateLimited, with Retry-After) naming what was tried too often."""
        wait = self.acquire(keys)
        if wait:
            raise RateLimited(
                f"too many {what} from {client}: wait {wait}s and try again",
                retry_after=wait,
                code="too_many_failed_attempts",
            )

    def release(self, keys: Sequence[str], *, failed: bool) -> None:
        now = self.clock()
        for key in keys:
            slot = self._slot(key, now)
            slot.pending = max(0, slot.pending - 1)
            if failed:
                slot.failures.append(now)


@dataclass(slots=True)
class Guards:
    """One limiter per kind of credential; the services' `guards` (gateway.services)."""

    admin_token: AttemptLimiter = field(
        default_factory=lambda: AttemptLimiter(limit=ADMIN_TOKEN_FAILURES)
    )
    api_key: AttemptLimiter = field(default_factory=lambda: AttemptLimiter(limit=API_KEY_FAILURES))
    ui_login: AttemptLimiter = field(
        default_factory=lambda: AttemptLimiter(limit=UI_LOGIN_FAILURES)
    )

    @classmethod
    def from_limits(
        cls, *, admin_token: int, api_key: int, ui_login: int, window_s: float
    ) -> Guards:
        return cls(
            admin_token=AttemptLimiter(limit=admin_token, window_s=window_s),
            api_key=AttemptLimiter(limit=api_key, window_s=window_s),
            ui_login=AttemptLimiter(limit=ui_login, window_s=window_s),
        )


def address_key(client: str | None) -> str:
    return f"ip:{client or '?'}"
