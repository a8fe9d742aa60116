"""How the channel and token services announce a write (issue 16's change bus, first step).

A service calls its notifier once after every write that changes what routes or who may call;
it never reloads a route table or drops a cache itself. `StateNotifier` is the one the app
builds: it calls `app.state.reload_routes` and `app.state.auth.invalidate` as they are *at call
time*, so the wrappers that gateway.cluster.integration installs later (reload here, then publish
to the other replicas) apply without the services knowing about the cluster.
"""

from __future__ import annotations

from typing import Any, Protocol


class ChangeNotifier(Protocol):
    async def routes_changed(self) -> None:
        """Channels changed: rebuild the route table (here and on every replica)."""

    async def tokens_changed(self, token_ids: list[int]) -> None:
        """Tokens were created, changed or deleted: cached lookups of them are stale."""


class StateNotifier:
    def __init__(self, state: Any) -> None:
        self._state = state

    async def routes_changed(self) -> None:
        await self._state.reload_routes()

    async def tokens_changed(self, token_ids: list[int]) -> None:
        # The cache is keyed by key digest, not id, so the whole of it goes.
        self._state.auth.invalidate()


class SilentNotifier:
    """For startup, which writes before anything is cached and rebuilds routes once afterwards."""

    async def routes_changed(self) -> None:
        return None

    async def tokens_changed(self, token_ids: list[int]) -> None:
        return None
