"""The gateway's factory: `build_gateway(settings)` builds the services every surface shares, and
`start_gateway` starts them inside the app's one AsyncExitStack, pushing each cleanup as it goes
(gateway.app composes this with the cluster, the runtime and the UI; issue 16).

Nothing here is module-level state: tests build as many independent apps as they like.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.auth.guard import Guards
from gateway.auth.secrets import SecretBox, secret_key
from gateway.auth.tokens import TokenAuthenticator
from gateway.billing.prices import PriceBook
from gateway.billing.usage import UsageWriter
from gateway.bootstrap import admin_token_hash, ensure_channels, ensure_tokens, load_prices
from gateway.changes import LocalChanges, SilentNotifier
from gateway.channels.monitor import ChannelMonitor
from gateway.channels.routes import remote_entries
from gateway.channels.service import ChannelService
from gateway.cluster.integration import Cluster, build_cluster
from gateway.cluster.namespace import namespace
from gateway.cluster.publishing import PublishingChanges
from gateway.cluster.pubsub import ClusterBus
from gateway.db.engine import make_engine, make_sessionmaker, pool_exhausted, upgrade
from gateway.health import HealthChecks
from gateway.limits import make_limiter
from gateway.logging import configure_logging
from gateway.metrics import CIRCUIT_VALUE, Metrics
from gateway.relay.dispatch import Dispatcher
from gateway.relay.images.files import ImageLinks
from gateway.relay.models.service import ModelDirectory
from gateway.relay.service import RelayService
from gateway.routing import HealthTracker, RouteTable
from gateway.security.ssrf import Allow, safe_fetch
from gateway.services import AdminHash, Services
from gateway.settings import Settings
from gateway.tokens.service import TokenService
from gateway.upstreams.base import Endpoint
from gateway.upstreams.registry import build_upstreams
from local_runtime import image_links


def build_gateway(settings: Settings) -> tuple[Services, Cluster]:
    """Every shared service, wired by constructor; the optional parts are added by create_app."""
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(
        settings.db_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
    )
    sessions = make_sessionmaker(engine)
    secret = secret_key(settings)
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
    admin_hash = AdminHash()
    guards = Guards.from_limits(
        admin_token=settings.admin_token_failures,
        api_key=settings.api_key_failures,
        ui_login=settings.ui_login_failures,
        window_s=settings.auth_failure_window_s,
    )
    auth = TokenAuthenticator(sessions, admin_hash=admin_hash, guard=guards.api_key)

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
    cluster = build_cluster(
        settings, secret_key=secret, sessions=sessions, routes=routes, bus=bus, changes=changes
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

    def disable(ep: Endpoint, reason: str) -> None:
        monitor.disable(ep, reason)
        changes.channel_disabled(ep.channel_id)

    dispatcher = Dispatcher(
        routes,
        health,
        upstreams,
        retries=settings.retries,
        on_disable=disable if settings.auto_disable_channels else None,
    )
    relay = RelayService(
        dispatcher,
        prices,
        usage,
        sessions,
        limiter=limiter,
        metrics=metrics,
        max_stream_bytes=settings.max_response_bytes,
    )
    _register_gauges(metrics, health, usage, limiter, relay)
    metrics.register_gauge(
        "modelport_db_pool_exhausted",
        "callers that found every database connection busy for db_pool_timeout_s (each a 503)",
        lambda: pool_exhausted(engine),
    )

    async def fetch(url: str, **kw: Any) -> Any:
        """Fetch a caller-supplied URL through the SSRF guard (for surfaces and the runtime)."""
        kw.setdefault("max_bytes", settings.fetch_max_bytes)
        kw.setdefault("allow", settings.fetch_allow)
        kw.setdefault("max_redirects", settings.fetch_max_redirects)
        return await safe_fetch(url, **kw)

    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        box=box,
        routes=routes,
        health=health,
        upstreams=upstreams,
        prices=prices,
        usage=usage,
        metrics=metrics,
        limiter=limiter,
        dispatcher=dispatcher,
        relay=relay,
        guards=guards,
        auth=auth,
        admin_hash=admin_hash,
        changes=changes,
        monitor=monitor,
        # every channel and token write goes through these; they announce on the change bus
        channels=ChannelService(
            sessions=sessions,
            box=box,
            settings=settings,
            upstreams=upstreams,
            health=health,
            notifier=changes,
        ),
        tokens=TokenService(sessions=sessions, notifier=changes),
        models=ModelDirectory(relay),
        health_checks=HealthChecks(sessions, settings.redis_url),
        image_links=ImageLinks(
            folder=settings.files_dir / "images",
            key=image_links.derive_key(secret),
            ttl_s=settings.image_link_ttl_s,
        ),
        fetch=fetch,
        start_time=int(time.time()),
        bus=bus,
        nodes=cluster.nodes,
        heartbeat_replays=cluster.heartbeat_replays,
    )
    return services, cluster


async def start_gateway(services: Services, stack: AsyncExitStack) -> None:
    """Migrate, seed and load what the hot path reads, start the background writers; each
    cleanup is pushed as soon as what it cleans exists (they run in reverse at shutdown)."""
    s = services
    stack.push_async_callback(s.engine.dispose)
    for upstream in {id(u): u for u in s.upstreams.values()}.values():
        stack.push_async_callback(upstream.aclose)
    stack.push_async_callback(s.health_checks.aclose)
    stack.push_async_callback(s.limiter.aclose)
    await run_in_threadpool(upgrade, s.settings.db_url)
    async with s.sessions() as session:
        s.admin_hash.value = await admin_token_hash(session, s.settings)
        s.prices.replace(await load_prices(session, s.settings))
    # nothing is cached yet and routes load just below: startup writes announce nothing
    await ensure_tokens(s.tokens.with_notifier(SilentNotifier()), s.settings)
    await ensure_channels(s.channels.with_notifier(SilentNotifier()), s.settings)
    await s.changes.local.routes_changed()
    s.usage.start()
    stack.push_async_callback(s.usage.close)


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
