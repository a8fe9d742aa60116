"""The typed services object: everything create_app builds, in one frozen dataclass (issue 16).

`app.state` holds this and nothing else of ours (tests/gateway/test_composition.py checks it), so
a router reads its services through one typed dependency, `ServicesDep` (or `services_of` where a
function has the request but is no dependency), and mypy sees every use. The optional parts are
None where they are not built: `runtime` without `runtime_enabled`, `ui` without the admin_ui
package. Each part's factory builds its fields; create_app puts them together. Nothing is rebound on it at run time: a change between processes goes through `changes`
(gateway.changes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

if TYPE_CHECKING:  # annotations only: the services' modules import gateway.deps
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
    from sqlmodel.ext.asyncio.session import AsyncSession

    from admin_ui.web import UIState
    from gateway.auth.guard import Guards
    from gateway.auth.secrets import SecretBox
    from gateway.auth.tokens import TokenAuthenticator
    from gateway.billing.prices import PriceBook
    from gateway.billing.usage import UsageWriter
    from gateway.changes import ChangeBus
    from gateway.channels.monitor import ChannelMonitor
    from gateway.channels.service import ChannelService
    from gateway.cluster.heartbeat import ReplayGuard
    from gateway.cluster.nodes import NodeRegistry
    from gateway.cluster.pubsub import ClusterBus
    from gateway.health import HealthChecks
    from gateway.limits.base import Limiter
    from gateway.metrics import Metrics
    from gateway.relay.dispatch import Dispatcher
    from gateway.relay.images.files import ImageLinks
    from gateway.relay.models.service import ModelDirectory
    from gateway.relay.service import RelayService
    from gateway.routing import HealthTracker, RouteTable
    from gateway.runtime_host.front import LocalRuntime
    from gateway.settings import Settings
    from gateway.tokens.service import TokenService
    from local_runtime.catalog import Catalog


class AdminHash:
    """The admin token's digest, read per request by the admin and token checks; the database
    holds it, so it is known only once start_gateway has read it."""

    def __init__(self) -> None:
        self.value: str | None = None

    def __call__(self) -> str | None:
        return self.value


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    box: SecretBox
    routes: RouteTable
    health: HealthTracker
    upstreams: dict[str, Any]
    prices: PriceBook
    usage: UsageWriter
    metrics: Metrics
    limiter: Limiter
    dispatcher: Dispatcher
    relay: RelayService
    guards: Guards
    auth: TokenAuthenticator
    admin_hash: AdminHash
    changes: ChangeBus
    monitor: ChannelMonitor
    channels: ChannelService
    tokens: TokenService
    models: ModelDirectory
    health_checks: HealthChecks
    image_links: ImageLinks
    fetch: Callable[..., Awaitable[Any]]  # a caller-supplied URL, through the SSRF guard
    start_time: int
    bus: ClusterBus
    # built by gateway.cluster.integration
    nodes: NodeRegistry
    heartbeat_replays: ReplayGuard
    # built by gateway.runtime_host.integration with `runtime_enabled`
    runtime: LocalRuntime | None = None  # the supervisor here, or its owner's (--workers N)
    catalog: Catalog | None = None
    # built by admin_ui.integration where that package is installed
    ui: UIState | None = None


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(services_of)]
