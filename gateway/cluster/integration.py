"""Scale-out's factory: `build_cluster(...)` builds the GPU nodes' registry and subscribes the
cluster bus to what other processes publish; build_gateway calls it, before create_app builds
the runtime, which routes through the registry (issue 16).

Publishing is the app's change bus (gateway.cluster.publishing, built by build_gateway); here the
cluster bus applies what other processes publish with the bus's `LocalChanges` (so a change
received is never published again). The route table's `set_local` is composed explicitly: the
registry is built on the table's own, and the supervisor's replicas go through
`registry.set_local`, so local replicas and node workers of the same UID are routed together.
Nothing here assigns attributes of other objects (tests/gateway/test_composition.py).
"""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from gateway.changes import ChangeBus
from gateway.cluster import secret
from gateway.cluster.changes import DatabaseNodeStore
from gateway.cluster.heartbeat import ReplayGuard
from gateway.cluster.namespace import namespace
from gateway.cluster.nodes import NodeRegistry
from gateway.cluster.pubsub import ClusterBus
from gateway.db.crud.channels import ensure_local_channel
from gateway.routing import RouteTable
from gateway.settings import Settings


@dataclass
class Cluster:
    sessions: Any  # async_sessionmaker
    bus: ClusterBus
    changes: ChangeBus
    nodes: NodeRegistry
    heartbeat_replays: ReplayGuard
    # the root every worker key of this installation derives from (gateway.cluster.secret)
    local_root: str
    local_channel: dict[str, int] = field(default_factory=lambda: {"id": 0})

    async def start(self, stack: AsyncExitStack) -> None:
        async with self.sessions() as session:
            self.local_channel["id"] = (await ensure_local_channel(session)).id or 0
        stack.push_async_callback(self.bus.close)
        stack.push_async_callback(self.changes.aclose)  # background publishes, before the bus
        await self.bus.start()
        stack.push_async_callback(self.heartbeat_replays.aclose)
        self.nodes.start()
        stack.push_async_callback(self.nodes.close)


def build_cluster(
    settings: Settings,
    *,
    secret_key: str,
    sessions: Any,
    routes: RouteTable,
    bus: ClusterBus,
    changes: ChangeBus,
) -> Cluster:
    """`secret_key`: the installation's (configured, or the home's key file), which
    build_gateway has already read."""
    local = changes.local
    local_channel = {"id": 0}

    async def nodes_changed() -> None:
        await bus.publish("nodes")

    local_root = secret.local_root(secret_key)
    registry = NodeRegistry(
        store=DatabaseNodeStore(sessions),
        set_local=routes.set_local,
        channel_id=lambda: local_channel["id"],
        ttl=settings.node_ttl_s,
        host_scope=f"{socket.gethostname()}:{settings.home}",
        on_change=nodes_changed,
        secret=secret.configured(settings.cluster_secret),
        local_root=local_root,
        first_byte_timeout_s=settings.local_first_byte_timeout_s,
    )

    async def on_routes(msg: dict[str, Any]) -> None:
        await local.routes_changed()

    async def on_tokens(msg: dict[str, Any]) -> None:
        await local.tokens_changed([])

    async def on_drop(msg: dict[str, Any]) -> None:
        if "channel_id" in msg:
            routes.drop_channel(int(msg["channel_id"]))

    async def on_nodes(msg: dict[str, Any]) -> None:
        await registry.sync()

    async def on_prices(msg: dict[str, Any]) -> None:
        await local.prices_changed()

    for kind, handler in (
        ("routes", on_routes),
        ("tokens", on_tokens),
        ("drop_channel", on_drop),
        ("nodes", on_nodes),
        ("prices", on_prices),
    ):
        bus.on(kind, handler)
    return Cluster(
        sessions=sessions,
        bus=bus,
        changes=changes,
        nodes=registry,
        heartbeat_replays=ReplayGuard(settings.redis_url, namespace(settings)),
        local_root=local_root,
        local_channel=local_channel,
    )
