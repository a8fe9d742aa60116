"""Counting what the channel and token services announce on a running gateway."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def count_announcements(app: Any) -> Counter[str]:
    """Wrap the app's change bus (gateway.changes), which the services were built with:
    `routes` counts route reloads, `tokens` token-cache drops."""
    counts: Counter[str] = Counter()
    changes = app.state.services.changes
    routes_changed, tokens_changed = changes.routes_changed, changes.tokens_changed

    async def counted_routes() -> None:
        counts["routes"] += 1
        await routes_changed()

    async def counted_tokens(token_ids: list[int]) -> None:
        counts["tokens"] += 1
        await tokens_changed(token_ids)

    changes.routes_changed = counted_routes
    changes.tokens_changed = counted_tokens
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
