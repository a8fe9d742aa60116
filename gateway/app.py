"""Composition root: `create_app(settings)` composes the services with explicit factories
(`build_gateway` with the cluster's `build_cluster`, `build_runtime`, the UI's `build_ui`), stores them once as
`app.state.services` (gateway.services), mounts the routers and runs one AsyncExitStack lifespan.

Nothing here is module-level state: tests build as many independent apps as they like.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import Response

from gateway import __version__
from gateway.admin_api import channels as admin_channels
from gateway.admin_api import imports as admin_imports
from gateway.admin_api import logs as admin_logs
from gateway.admin_api import prices as admin_prices
from gateway.admin_api import status as admin_status
from gateway.admin_api import tokens as admin_tokens
from gateway.cluster.api import router as cluster_router
from gateway.cluster.integration import Cluster
from gateway.compose import build_gateway, start_gateway
from gateway.deps import require_admin
from gateway.error_handlers import OPENAI_ERROR_RESPONSES, install_error_handlers
from gateway.export.router import router as export_router
from gateway.health import liveness, readiness
from gateway.metrics import CONTENT_TYPE
from gateway.middleware import GatewayMiddleware
from gateway.model_info import ServedModel
from gateway.relay.audio.router import router as audio_router
from gateway.relay.audio.speech_router import router as speech_router
from gateway.relay.chat.router import router as chat_router
from gateway.relay.completions.router import router as completions_router
from gateway.relay.embeddings.router import router as embeddings_router
from gateway.relay.images import files as image_files
from gateway.relay.images.router import router as images_router
from gateway.relay.models.router import router as models_router
from gateway.relay.models.service import ModelDirectory
from gateway.relay.rerank.router import router as rerank_router
from gateway.runtime_host.integration import HostedRuntime, build_runtime, runtime_routers
from gateway.security import rotation
from gateway.services import Services, ServicesDep
from gateway.settings import Settings

log = logging.getLogger("modelport")


# The routes that take file uploads (MODELPORT_MAX_UPLOAD_BYTES); every other route's body is
# held to MODELPORT_MAX_BODY_BYTES whatever its Content-Type says.
UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations", "/ui/playground/transcribe")


def create_app(settings: Settings | None = None) -> FastAPI:
    services, parts = compose(settings or Settings())
    settings = services.settings
    app = FastAPI(
        title="modelport",
        version=__version__,
        lifespan=_lifespan(services, parts),
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
    )
    app.state.services = services  # the only attribute of ours (tests/gateway/test_composition.py)
    app.include_router(image_files.router)

    v1 = APIRouter(prefix="/v1", responses=OPENAI_ERROR_RESPONSES)
    for r in (
        chat_router,
        completions_router,
        embeddings_router,
        rerank_router,
        audio_router,
        speech_router,
        images_router,
        models_router,
    ):
        v1.include_router(r)
    app.include_router(v1, tags=["OpenAI API"])

    api = APIRouter(prefix="/api")
    api.include_router(admin_status.router)
    for r in (
        admin_channels.router,
        admin_tokens.router,
        admin_logs.router,
        admin_prices.prices_router,
        admin_prices.options_router,
        admin_imports.router,
        rotation.router,
    ):
        api.include_router(r, dependencies=[Depends(require_admin)])
    api.add_api_route(
        "/health/circuits",
        _circuits,
        methods=["GET"],
        dependencies=[Depends(require_admin)],
        summary="Circuit-breaker state of every endpoint that has failed recently",
    )
    app.include_router(api, tags=["Admin API"])

    for r in runtime_routers(services):
        app.include_router(r)
    app.include_router(cluster_router)
    app.include_router(
        export_router, prefix="/api", dependencies=[Depends(require_admin)], tags=["Admin API"]
    )
    if parts.ui is not None:
        parts.ui.install(app)

    # liveness and readiness (gateway.health says which probe is which, and why)
    app.add_api_route("/health", liveness, include_in_schema=False)
    app.add_api_route("/health/ready", readiness, include_in_schema=False)

    metrics_deps = [] if settings.metrics_public else [Depends(require_admin)]

    @app.get("/metrics", include_in_schema=False, dependencies=metrics_deps)
    async def metrics_route() -> Response:
        return Response(services.metrics.render(), media_type=CONTENT_TYPE)

    install_error_handlers(app)
    app.add_middleware(
        GatewayMiddleware,
        max_json=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
        max_headers=settings.max_header_count,
        max_header_bytes=settings.max_header_bytes,
        metrics=services.metrics,
    )
    if settings.cors_origins:  # closed unless configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    return app


async def _circuits(services: ServicesDep) -> dict[str, Any]:
    snap = services.health.snapshot()
    return {
        "success": True,
        "message": "",
        "data": [
            {"endpoint": eid, "state": st, "consecutive_failures": n}
            for eid, (st, n) in sorted(snap.items())
        ],
    }


@dataclass(frozen=True)
class Parts:
    """What the lifespan starts besides the gateway's own services, in this order."""

    cluster: Cluster
    runtime: HostedRuntime | None
    ui: Any  # admin_ui.integration, where that package is installed


def compose(settings: Settings) -> tuple[Services, Parts]:
    """The explicit factories, in dependency order: the runtime routes through the cluster's node
    registry and derives its worker keys from the cluster's root; /v1/models lists node workers
    and, over them, this host's replicas."""
    core, cluster = build_gateway(settings)
    hosted = build_runtime(core, cluster.nodes, cluster.local_root)
    ui_module = _optional("admin_ui.integration")

    def local_models() -> dict[str, ServedModel]:
        return {**cluster.nodes.served_models(), **(hosted.served_models() if hosted else {})}

    async def refresh() -> None:
        """This process's view, brought up to date before it refuses a model it does not route:
        a channel added or a model launched through another process a moment ago is served."""
        await cluster.bus.catch_up()
        if hosted is not None:
            await hosted.host.refresh()

    models = ModelDirectory(
        core.relay,
        local=local_models,
        pending=hosted.pending if hosted else None,  # launched but not serving: a 503, not a 404
        refresh=refresh,
    )
    core.dispatcher.explain_unrouted(models.not_ready)
    services = replace(
        core,
        models=models,
        runtime=hosted.runtime if hosted else None,
        catalog=hosted.catalog if hosted else None,
        ui=ui_module.build_ui(core) if ui_module else None,
    )
    return services, Parts(cluster=cluster, runtime=hosted, ui=ui_module)


def _lifespan(services: Services, parts: Parts) -> Any:
    """One exit stack: each part pushes its cleanup as it starts, so shutdown runs them in
    reverse (in-flight streams drained first, the database engine disposed last), and a part
    that fails to start still has everything before it cleaned up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await start_gateway(services, stack)
            await stack.enter_async_context(image_files.sweeping(services.image_links))
            if parts.runtime is not None:
                await parts.runtime.start(stack)
            if parts.ui is not None and services.ui is not None:
                await parts.ui.start_ui(services, services.ui)
            await parts.cluster.start(stack)
            if parts.runtime is not None:
                parts.runtime.host.start()
                stack.push_async_callback(parts.runtime.host.close)
            services.monitor.start()
            stack.push_async_callback(services.monitor.close)
            # uvicorn has stopped accepting and waited for in-flight requests (up to its
            # timeout_graceful_shutdown); streams it let go of are drained first
            stack.push_async_callback(services.relay.drain, services.settings.shutdown_drain_s)
            yield

    return lifespan


def _optional(module: str) -> Any:
    """The admin UI is a separate package: absent, the app serves the APIs alone."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
