"""A read that every caller sees begin after its call, shared by the callers waiting together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class SharedRead:
    """`await shared()` returns after a run of `read` that began after the call: what was
    written before it is seen. Callers that arrive while a run is in flight wait for the next
    one and share it, so a burst of callers costs one or two runs, not one each."""

    def __init__(self, read: Callable[[], Awaitable[object]]) -> None:
        self._read = read
        self._lock = asyncio.Lock()
        self._started = self._done = 0

    async def __call__(self) -> None:
        want = self._started + 1
        async with self._lock:
            if self._done >= want:
                return
            self._started += 1
            started = self._started
            try:
                await self._read()
            finally:
                self._done = started
