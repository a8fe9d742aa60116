"""/api/channel/*: One API's channel endpoints."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import ValidationError

from gateway.admin_api import channel_checks as checks
from gateway.admin_api.envelope import fail, ok, page_params
from gateway.admin_api.envelope import first_error as _first_error
from gateway.admin_api.envelope import json_body as _json
from gateway.db.crud import channels as crud
from gateway.db.models import ChannelCreate, ChannelUpdate
from gateway.db.tables import Channel, ChannelStatus
from gateway.deps import SessionDep
from gateway.security.upstream_urls import channel_url_problem
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
            for m in sorted(request.app.state.routes.models("default"))
        ]
    )


@router.get("/test")
async def test_all_channels(request: Request) -> dict[str, Any]:
    scope = request.query_params.get("scope") or "all"
    if scope not in ("all", "disabled"):
        return fail(f"scope must be all or disabled, got {scope!r}")
    results = await checks.test_channels(request.app.state, scope)
    failed = sum(not c.success for c in results)
    return ok(
        [asdict(c) for c in results],
        message=f"{len(results)} channels tested, {failed} failed",
    )


@router.get("/test/{channel_id}")
async def test_channel(channel_id: int, request: Request, session: SessionDep) -> dict[str, Any]:
    ch = await session.get(Channel, channel_id)
    if ch is None or ch.builtin:
        return fail(f"channel {channel_id} does not exist")
    check = await checks.test_channel(request.app.state, ch, request.query_params.get("model", ""))
    return {
        "success": check.success,
        "message": check.message,
        "time": check.time,
        "modelName": check.model,
        "type": check.type,
    }


@router.get("/update_balance")
async def update_all_balances(request: Request, session: SessionDep) -> dict[str, Any]:
    """Every enabled channel whose type has a balance API; the answer lists each balance."""
    rows = [
        c
        for c in await crud.all_channels(session)
        if c.status == ChannelStatus.ENABLED and not c.builtin
    ]
    data: list[dict[str, Any]] = []
    for ch in rows:
        try:
            data.append(
                {"id": ch.id, "balance": await checks.update_balance(request.app.state, ch)}
            )
        except checks.BalanceUnsupported:
            continue
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            data.append({"id": ch.id, "error": str(exc)})
    return ok(data)


@router.get("/update_balance/{channel_id}")
async def update_channel_balance(
    channel_id: int, request: Request, session: SessionDep
) -> dict[str, Any]:
    """One API's answer: `{success, message, balance}` (controller/channel-billing.go)."""
    ch = await session.get(Channel, channel_id)
    if ch is None or ch.builtin:
        return fail(f"channel {channel_id} does not exist")
    try:
        balance = await checks.update_balance(request.app.state, ch)
    except checks.BalanceUnsupported as exc:
        return fail(str(exc))
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return fail(f"the balance query failed: {exc}")
    return {"success": True, "message": "", "balance": balance}


@router.delete("/disabled")
async def delete_disabled_channels(request: Request, session: SessionDep) -> dict[str, Any]:
    """Deletes manually and automatically disabled channels; `data` is how many."""
    count = await crud.delete_disabled_channels(session)
    if count:
        await request.app.state.reload_routes()
    return ok(count)


@router.get("/{channel_id}")
async def get_channel(channel_id: int, session: SessionDep) -> dict[str, Any]:
    ch = await session.get(Channel, channel_id)
    return (
        ok(crud.to_public(ch).model_dump()) if ch else fail(f"channel {channel_id} does not exist")
    )


@router.post("/")
async def add_channel(request: Request, session: SessionDep) -> dict[str, Any]:
    try:
        data = ChannelCreate.model_validate(await _json(request))
        CHANNEL_TYPES[data.type]
    except ValidationError as exc:
        return fail(_first_error(exc))
    except KeyError:
        return fail(f"unknown channel type {data.type}: GET /api/channel/types lists them")
    if problem := channel_url_problem(data.base_url, request.app.state.settings.upstream_allow):
        return fail(problem)
    rows = await crud.create_channels(session, data=data, box=request.app.state.box)
    await request.app.state.reload_routes()
    return ok(
        [crud.to_public(r).model_dump() for r in rows]
        if len(rows) > 1
        else crud.to_public(rows[0]).model_dump()
    )


@router.put("/")
async def update_channel(request: Request, session: SessionDep) -> dict[str, Any]:
    try:
        data = ChannelUpdate.model_validate(await _json(request))
        if data.type is not None:
            CHANNEL_TYPES[data.type]
    except ValidationError as exc:
        return fail(_first_error(exc))
    except KeyError:
        return fail("unknown channel type: GET /api/channel/types lists them")
    if problem := channel_url_problem(data.base_url, request.app.state.settings.upstream_allow):
        return fail(problem)
    ch = await crud.update_channel(session, data=data, box=request.app.state.box)
    if ch is None:
        return fail(f"channel {data.id} does not exist")
    await request.app.state.reload_routes()
    return ok(crud.to_public(ch).model_dump())


@router.delete("/{channel_id}")
async def delete_channel(channel_id: int, request: Request, session: SessionDep) -> dict[str, Any]:
    if not await crud.delete_channel(session, channel_id=channel_id):
        return fail(f"channel {channel_id} does not exist (or is the built-in local channel)")
    await request.app.state.reload_routes()
    return ok()
