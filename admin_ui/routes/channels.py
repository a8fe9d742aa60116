"""Channels: list with health, add/edit with One API's fields, fetch models, test, toggle, delete.

Writes go through ChannelService with ChannelCreate/ChannelUpdate (the admin API's own
validation and checks), exactly as /api/channel does; the service announces route changes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from admin_ui.web import UserDep, flash, form_of, form_str, render
from gateway.admin_api.envelope import first_error
from gateway.channels.service import ChannelRefused, ChannelService
from gateway.db.crud import channels as crud
from gateway.db.models import ChannelCreate, ChannelUpdate, split_csv
from gateway.db.tables import Channel, ChannelStatus
from gateway.services import services_of
from gateway.upstreams.registry import CHANNEL_TYPES

router = APIRouter(prefix="/channels")
FIELDS = (
    "type",
    "name",
    "base_url",
    "key",
    "models",
    "model_mapping",
    "model_types",
    "group",
    "priority",
    "weight",
    "config",
    "system_prompt",
)


def _types() -> list[dict[str, Any]]:
    return [
        {"type": k, "name": v.name, "base": v.default_base_url, "hint": v.hint, "kind": v.kind}
        for k, v in CHANNEL_TYPES.items()
        if k
    ]


def _form_fields(form: FormData) -> dict[str, Any]:
    """The submitted fields; empty numbers are left out so the models' defaults apply."""
    data: dict[str, Any] = {n: form_str(form, n) for n in FIELDS}
    for n in ("type", "priority", "weight"):
        if data[n] == "":
            del data[n]
    for n in ("model_mapping", "model_types", "config"):
        if data[n] == "":
            data[n] = "{}"
    return data


def _service(request: Request) -> ChannelService:
    service: ChannelService = services_of(request).channels
    return service


def _health(request: Request, ch: Channel) -> str:
    return str(services_of(request).health.state(f"{ch.id}@{ch.base_url}"))


@router.post("/fetch-models")
async def fetch_models(request: Request, session: UserDep) -> Response:
    """The upstream's model list merged into the field (ChannelService.fetch_models says whose
    key goes where)."""
    form = await form_of(request)
    current = split_csv(form_str(form, "models"))
    key = form_str(form, "key").splitlines()[0] if form_str(form, "key") else ""
    channel_id = form_str(form, "id")
    try:
        found = await _service(request).fetch_models(
            type_=int(form_str(form, "type") or 50),
            base_url=form_str(form, "base_url"),
            key=key,
            channel_id=int(channel_id) if channel_id.isdigit() else None,
        )
    except ValueError as exc:  # ChannelRefused, or a type that is not a number
        return _models_field(request, session, current, str(exc))
    merged = list(dict.fromkeys(current + found))
    return _models_field(request, session, merged, "", found=len(found))


def _models_field(
    request: Request, session: Any, models: list[str], error: str, found: int | None = None
) -> Response:
    return render(
        request,
        "partials/models_field.html",
        session,
        models=",".join(models),
        error=error,
        found=found,
    )


@router.get("")
async def list_page(request: Request, session: UserDep) -> Response:
    async with services_of(request).sessions() as db:
        rows = [c for c in await crud.all_channels(db) if not c.builtin]
    return render(
        request,
        "channels.html",
        session,
        page="channels",
        channels=rows,
        health={c.id: _health(request, c) for c in rows},
        types={t["type"]: t["name"] for t in _types()},
        split=split_csv,
    )


def _form_page(
    request: Request, session: Any, *, channel: dict[str, Any], error: str = "", status: int = 200
) -> Response:
    return render(
        request,
        "channel_form.html",
        session,
        page="channels",
        channel=channel,
        types=_types(),
        error=error,
        status=status,
        split=split_csv,
    )


@router.get("/new")
async def new_page(request: Request, session: UserDep) -> Response:
    return _form_page(
        request,
        session,
        channel={"type": 50, "weight": 1, "priority": 0, "group": "default", "models": ""},
    )


@router.post("/new")
async def create(request: Request, session: UserDep) -> Response:
    fields = _form_fields(await form_of(request))
    try:
        rows = await _service(request).create(ChannelCreate.model_validate(fields))
    except ValidationError as exc:
        return _form_page(request, session, channel=fields, error=first_error(exc), status=400)
    except ChannelRefused as exc:
        return _form_page(request, session, channel=fields, error=str(exc), status=400)
    flash(session, f"added {len(rows)} channel(s): " + ", ".join(r.name for r in rows))
    return RedirectResponse(f"/ui/channels/{rows[0].id}", 303)


@router.get("/{channel_id}")
async def edit_page(channel_id: int, request: Request, session: UserDep) -> Response:
    ch = await _service(request).get(channel_id)
    if ch is None:
        flash(session, f"channel {channel_id} does not exist", "error")
        return RedirectResponse("/ui/channels", 303)
    return _form_page(request, session, channel=crud.to_public(ch).model_dump())


@router.post("/{channel_id}")
async def update(channel_id: int, request: Request, session: UserDep) -> Response:
    fields = _form_fields(await form_of(request))
    try:
        ch = await _service(request).update(
            ChannelUpdate.model_validate({**fields, "id": channel_id})
        )
    except ValidationError as exc:
        return _form_page(
            request,
            session,
            channel={**fields, "id": channel_id},
            error=first_error(exc),
            status=400,
        )
    except ChannelRefused as exc:
        return _form_page(
            request, session, channel={**fields, "id": channel_id}, error=str(exc), status=400
        )
    if ch is None:
        flash(session, f"channel {channel_id} does not exist", "error")
        return RedirectResponse("/ui/channels", 303)
    flash(session, f"saved channel {ch.name}")
    return RedirectResponse(f"/ui/channels/{channel_id}", 303)


@router.post("/{channel_id}/status")
async def toggle(channel_id: int, request: Request, session: UserDep) -> Response:
    service = _service(request)
    ch = await service.get(channel_id)
    if ch is not None:
        enabled = ch.status == ChannelStatus.ENABLED
        ch = await (service.disable if enabled else service.enable)(channel_id)
    if ch is None:
        return Response(f"channel {channel_id} does not exist", status_code=404)
    return render(
        request,
        "partials/channel_row.html",
        session,
        c=ch,
        health={ch.id: _health(request, ch)},
        types={t["type"]: t["name"] for t in _types()},
        split=split_csv,
    )


@router.post("/{channel_id}/delete")
async def delete(channel_id: int, request: Request, session: UserDep) -> Response:
    deleted = await _service(request).delete(channel_id)
    if request.headers.get("hx-request"):
        return Response("" if deleted else "not found", status_code=200 if deleted else 404)
    flash(
        session,
        f"deleted channel {channel_id}" if deleted else "no such channel",
        "ok" if deleted else "error",
    )
    return RedirectResponse("/ui/channels", 303)


@router.post("/{channel_id}/test")
async def test(channel_id: int, request: Request, session: UserDep) -> Response:
    """ChannelService.test with the model's own API type, recorded like /api/channel/test."""
    service = _service(request)
    ch = await service.get(channel_id)
    model = request.query_params.get("model", "")
    if ch is None or not model:
        return render(
            request,
            "partials/test_result.html",
            session,
            ok=False,
            model=model,
            message="no such channel or model",
            seconds=0,
        )
    check = await service.test(ch, model)
    return render(
        request,
        "partials/test_result.html",
        session,
        ok=check.success,
        model=model,
        message=check.message,
        seconds=check.time,
        type=check.type,
    )
