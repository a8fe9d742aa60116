"""The local runtime's factory (called by gateway.app.create_app after the cluster's).

With `settings.runtime_enabled`, builds the catalog and the Supervisor (its port
filled with the adapters: RuntimeSettings from the gateway's, launches in the database, replicas
as endpoints of the route table), restores
persisted launches in the background at startup, stops every worker at shutdown, feeds local UIDs
to /v1/models, tells the gateway which UIDs are launched but not serving (loading, failed: a 503,
not a 404), and mounts the Xinference and /api/runtime routes. Without the runtime the app
runs no model itself; it mounts Xinference's launch and terminate routes alone, which place
models on the GPU nodes (`modelport node`) that heartbeat to it.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError

from gateway.cluster.nodes import NodeRegistry
from gateway.db.crud.channels import ensure_local_channel
from gateway.db.tables import Option
from gateway.model_info import PendingModel, ServedModel
from gateway.runtime_host.adapters import DatabaseLaunchStore, ReplicaEndpoints, runtime_settings
from gateway.runtime_host.api import admin_router, launch_router, xinference_router
from gateway.runtime_host.front import LocalRuntime
from gateway.runtime_host.host import HostRuntime
from gateway.services import Services
from gateway.upstreams.base import Endpoint
from local_runtime.catalog import Catalog
from local_runtime.resolve import LaunchError
from local_runtime.spec import LaunchSpec
from local_runtime.supervisor import Supervisor, SupervisorOptions, UidTaken, UnknownInstance

log = logging.getLogger("modelport.runtime")


# The models that ship on PyPI (no hub needed): what `scripts/serve.sh` serves out of the box.
STARTERS = (
    LaunchSpec(model_name="smollm2-135m-instruct", model_uid="smollm2", model_type="llm"),
    LaunchSpec(model_name="all-MiniLM-L6-v2", model_uid="all-minilm", model_type="embedding"),
    LaunchSpec(model_name="whisper-tiny.en", model_uid="whisper-tiny.en", model_type="audio"),
)
STARTERS_DONE = "starter_models_launched"


async def launch_starters(runtime: LocalRuntime, sessions: Any) -> None:
    """Launch the starter models once, at the first start with `settings.starter` (later starts
    restore whatever is launched then; terminated starters stay terminated)."""
    async with sessions() as session:
        if await session.get(Option, STARTERS_DONE) is not None:
            return
        session.add(Option(key=STARTERS_DONE, value="1"))
        try:
            await session.commit()
        except IntegrityError:  # another process of `--workers N` got there first: it launches
            return
    for spec in STARTERS:
        try:
            await runtime.launch(spec, wait=False)
        except (LaunchError, UidTaken) as exc:
            log.warning("starter model %s not launched: %s", spec.model_name, exc)


@dataclass
class HostedRuntime:
    """The runtime's parts for the services object, and its start inside the app's exit stack."""

    runtime: LocalRuntime
    catalog: Catalog
    endpoints: ReplicaEndpoints
    sessions: Any
    starter: bool

    @property
    def host(self) -> HostRuntime:
        return self.runtime.host

    def served_models(self) -> dict[str, ServedModel]:
        return self.runtime.served_models()

    def pending(self, uid: str) -> PendingModel | None:
        # the front's `instance`, not the supervisor's table: with `--workers N` the processes
        # that do not run the models answer it from the owner's record (gateway.runtime_host.host)
        try:
            info = self.runtime.instance(uid)
        except UnknownInstance:
            return None
        return PendingModel(
            status=info["status"], since=info.get("loading_since"), error=info.get("error")
        )

    async def start(self, stack: AsyncExitStack) -> None:
        async with self.sessions() as session:
            self.endpoints.channel_id = (await ensure_local_channel(session)).id or 0
        stack.push_async_callback(self.runtime.close)
        await self.runtime.start()
        if self.starter:
            await launch_starters(self.runtime, self.sessions)


def build_runtime(services: Services, nodes: NodeRegistry, key_root: str) -> HostedRuntime | None:
    """The supervisor (with `runtime_enabled`), its port filled with the gateway's adapters;
    replicas are routed through the node registry's `set_local`, worker keys derive from the
    installation's `key_root` so every process of this host can reach them."""
    settings = services.settings
    if not settings.runtime_enabled:
        return None
    catalog = Catalog.load(
        builtin_dir=settings.catalog_dir, custom_dir=settings.home / "custom_models"
    )

    def route(uid: str, eps: list[Endpoint]) -> None:
        nodes.set_local(uid, eps)
        host.publish_soon()  # the other processes of `--workers N` route from its heartbeat

    endpoints = ReplicaEndpoints(route)
    supervisor = Supervisor(
        settings=runtime_settings(settings),
        catalog=catalog,
        store=DatabaseLaunchStore(services.sessions),
        on_replicas=endpoints,
        options=SupervisorOptions(
            worker_env=services.image_links.worker_env(), worker_key_root=key_root
        ),
    )
    host = HostRuntime(supervisor, nodes, sessions=services.sessions, home=settings.home)
    return HostedRuntime(
        # the host lock decides, at startup, whether this process runs the workers
        runtime=LocalRuntime(supervisor, host),
        catalog=catalog,
        endpoints=endpoints,
        sessions=services.sessions,
        starter=settings.starter,
    )


def runtime_routers(services: Services) -> list[APIRouter]:
    """Xinference's launch and terminate alone without the runtime: they place models on the
    GPU nodes (`modelport node`) that heartbeat to this gateway."""
    if services.runtime is None:
        return [launch_router]
    return [launch_router, xinference_router, admin_router]
