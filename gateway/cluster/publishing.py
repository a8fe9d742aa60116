"""The change bus when there are other gateway processes to tell (gateway.changes).

Each change is applied here first, then published on the cluster bus (Redis and the database's
change log); the other processes apply it with their own `LocalChanges`. Token invalidations
and auto-disables are published in the background, as before issue 16: the token cache drop is
synchronous for its callers and a disable happens inside a relayed request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.changes import LocalChanges
from gateway.cluster.pubsub import ClusterBus


class PublishingChanges:
    def __init__(self, local: LocalChanges, bus: ClusterBus) -> None:
        self.local = local
        self.bus = bus
        self._tasks: set[asyncio.Task[None]] = set()

    async def routes_changed(self) -> None:
        await self.local.routes_changed()
        await self.bus.publish("routes")

    async def tokens_changed(self, token_ids: list[int]) -> None:
        await self.local.tokens_changed(token_ids)
        self._publish_soon("tokens")

    async def prices_changed(self) -> None:
        await self.local.prices_changed()
        await self.bus.publish("prices")

    def channel_disabled(self, channel_id: int) -> None:
        self.local.channel_disabled(channel_id)
        self._publish_soon("drop_channel", channel_id=channel_id)

    async def aclose(self) -> None:
        """Wait for the background publishes (before the bus closes)."""
        for task in list(self._tasks):
            await task

    def _publish_soon(self, kind: str, **data: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.bus.publish(kind, **data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
