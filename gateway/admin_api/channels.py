"""/api/channel/*: One API's channel endpoints (parse, call ChannelService, shape the answer).

One API's `GET /api/channel/test` (controller/channel-test.go TestChannels) starts a background
round and answers at once; here the round runs a few channels at a time and the answer carries
every channel's result, so a script learns what failed without reading logs.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import ValidationError

from gateway.admin_api.envelope import fail, ok, page_params
from gateway.admin_api.envelope import first_error as _first_error
from gateway.admin_api.envelope import json_body as _json
from gateway.channels.balance import BalanceUnsupported
from gateway.channels.service import ChannelRefused
from gateway.db.crud import channels as crud
from gateway.db.models import ChannelCreate, ChannelUpdate
from gateway.db.tables import Channel, ChannelStatus
from gateway.deps import ChannelsDep, SessionDep
from gateway.services import services_of
from gateway.upstreams.registry import CHANNEL_TYPES

router = APIRouter(prefix="/channel")

# One API's model list entries (controller/model.go OpenAIModels): `created` is its fixed date.
MODEL_CREATED = 1626777600


@router.get("/")
async def list_channels(request: Request, session: SessionDep) -> dict[str, Any]:
    p, size = page_params(request)
    rows, total = await crud.list_channels(
        session, page=p, page_size=size, keyword=request.query_params.get("keyword", "")
    )
    return ok([crud.to_public(r).model_dump() for r in rows], total=total)


@router.get("/search")
async def search_channels(request: Request, session: SessionDep) -> dict[str, Any]:
    rows, total = await crud.list_channels(
        session, page_size=500, keyword=request.query_params.get("keyword", "")
    )
    return ok([crud.to_public(r).model_dump() for r in rows], total=total)


@router.get("/types")
async def channel_types() -> dict[str, Any]:
    return ok(
        [
            {
                "type": k,
                "name": v.name,
                "kind": v.kind,
                "default_base_url": v.default_base_url,
                "hint": v.hint,
            }
            for k, v in CHANNEL_TYPES.items()
            if k
        ]
    )


@router.get("/models")
async def channel_models(request: Request) -> dict[str, Any]:
    """Every model the default group reaches, as One API's `{id, object, created, owned_by}`
    entries (controller/model.go ListAllModels), which its channel form reads by `id`."""
    return ok(
        [
            {"id": m, "object": "model", "created": MODEL_CREATED, "owned_by": "modelport"}
            for m in sorted(services_of(request).routes.models("default"))
        ]
    )


@router.get("/test")
async def test_all_channels(request: Request, channels: ChannelsDep) -> dict[str, Any]:
    scope = request.query_params.get("scope") or "all"
    if scope not in ("all", "disabled"):
        return fail(f"scope must be all or disabled, got {scope!r}")
    results = await channels.test_all(scope)
    failed = sum(not c.success for c in results)
    return ok(
        [asdict(c) for c in results],
        message=f"{len(results)} channels tested, {failed} failed",
    )


@router.get("/test/{channel_id}")
async def test_channel(channel_id: int, request: Request, channels: ChannelsDep) -> dict[str, Any]:
    ch = await channels.get(channel_id)
    if ch is None:
        return fail(f"channel {channel_id} does not exist")
    check = await channels.test(ch, request.query_params.get("model", ""))
    return {
        "success": check.success,
        "message": check.message,
        "time": check.time,
        "modelName": check.model,
        "type": check.type,
    }


@router.get("/update_balance")
async def update_all_balances(session: SessionDep, channels: ChannelsDep) -> dict[str, Any]:
    """Every enabled channel whose type has a balance API; the answer lists each balance."""
    rows = [
        c
        for c in await crud.all_channels(session)
        if c.status == ChannelStatus.ENABLED and not c.builtin
    ]
    data: list[dict[str, Any]] = []
    for ch in rows:
        try:
            data.append({"id": ch.id, "balance": await channels.update_balance(ch)})
        except BalanceUnsupported:
            continue
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            data.append({"id": ch.id, "error": str(exc)})
    return ok(data)


@router.get("/update_balance/{channel_id}")
async def update_channel_balance(channel_id: int, channels: ChannelsDep) -> dict[str, Any]:
    """One API's answer: `{success, message, balance}` (controller/channel-billing.go)."""
    ch = await channels.get(channel_id)
    if ch is None:
        return fail(f"channel {channel_id} does not exist")
    try:
        balance = await channels.update_balance(ch)
    except BalanceUnsupported as exc:
        return fail(str(exc))
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return fail(f"the balance query failed: {exc}")
    return {"success": True, "message": "", "balance": balance}


@router.delete("/disabled")
async def delete_disabled_channels(channels: ChannelsDep) -> dict[str, Any]:
    """Deletes manually and automatically disabled channels; `data` is how many."""
    return ok(await channels.delete_disabled())


@router.get("/{channel_id}")
async def get_channel(channel_id: int, session: SessionDep) -> dict[str, Any]:
    ch = await session.get(Channel, channel_id)
    return (
        ok(crud.to_public(ch).model_dump()) if ch else fail(f"channel {channel_id} does not exist")
    )


@router.post("/")
async def add_channel(request: Request, channels: ChannelsDep) -> dict[str, Any]:
    try:
        rows = await channels.create(ChannelCreate.model_validate(await _json(request)))
    except ValidationError as exc:
        return fail(_first_error(exc))
    except ChannelRefused as exc:
        return fail(str(exc))
    return ok(
        [crud.to_public(r).model_dump() for r in rows]
        if len(rows) > 1
        else crud.to_public(rows[0]).model_dump()
    )


@router.put("/")
async def update_channel(request: Request, channels: ChannelsDep) -> dict[str, Any]:
    try:
        data = ChannelUpdate.model_validate(await _json(request))
        ch = await channels.update(data)
    except ValidationError as exc:
        return fail(_first_error(exc))
    except ChannelRefused as exc:
        return fail(str(exc))
    if ch is None:
        return fail(f"channel {data.id} does not exist")
    return ok(crud.to_public(ch).model_dump())


@router.delete("/{channel_id}")
async def delete_channel(channel_id: int, channels: ChannelsDep) -> dict[str, Any]:
    if not await channels.delete(channel_id):
        return fail(f"channel {channel_id} does not exist (or is the built-in local channel)")
    return ok()
