"""/api/import/one-api: the server half of `modelport import one-api` (the CLI reads One API's
database and sends the plan here, so routes, token caches and prices refresh on every replica)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.admin_api.envelope import fail, json_body, ok
from gateway.deps import ChannelsDep, SessionDep, TokensDep
from gateway.migrate_oneapi.apply import import_channels, import_prices, import_tokens
from gateway.services import services_of

router = APIRouter(prefix="/import")


@router.post("/one-api")
async def import_one_api(
    request: Request, session: SessionDep, channel_service: ChannelsDep, token_service: TokensDep
) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k, []), list) and all(isinstance(r, dict) for r in body.get(k, []))
        for k in ("channels", "tokens", "prices")
    ):
        return fail(
            "send {channels: [{...}], tokens: [{...}], prices: [{...}]} "
            "(what `modelport import one-api` sends)"
        )
    state = services_of(request)
    notes: list[str] = []
    channels = await import_channels(channel_service, body.get("channels", []), notes)
    tokens = await import_tokens(token_service, body.get("tokens", []), notes)
    prices = await import_prices(session, body.get("prices", []), state.prices, notes)
    if prices:
        await state.changes.prices_changed()
    return ok({"channels": channels, "tokens": tokens, "prices": prices, "notes": notes})
