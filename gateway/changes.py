"""The change bus: how a write is announced (issue 16).

A service calls the bus once after every write that changes what routes, who may call or what a
call costs; it never reloads a route table or drops a cache itself. The app builds one bus and
injects it at construction: `LocalChanges` applies a change in this process;
`gateway.cluster.publishing.PublishingChanges` applies it here and then tells the other
processes, whose cluster bus applies it with *their* `LocalChanges` (so a change received is
never published again). Nothing rebinds callables at run time to add publishing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class ChangeNotifier(Protocol):
    """What the channel and token services announce."""

    async def routes_changed(self) -> None:
        """Channels changed: rebuild the route table (here and on every replica)."""

    async def tokens_changed(self, token_ids: list[int]) -> None:
        """Tokens were created, changed or deleted: cached lookups of them are stale."""


class ChangeBus(ChangeNotifier, Protocol):
    """The whole bus the app injects: the services' announcements plus prices and auto-disable."""

    @property
    def local(self) -> LocalChanges:
        """This process's half: what startup and a change received from elsewhere apply."""

    async def prices_changed(self) -> None:
        """Model prices or options changed: reload the price book."""

    def channel_disabled(self, channel_id: int) -> None:
        """The relay auto-disabled a channel (synchronous: called from the dispatcher)."""

    async def aclose(self) -> None:
        """Finish what is still being announced (before the cluster bus closes)."""


class LocalChanges:
    """Apply each change in this process only."""

    def __init__(
        self,
        *,
        reload_routes: Callable[[], Awaitable[None]],
        invalidate_tokens: Callable[[], None],
        reload_prices: Callable[[], Awaitable[None]],
    ) -> None:
        self._reload_routes = reload_routes
        self._invalidate_tokens = invalidate_tokens
        self._reload_prices = reload_prices

    @property
    def local(self) -> LocalChanges:
        return self

    async def routes_changed(self) -> None:
        await self._reload_routes()

    async def tokens_changed(self, token_ids: list[int]) -> None:
        # The cache is keyed by key digest, not id, so the whole of it goes.
        self._invalidate_tokens()

    async def prices_changed(self) -> None:
        await self._reload_prices()

    def channel_disabled(self, channel_id: int) -> None:
        # the channel monitor already took it out of this process's route table
        return None

    async def aclose(self) -> None:
        return None


class SilentNotifier:
    """For startup, which writes before anything is cached and rebuilds routes once afterwards."""

    async def routes_changed(self) -> None:
        return None

    async def tokens_changed(self, token_ids: list[int]) -> None:
        return None
