"""First-start and every-start setup: the admin token, the initial token, declared channels and
tokens from the config file, the built-in local channel, and prices."""

from __future__ import annotations

import logging
import sys

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.keys import generate_key, hash_key
from gateway.billing.prices import Price
from gateway.channels.service import ChannelService
from gateway.db.crud.channels import ensure_local_channel
from gateway.db.crud.tokens import get_by_hash
from gateway.db.models import TokenCreate
from gateway.db.tables import ModelPrice, Option
from gateway.settings import Settings, TokenDecl
from gateway.tokens.service import TokenService

log = logging.getLogger("modelport")
ADMIN_HASH_OPTION = "admin_token_hash"


async def admin_token_hash(session: AsyncSession, settings: Settings) -> str:
    """The admin token's digest. MODELPORT_ADMIN_TOKEN wins; else one is generated once and
    printed once (only its digest is stored)."""
    if settings.admin_token is not None:
        return hash_key(settings.admin_token.get_secret_value())
    row = await session.get(Option, ADMIN_HASH_OPTION)
    if row is not None:
        return row.value
    token = generate_key()
    session.add(Option(key=ADMIN_HASH_OPTION, value=hash_key(token)))
    try:
        await session.commit()
    except IntegrityError:  # another replica generated it first: use theirs
        await session.rollback()
        row = await session.get(Option, ADMIN_HASH_OPTION)
        assert row is not None
        return row.value
    print(
        f"\nmodelport: generated the admin token (shown once; store it now):\n\n    {token}\n\n"
        "Use it as 'Authorization: <token>' on /api/* and in the CLI (MODELPORT_ADMIN_TOKEN).\n",
        file=sys.stderr,
        flush=True,
    )
    return hash_key(token)


async def ensure_tokens(tokens: TokenService, settings: Settings) -> None:
    wanted: list[tuple[str, str, TokenDecl | None]] = [
        (d.name, d.key.get_secret_value(), d) for d in settings.tokens
    ]
    if settings.initial_token is not None:
        wanted.append(("initial", settings.initial_token.get_secret_value(), None))
    for name, key, decl in wanted:
        async with tokens.sessions() as session:
            if await get_by_hash(session, hash_key(key)) is not None:
                continue
        data = TokenCreate(
            name=name[:30],
            unlimited_quota=decl.unlimited_quota if decl else True,
            remain_quota=decl.remain_quota if decl else 0,
            models=decl.models if decl else [],
        )
        try:
            await tokens.create(data, key=key)
        except IntegrityError:  # another replica starting at the same time created it
            continue
        log.info("created token %s from the configuration", name)


async def ensure_channels(channels: ChannelService, settings: Settings) -> None:
    async with channels.sessions() as session:
        await ensure_local_channel(session)
    for decl in settings.channels:
        await channels.ensure(decl.model_dump())


async def load_prices(session: AsyncSession, settings: Settings) -> dict[str, Price]:
    prices = {m: Price(p.input, p.output, "config") for m, p in settings.prices.items()}
    for row in (await session.exec(select(ModelPrice))).all():
        prices[row.model] = Price(row.input, row.output, "admin")
    return prices
