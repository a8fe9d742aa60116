"""Write an import plan into modelport (server side, behind `POST /api/import/one-api`).

Every row goes through the admin API's own validation (ChannelCreate and ChannelService.check,
TokenCreate, PriceIn) and is written by the same services, so an imported channel or token is one
an admin could have created, and routes and token caches refresh once per import. Imports are
idempotent: a channel already carrying its One API id, or a token whose key is already known, is
skipped.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.admin_api.envelope import first_error
from gateway.auth.keys import hash_key
from gateway.billing.price_admin import PriceIn, completion_ratio, save_price
from gateway.billing.prices import MAX_QUOTA, PriceBook
from gateway.channels.service import ChannelRefused, ChannelService
from gateway.db.crud import channels as channel_crud
from gateway.db.crud import tokens as token_crud
from gateway.db.models import ChannelCreate, TokenCreate
from gateway.tokens.service import TokenService

# kept from One API's row after creation (ChannelCreate/TokenCreate do not take them)
CHANNEL_HISTORY = ("used_quota", "balance", "created_time", "test_time", "response_time")
TOKEN_HISTORY = ("status", "created_time", "accessed_time", "used_quota")
# One API's keys are 48 random characters; a short one would be a guessable modelport token
MIN_KEY_LENGTH = len("sk-") + 16


def _history(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, int | float]:
    """The numeric history fields of a row (anything else is left at modelport's default)."""
    return {
        n: row[n]
        for n in names
        if isinstance(row.get(n), int | float)
        and not isinstance(row[n], bool)
        and 0 <= row[n] < MAX_QUOTA
    }


async def _imported_channel_ids(session: AsyncSession) -> set[int]:
    ids = set()
    for ch in await channel_crud.all_channels(session):
        one_api_id = orjson.loads(ch.config or "{}").get("one_api_id")
        if isinstance(one_api_id, int):
            ids.add(one_api_id)
    return ids


async def import_channels(
    service: ChannelService, rows: list[dict[str, Any]], notes: list[str]
) -> int:
    async with service.sessions() as session:
        done = await _imported_channel_ids(session)
    items: list[tuple[ChannelCreate, str, dict[str, int | float]]] = []
    for row in rows:
        label = f"channel {row.get('one_api_id')} {row.get('name')!r}"
        if row.get("one_api_id") in done:
            notes.append(f"{label} was imported before: skipped")
            continue
        try:
            data = ChannelCreate.model_validate({**row, "key": ""})
            service.check(data)
        except ValidationError as exc:
            notes.append(f"{label} not imported: {first_error(exc)}")
            continue
        except ChannelRefused as exc:
            notes.append(f"{label} not imported: {exc}")
            continue
        items.append((data, str(row.get("key") or ""), _history(row, CHANNEL_HISTORY)))
    return len(await service.import_channels(items))


async def import_tokens(service: TokenService, rows: list[dict[str, Any]], notes: list[str]) -> int:
    """One commit for the whole batch: a key already known (imported before, or the same key
    twice) is skipped."""
    async with service.sessions() as session:
        seen = await token_crud.known_hashes(session, [hash_key(str(r.get("key"))) for r in rows])
    items: list[tuple[TokenCreate, str, dict[str, int | float]]] = []
    for row in rows:
        label = f"token {row.get('one_api_id')} {row.get('name')!r}"
        key = str(row.get("key") or "")
        if not key.startswith("sk-") or len(key) < MIN_KEY_LENGTH:
            notes.append(f"{label} not imported: its key is too short to be One API's")
            continue
        if hash_key(key) in seen:
            notes.append(f"{label}: its key is already a modelport token: skipped")
            continue
        try:
            data = TokenCreate.model_validate(row)
        except ValidationError as exc:
            notes.append(f"{label} not imported: {first_error(exc)}")
            continue
        history = _history(row, TOKEN_HISTORY)
        if history.get("status") not in (None, 1, 2, 3, 4):
            history.pop("status")
        items.append((data, key, history))
        seen.add(hash_key(key))
    return len(await service.import_tokens(items))


async def import_prices(
    session: AsyncSession, rows: list[dict[str, Any]], book: PriceBook, notes: list[str]
) -> int:
    """A ratio becomes the input price; the output price is input x the model's stored
    CompletionRatio, else x the completion ratio of the price it has now (litellm's default),
    as One API falls back to its built-in completion ratios."""
    saved = 0
    for row in rows:
        model, usd_in = str(row.get("model") or ""), row.get("input")
        cr = row.get("completion_ratio")
        if cr is None:
            cr = completion_ratio(book.get(model))
        if not isinstance(usd_in, int | float) or not isinstance(cr, int | float):
            notes.append(f"price of {model!r} not imported: input and completion_ratio are numbers")
            continue
        try:
            price = PriceIn(model=model, input=usd_in, output=usd_in * cr)
        except ValidationError as exc:
            notes.append(f"price of {model!r} not imported: {first_error(exc)}")
            continue
        await save_price(session, price)
        saved += 1
    return saved
