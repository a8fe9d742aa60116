"""Plug scale-out into an app built by gateway.app.create_app (called by `_install_extensions`).

Existing callers are not changed: `app.state.reload_routes`, `app.state.auth.invalidate`, the
monitor's reload and the dispatcher's auto-disable are wrapped so that they also publish on the
cluster bus, and the bus applies what other processes publish with the unwrapped originals (so a
remote invalidation is never re-published). The route table's `set_local` is wrapped so local
supervisor replicas and node workers of the same UID are routed together.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from gateway.auth.secrets import load_or_create_key
from gateway.bootstrap import load_prices
from gateway.cluster import secret
from gateway.cluster.api import router
from gateway.cluster.changes import DatabaseNodeStore
from gateway.cluster.heartbeat import ReplayGuard
from gateway.cluster.namespace import namespace
from gateway.cluster.nodes import NodeRegistry, NodeStore
from gateway.cluster.pubsub import ClusterBus
from gateway.db.crud.channels import ensure_local_channel
from gateway.model_info import ServedModel
from gateway.runtime_host.host import HostRuntime
from gateway.upstreams.base import Endpoint


def install(app: FastAPI) -> None:
    state: Any = app.state
    settings = state.settings
    prefix = namespace(settings)  # two installations may share one Redis (cluster.namespace)
    bus = ClusterBus(settings.redis_url, prefix=prefix, sessions=state.sessions)
    store: NodeStore = DatabaseNodeStore(state.sessions)
    local_channel = {"id": 0}
    tasks: set[asyncio.Task[None]] = set()

    def publish_soon(kind: str, **data: Any) -> None:
        """For synchronous callers (auth.invalidate, auto-disable): publish from the loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(bus.publish(kind, **data))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

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

    # --- publish after every local write ----------------------------------------------------
    reload_routes = state.reload_routes
    invalidate = state.auth.invalidate

    async def reload_routes_everywhere() -> None:
        await reload_routes()
        await bus.publish("routes")

    def invalidate_everywhere() -> None:
        invalidate()
        publish_soon("tokens")

    async def reload_prices() -> None:
        async with state.sessions() as session:
            state.prices.replace(await load_prices(session, settings))

    async def reload_prices_everywhere() -> None:
        await reload_prices()
        await bus.publish("prices")

    state.reload_routes = reload_routes_everywhere
    state.auth.invalidate = invalidate_everywhere
    state.reload_prices = reload_prices_everywhere
    state.monitor.reload_routes = reload_routes_everywhere
    on_disable = state.dispatcher.on_disable
    if on_disable is not None:

        def disable_everywhere(ep: Endpoint, reason: str) -> None:
            on_disable(ep, reason)
            publish_soon("drop_channel", channel_id=ep.channel_id)

        state.dispatcher.on_disable = disable_everywhere

    # --- apply what the others publish --------------------------------------------------------
    async def on_routes(msg: dict[str, Any]) -> None:
        await reload_routes()

    async def on_tokens(msg: dict[str, Any]) -> None:
        invalidate()

    async def on_drop(msg: dict[str, Any]) -> None:
        if "channel_id" in msg:
            routes.drop_channel(int(msg["channel_id"]))

    async def on_nodes(msg: dict[str, Any]) -> None:
        await registry.sync()

    async def on_prices(msg: dict[str, Any]) -> None:
        await reload_prices()

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
    state.bus = bus
    state.nodes = registry
    state.heartbeat_replays = ReplayGuard(settings.redis_url, prefix)
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
        await bus.close()
        for task in list(tasks):
            await task

    if host is not None:
        host.guard()  # the host lock decides, at startup, whether this process runs workers
    state.startup_hooks.append(on_startup)
    state.shutdown_hooks.append(on_shutdown)  # hooks run in reverse: before the runtime stops
    app.include_router(router)
