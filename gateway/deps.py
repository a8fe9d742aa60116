"""Dependency aliases: routes reach the services (gateway.services) through these, never through
globals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.guard import AttemptLimiter, address_key
from gateway.auth.keys import hash_key, parse_authorization, same_digest
from gateway.auth.tokens import Caller
from gateway.channels.service import ChannelService
from gateway.errors import AuthenticationFailed
from gateway.relay.service import RelayService
from gateway.services import services_of
from gateway.settings import Settings
from gateway.tokens.service import TokenService


async def get_settings(request: Request) -> Settings:
    return services_of(request).settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with services_of(request).sessions() as session:
        yield session


async def current_caller(request: Request) -> Caller:
    known: Caller | None = getattr(request.state, "caller", None)
    if known is not None:  # already authenticated from the headers (relay UploadRoute)
        return known
    client = request.client.host if request.client else None
    caller: Caller = await services_of(request).auth.authenticate(
        request.headers.get("authorization"), client
    )
    request.state.caller = caller
    return caller


async def get_relay(request: Request) -> RelayService:
    return services_of(request).relay


async def get_channels(request: Request) -> ChannelService:
    return services_of(request).channels


async def get_tokens(request: Request) -> TokenService:
    return services_of(request).tokens


async def require_admin(request: Request) -> None:
    """The admin access token (`Authorization: <token>`, Bearer tolerated) or a UI session.

    Async on purpose: FastAPI would run a plain function in its thread pool, a thread hop on
    every admin call, and the UI session lookup is async (database) anyway."""
    ui = services_of(request).ui
    if ui is not None and await ui.admin_session(request):
        return
    if is_admin_token(request, parse_authorization(request.headers.get("authorization"))):
        return
    raise AuthenticationFailed(
        "admin access needs the admin token: send 'Authorization: <token>' (printed at first "
        "start, or set MODELPORT_ADMIN_TOKEN)",
        code="admin_auth_required",
    )


def is_admin_token(request: Request, key: str | None) -> bool:
    """The one admin-token check: /api/* and the UI's first-start setup both use it.

    Failed attempts are limited per client address, and the attempt is counted before the
    compare, so parallel guesses cannot all be evaluated; over the limit it raises RateLimited
    (429 with Retry-After), even for the right token, until the window has passed."""
    if not key:
        return False
    guard: AttemptLimiter = services_of(request).guards.admin_token
    client = request.client.host if request.client else None
    keys = (address_key(client),)
    guard.acquire_or_raise(keys, "failed admin-token attempts", client)
    expected = services_of(request).admin_hash()
    ok = bool(expected and same_digest(hash_key(key), expected))
    guard.release(keys, failed=not ok)
    return ok


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "")


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
CallerDep = Annotated[Caller, Depends(current_caller)]
RelayDep = Annotated[RelayService, Depends(get_relay)]
ChannelsDep = Annotated[ChannelService, Depends(get_channels)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]
AdminDep = Depends(require_admin)
