"""Waiting for a condition instead of sleeping for it, and clocks tests set by hand.

A bound here is generous on purpose: it is how long a loaded CI machine may take before the test
gives up, never a claim about speed (timings belong in bench/).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T],
    what: str,
    limit_s: float = 60.0,
    every_s: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll until `check()` is truthy and return it; AssertionError naming `what` past the bound.
    Exceptions in `ignore` (a server still starting: connection refused) count as not yet."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            value = check()
        except ignore:
            pass
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {what}")
        time.sleep(every_s)


class ManualClock:
    """A wall clock that moves only when the test says so (`advance`), for injected `clock=`s."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
