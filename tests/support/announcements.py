"""Counting what the channel and token services announce on a running gateway."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def count_announcements(app: Any) -> Counter[str]:
    """Wrap the app's announcement targets (what gateway.changes.StateNotifier calls, looked up
    at call time): `routes` counts route reloads, `tokens` token-cache drops."""
    counts: Counter[str] = Counter()
    state = app.state
    reload_routes, invalidate = state.reload_routes, state.auth.invalidate

    async def counted_reload() -> None:
        counts["routes"] += 1
        await reload_routes()

    def counted_invalidate() -> None:
        counts["tokens"] += 1
        invalidate()

    state.reload_routes = counted_reload
    state.auth.invalidate = counted_invalidate
    return counts


def expecting(counts: Counter[str]) -> Callable[..., Any]:
    """`with expect("what", routes=1):` checks that exactly these announcements happen inside."""

    @contextmanager
    def expect(what: str, *, routes: int = 0, tokens: int = 0) -> Iterator[None]:
        before = counts.copy()
        yield
        got = (counts["routes"] - before["routes"], counts["tokens"] - before["tokens"])
        assert got == (routes, tokens), f"{what}: (routes, tokens) announced {got}"

    return expect
