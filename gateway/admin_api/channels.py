"""/api/channel/*: One API's channel endpoints."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError

from gateway.admin_api.envelope import fail, int_param, ok
from gateway.admin_api.envelope import first_error as _first_error
from gateway.admin_api.envelope import json_body as _json
from gateway.channel_routes import endpoint_for
from gateway.channel_test import guess_type, run_test
from gateway.db.crud import channels as crud
from gateway.db.models import ChannelCreate, ChannelUpdate, split_csv
from gateway.db.tables import Channel
from gateway.deps import SessionDep
from gateway.upstreams.registry import CHANNEL_TYPES

router = APIRouter(prefix="/channel")


def _page(request: Request) -> tuple[int, int]:
    return int_param(request, "p", 0), int_param(request, "page_size", 50, lo=1, hi=500)


@router.get("/")
async def list_channels(request: Request, session: SessionDep) -> dict[str, Any]:
    p, size = _page(request)
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
    return ok(sorted(request.app.state.routes.models("default")))


@router.get("/test/{channel_id}")
async def test_channel(channel_id: int, request: Request, session: SessionDep) -> dict[str, Any]:
    state = request.app.state
    ch = await session.get(Channel, channel_id)
    if ch is None or ch.builtin:
        return fail(f"channel {channel_id} does not exist")
    models = split_csv(ch.models)
    model = request.query_params.get("model") or (models[0] if models else "")
    if not model:
        return fail("the channel lists no models: add one, or pass ?model=")
    config = orjson.loads(ch.config or "{}")
    type_ = guess_type(model, config.get("model_types"))
    ep = endpoint_for(ch, state.box, state.settings)
    result = await run_test(state.upstreams[ep.kind], ep, model, type_)
    await crud.set_channel_fields(
        session,
        channel_id=channel_id,
        test_time=int(time.time()),
        response_time=int(result.seconds * 1000),
        last_error=result.message[:500],
    )
    if result.success:
        state.health.success(ep.id)
    return {
        "success": result.success,
        "message": result.message,
        "time": round(result.seconds, 3),
        "modelName": model,
        "type": type_,
    }


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
