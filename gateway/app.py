"""Composition root: `create_app(settings)` builds every service and hangs it on app.state.

Nothing here is module-level state: tests build as many independent apps as they like.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway import __version__
from gateway.admin_api import channels as admin_channels
from gateway.admin_api import imports as admin_imports
from gateway.admin_api import logs as admin_logs
from gateway.admin_api import prices as admin_prices
from gateway.admin_api import status as admin_status
from gateway.admin_api import tokens as admin_tokens
from gateway.auth.guard import Guards
from gateway.auth.secrets import SecretBox, load_or_create_key
from gateway.auth.tokens import TokenAuthenticator
from gateway.billing.prices import PriceBook
from gateway.billing.usage import UsageWriter
from gateway.bootstrap import admin_token_hash, ensure_channels, ensure_tokens, load_prices
from gateway.changes import LocalChanges, SilentNotifier
from gateway.channels.monitor import ChannelMonitor
from gateway.channels.routes import remote_entries
from gateway.channels.service import ChannelService
from gateway.cluster.namespace import namespace
from gateway.cluster.publishing import PublishingChanges
from gateway.cluster.pubsub import ClusterBus
from gateway.db.engine import make_engine, make_sessionmaker, pool_exhausted, upgrade
from gateway.deps import require_admin
from gateway.error_handlers import OPENAI_ERROR_RESPONSES, install_error_handlers
from gateway.health import HealthChecks, liveness, readiness
from gateway.limits import make_limiter
from gateway.logging import configure_logging
from gateway.metrics import CIRCUIT_VALUE, CONTENT_TYPE, Metrics
from gateway.middleware import GatewayMiddleware
from gateway.relay.audio.router import router as audio_router
from gateway.relay.audio.speech_router import router as speech_router
from gateway.relay.chat.router import router as chat_router
from gateway.relay.completions.router import router as completions_router
from gateway.relay.dispatch import Dispatcher
from gateway.relay.embeddings.router import router as embeddings_router
from gateway.relay.images import files as image_files
from gateway.relay.images.files import ImageLinks
from gateway.relay.images.router import router as images_router
from gateway.relay.models.router import router as models_router
from gateway.relay.models.service import ModelDirectory
from gateway.relay.rerank.router import router as rerank_router
from gateway.relay.service import RelayService
from gateway.routing import HealthTracker, RouteTable
from gateway.security import rotation
from gateway.security.ssrf import Allow, safe_fetch
from gateway.settings import Settings
from gateway.tokens.service import TokenService
from gateway.upstreams.base import Endpoint
from gateway.upstreams.registry import build_upstreams
from local_runtime import image_links

log = logging.getLogger("modelport")


# The routes that take file uploads (MODELPORT_MAX_UPLOAD_BYTES); every other route's body is
# held to MODELPORT_MAX_BODY_BYTES whatever its Content-Type says.
UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations", "/ui/playground/transcribe")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(
        settings.db_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
    )
    sessions = make_sessionmaker(engine)
    secret = (
        settings.secret_key.get_secret_value()
        if settings.secret_key
        else load_or_create_key(settings.home)
    )
    box = SecretBox(secret, [k.get_secret_value() for k in settings.old_secret_keys])

    configure_logging(settings.log_format, settings.log_level)
    routes = RouteTable()
    health = HealthTracker(
        threshold=settings.circuit_threshold, cooldown=settings.circuit_cooldown_s
    )
    upstreams = build_upstreams()
    for upstream in upstreams.values():
        if hasattr(upstream, "max_response_bytes"):
            upstream.max_response_bytes = settings.max_response_bytes
        if hasattr(upstream, "allow"):
            upstream.allow = Allow.of(settings.upstream_allow)
    prices = PriceBook(routes=routes)
    usage = UsageWriter(
        sessions, interval=settings.usage_flush_interval_s, batch_size=settings.usage_batch_size
    )
    metrics = Metrics()
    limiter = make_limiter(settings)
    dispatcher = Dispatcher(routes, health, upstreams, retries=settings.retries)
    relay = RelayService(
        dispatcher,
        prices,
        usage,
        sessions,
        limiter=limiter,
        metrics=metrics,
        max_stream_bytes=settings.max_response_bytes,
    )
    admin_hash: dict[str, str | None] = {"value": None}
    guards = Guards.from_limits(
        admin_token=settings.admin_token_failures,
        api_key=settings.api_key_failures,
        ui_login=settings.ui_login_failures,
        window_s=settings.auth_failure_window_s,
    )
    auth = TokenAuthenticator(
        sessions, admin_hash=lambda: admin_hash["value"], guard=guards.api_key
    )

    async def reload_routes() -> None:
        routes.set_remote(await remote_entries(sessions, box, settings))

    async def reload_prices() -> None:
        async with sessions() as session:
            prices.replace(await load_prices(session, settings))

    # the change bus: applied here, then published to the other processes (gateway.changes);
    # two installations may share one Redis (cluster.namespace)
    bus = ClusterBus(settings.redis_url, prefix=namespace(settings), sessions=sessions)
    changes = PublishingChanges(
        LocalChanges(
            reload_routes=reload_routes,
            invalidate_tokens=auth.invalidate,
            reload_prices=reload_prices,
        ),
        bus,
    )
    monitor = ChannelMonitor(
        sessions=sessions,
        routes=routes,
        health=health,
        upstreams=upstreams,
        box=box,
        settings=settings,
        reload_routes=changes.routes_changed,
    )
    if settings.auto_disable_channels:

        def disable(ep: Endpoint, reason: str) -> None:
            monitor.disable(ep, reason)
            changes.channel_disabled(ep.channel_id)

        dispatcher.on_disable = disable
    _register_gauges(metrics, health, usage, limiter, relay)
    metrics.register_gauge(
        "modelport_db_pool_exhausted",
        "callers that found every database connection busy for db_pool_timeout_s (each a 503)",
        lambda: pool_exhausted(engine),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(upgrade, settings.db_url)
        async with sessions() as session:
            admin_hash["value"] = await admin_token_hash(session, settings)
            prices.replace(await load_prices(session, settings))
        # nothing is cached yet and routes load just below: startup writes announce nothing
        await ensure_tokens(tokens.with_notifier(SilentNotifier()), settings)
        await ensure_channels(channels.with_notifier(SilentNotifier()), settings)
        await reload_routes()
        usage.start()
        monitor.start()
        for hook in app.state.startup_hooks:
            await hook(app)
        try:
            yield
        finally:
            # uvicorn has stopped accepting and waited for in-flight requests (up to its
            # timeout_graceful_shutdown); streams it let go of are drained here, then usage is
            # flushed and workers are stopped (runtime hook).
            await relay.drain(settings.shutdown_drain_s)
            await monitor.close()
            for hook in reversed(app.state.shutdown_hooks):
                await hook(app)
            await usage.close()
            await limiter.aclose()
            await app.state.health_checks.aclose()
            for upstream in {id(u): u for u in upstreams.values()}.values():
                await upstream.aclose()
            await engine.dispose()

    app = FastAPI(
        title="modelport",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
    )
    state = app.state
    state.settings = settings
    state.engine = engine
    state.sessions = sessions
    state.box = box
    state.routes = routes
    state.health = health
    state.upstreams = upstreams
    state.prices = prices
    state.usage = usage
    state.dispatcher = dispatcher
    state.relay = relay
    state.auth = auth
    state.guards = guards
    state.metrics = metrics
    state.limiter = limiter
    state.monitor = monitor
    state.admin_hash = lambda: admin_hash["value"]
    state.changes = changes
    state.bus = bus
    # every channel and token write goes through these; they announce on the change bus
    channels = ChannelService(
        sessions=sessions,
        box=box,
        settings=settings,
        upstreams=upstreams,
        health=health,
        notifier=changes,
    )
    tokens = TokenService(sessions=sessions, notifier=changes)
    state.channels = channels
    state.tokens = tokens
    state.models = ModelDirectory(relay)
    state.runtime = None
    state.start_time = int(time.time())
    state.startup_hooks = []
    state.shutdown_hooks = []

    async def fetch(url: str, **kw: Any) -> Any:
        """Fetch a caller-supplied URL through the SSRF guard (for surfaces and the runtime)."""
        kw.setdefault("max_bytes", settings.fetch_max_bytes)
        kw.setdefault("allow", settings.fetch_allow)
        kw.setdefault("max_redirects", settings.fetch_max_redirects)
        return await safe_fetch(url, **kw)

    state.fetch = fetch
    image_files.install(
        app,
        ImageLinks(
            folder=settings.files_dir / "images",
            key=image_links.derive_key(secret),
            ttl_s=settings.image_link_ttl_s,
        ),
    )

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

    # liveness and readiness (gateway.health says which probe is which, and why)
    state.health_checks = HealthChecks(sessions, settings.redis_url)
    app.add_api_route("/health", liveness, include_in_schema=False)
    app.add_api_route("/health/ready", readiness, include_in_schema=False)

    metrics_deps = [] if settings.metrics_public else [Depends(require_admin)]

    @app.get("/metrics", include_in_schema=False, dependencies=metrics_deps)
    async def metrics_route() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    install_error_handlers(app)
    app.add_middleware(
        GatewayMiddleware,
        max_json=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
        max_headers=settings.max_header_count,
        max_header_bytes=settings.max_header_bytes,
        metrics=metrics,
    )
    if settings.cors_origins:  # closed unless configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    _install_extensions(app)
    return app


async def _circuits(request: Request) -> dict[str, Any]:
    snap = request.app.state.health.snapshot()
    return {
        "success": True,
        "message": "",
        "data": [
            {"endpoint": eid, "state": st, "consecutive_failures": n}
            for eid, (st, n) in sorted(snap.items())
        ],
    }


def _register_gauges(metrics: Metrics, health: Any, usage: Any, limiter: Any, relay: Any) -> None:
    def circuits() -> dict[tuple[str, ...], float]:
        return {(eid,): CIRCUIT_VALUE[st] for eid, (st, _) in health.snapshot().items()}

    metrics.register_gauge(
        "modelport_circuit_state",
        "per endpoint: 0 closed, 1 half-open, 2 open (endpoints never failed are absent)",
        circuits,
        ("endpoint",),
    )
    metrics.register_gauge(
        "modelport_usage_backlog", "usage rows waiting to be written", lambda: len(usage._pending)
    )
    metrics.register_gauge(
        "modelport_usage_dropped", "usage rows dropped (backlog full)", lambda: usage.dropped
    )
    metrics.register_gauge(
        "modelport_usage_rejected",
        "usage rows the database refused, dropped (their quota settlement was kept)",
        lambda: usage.rejected,
    )
    metrics.register_gauge(
        "modelport_limiter_in_flight", "requests holding a concurrency slot", limiter.in_flight
    )
    metrics.register_gauge(
        "modelport_open_streams", "streams in flight", lambda: relay.open_streams
    )


def _install_extensions(app: FastAPI) -> None:
    """Optional parts (local runtime, admin UI, exports) plug themselves in when present."""
    import importlib

    for module in (
        "gateway.runtime_host.integration",
        "admin_ui.integration",
        "gateway.export.integration",
        "gateway.cluster.integration",  # last: wraps what the others installed
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.install(app)
