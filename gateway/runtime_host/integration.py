"""Plug the local runtime into a gateway app (called by gateway.app._install_extensions).

With `settings.runtime_enabled`, builds the catalog and the Supervisor on app.state (its port
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
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from gateway.db.crud.channels import ensure_local_channel
from gateway.db.tables import Option
from gateway.model_info import PendingModel, ServedModel
from gateway.runtime_host.adapters import (
    DatabaseLaunchStore,
    ReplicaEndpoints,
    runtime_settings,
    served_models,
)
from gateway.runtime_host.api import admin_router, launch_router, xinference_router
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


async def launch_starters(runtime: Supervisor, sessions: Any) -> None:
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


def install(app: FastAPI) -> None:
    state: Any = app.state
    settings = state.settings
    if not settings.runtime_enabled:
        app.include_router(launch_router)  # on GPU nodes
        return
    catalog = Catalog.load(
        builtin_dir=settings.catalog_dir, custom_dir=settings.home / "custom_models"
    )
    endpoints = ReplicaEndpoints(state.routes)
    runtime = Supervisor(
        settings=runtime_settings(settings),
        catalog=catalog,
        store=DatabaseLaunchStore(state.sessions),
        on_replicas=endpoints,
        options=SupervisorOptions(worker_env=state.image_links.worker_env()),
    )
    state.catalog = catalog
    state.runtime = runtime

    def local_models() -> dict[str, ServedModel]:
        return served_models(runtime)

    state.models.local = local_models

    def pending(uid: str) -> PendingModel | None:
        # `instance` and not the supervisor's own table: with `--workers N` the processes that
        # do not run the models answer it from the owner's record (gateway.runtime_host.host)
        try:
            info = runtime.instance(uid)
        except UnknownInstance:
            return None
        return PendingModel(
            status=info["status"], since=info.get("loading_since"), error=info.get("error")
        )

    state.models.pending = pending
    state.dispatcher.not_ready = state.models.not_ready

    async def on_startup(app: FastAPI) -> None:
        async with state.sessions() as session:
            endpoints.channel_id = (await ensure_local_channel(session)).id or 0
        await runtime.start()
        if settings.starter:
            await launch_starters(runtime, state.sessions)

    async def on_shutdown(app: FastAPI) -> None:
        await runtime.close()

    state.startup_hooks.append(on_startup)
    state.shutdown_hooks.append(on_shutdown)
    app.include_router(launch_router)
    app.include_router(xinference_router)
    app.include_router(admin_router)
