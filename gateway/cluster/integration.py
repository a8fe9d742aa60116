"""Plug scale-out into an app built by gateway.app.create_app (called by `_install_extensions`).

Publishing is the app's change bus (gateway.cluster.publishing, built by create_app); here the
cluster bus applies what other processes publish with the bus's `LocalChanges` (so a change
received is never published again). The route table's `set_local` is wrapped so local
supervisor replicas and node workers of the same UID are routed together.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from gateway.auth.secrets import load_or_create_key
from gateway.cluster import secret
from gateway.cluster.api import router
from gateway.cluster.changes import DatabaseNodeStore
from gateway.cluster.heartbeat import ReplayGuard
from gateway.cluster.namespace import namespace
from gateway.cluster.nodes import NodeRegistry, NodeStore
from gateway.cluster.publishing import PublishingChanges
from gateway.db.crud.channels import ensure_local_channel
from gateway.model_info import ServedModel
from gateway.runtime_host.host import HostRuntime
from gateway.upstreams.base import Endpoint


def install(app: FastAPI) -> None:
    state: Any = app.state
    settings = state.settings
    changes: PublishingChanges = state.changes
    bus, local = changes.bus, changes.local
    store: NodeStore = DatabaseNodeStore(state.sessions)
    local_channel = {"id": 0}

    async def nodes_changed() -> None:
        await bus.publish("nodes")

    key = settings.secret_key
    local_root = secret.local_root(
        key.get_secret_value() if key else load_or_create_key(settings.home)
    )
    if state.runtime is not None:  # its workers' keys must be derivable by every process here
        state.runtime.options.worker_key_root = local_root
    routes = state.routes
    original_set_local: Callable[[str, list[Endpoint]], None] = routes.set_local
    registry = NodeRegistry(
        store=store,
        set_local=original_set_local,
        channel_id=lambda: local_channel["id"],
        ttl=settings.node_ttl_s,
        host_scope=f"{socket.gethostname()}:{settings.home}",
        on_change=nodes_changed,
        secret=secret.configured(settings.cluster_secret),
        local_root=local_root,
        first_byte_timeout_s=settings.local_first_byte_timeout_s,
    )
    routes.set_local = registry.set_local

    # --- apply what the others publish --------------------------------------------------------
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

    # --- node workers in /v1/models and the exports -----------------------------------------
    previous_local = state.models.local

    def served_models() -> dict[str, ServedModel]:
        return {**registry.served_models(), **previous_local()}

    state.models.local = served_models
    state.nodes = registry
    state.heartbeat_replays = ReplayGuard(settings.redis_url, namespace(settings))
    host = HostRuntime(app, registry) if state.runtime is not None else None
    state.host_runtime = host

    async def on_startup(app: FastAPI) -> None:
        async with state.sessions() as session:
            local_channel["id"] = (await ensure_local_channel(session)).id or 0
        await bus.start()
        registry.start()
        if host is not None:
            host.start()

    async def on_shutdown(app: FastAPI) -> None:
        if host is not None:
            await host.close()
        await registry.close()
        await state.heartbeat_replays.aclose()
        await changes.aclose()
        await bus.close()

    if host is not None:
        host.guard()  # the host lock decides, at startup, whether this process runs workers
    state.startup_hooks.append(on_startup)
    state.shutdown_hooks.append(on_shutdown)  # hooks run in reverse: before the runtime stops
    app.include_router(router)
