"""Channels: list with health, add/edit with One API's fields, fetch models, test, toggle, delete.

Writes go through gateway.db.crud.channels and ChannelCreate/ChannelUpdate (the admin API's own
validation), followed by app.state.reload_routes(), exactly as /api/channel does.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from admin_ui.web import UserDep, flash, form_of, form_str, render
from gateway.admin_api.envelope import first_error
from gateway.channel_routes import endpoint_for
from gateway.channel_test import guess_type, run_test
from gateway.db.crud import channels as crud
from gateway.db.models import ChannelCreate, ChannelUpdate, split_csv
from gateway.db.tables import Channel, ChannelStatus
from gateway.security.upstream_urls import channel_url_problem
from gateway.upstreams.base import redirect_refused
from gateway.upstreams.registry import CHANNEL_TYPES, normalise_base_url

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


def _check_url(request: Request, base_url: str | None) -> None:
    if problem := channel_url_problem(base_url, request.app.state.settings.upstream_allow):
        raise ValueError(problem)


def _health(request: Request, ch: Channel) -> str:
    return str(request.app.state.health.state(f"{ch.id}@{ch.base_url}"))


@router.post("/fetch-models")
async def fetch_models(request: Request, session: UserDep) -> Response:
    """GET {base}/models on the upstream with the entered URL and key (server side, so the key
    never reaches another origin from the browser). Editing a channel with the key left empty
    uses the stored key, and then only towards the stored base URL: a stored key is never sent
    to an address typed into the form."""
    form = await form_of(request)
    current = split_csv(form_str(form, "models"))
    key = form_str(form, "key").splitlines()[0] if form_str(form, "key") else ""
    try:
        type_ = int(form_str(form, "type") or 50)
        base = normalise_base_url(type_, form_str(form, "base_url"))
    except ValueError as exc:
        return _models_field(request, session, current, str(exc))
    if not base.startswith(("http://", "https://")):
        return _models_field(request, session, current, "enter an http(s) base URL first")
    if problem := channel_url_problem(base, request.app.state.settings.upstream_allow):
        return _models_field(request, session, current, problem)
    channel_id = form_str(form, "id")
    if not key and channel_id.isdigit():
        ch = await _get(request, int(channel_id))
        if ch is not None and ch.base_url != base:
            return _models_field(
                request,
                session,
                current,
                "the saved key is only sent to the saved base URL: save the new URL first, "
                "or enter the key again",
            )
        key = request.app.state.box.decrypt(ch.key_enc) if ch else ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with httpx.AsyncClient(timeout=15, follow_redirects=False) as client:
            resp = await client.get(f"{base}/models", headers=headers)
        if resp.is_redirect:  # the key goes to the entered URL only, never where it points
            return _models_field(request, session, current, redirect_refused(resp.status_code))
        payload = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        return _models_field(
            request, session, current, f"could not list models at {base}/models: {exc}"
        )
    if resp.status_code >= 400 or not isinstance(payload, dict):
        return _models_field(
            request,
            session,
            current,
            f"{base}/models answered HTTP {resp.status_code}: {resp.text[:200]}",
        )
    found = [
        str(m.get("id")) for m in payload.get("data") or [] if isinstance(m, dict) and m.get("id")
    ]
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
    async with request.app.state.sessions() as db:
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
        data = ChannelCreate.model_validate(fields)
        if data.type not in CHANNEL_TYPES or data.type == 0:
            raise ValueError(f"unknown channel type {data.type}")
        _check_url(request, data.base_url)
    except ValidationError as exc:
        return _form_page(request, session, channel=fields, error=first_error(exc), status=400)
    except ValueError as exc:
        return _form_page(request, session, channel=fields, error=str(exc), status=400)
    async with request.app.state.sessions() as db:
        rows = await crud.create_channels(db, data=data, box=request.app.state.box)
    await request.app.state.reload_routes()
    flash(session, f"added {len(rows)} channel(s): " + ", ".join(r.name for r in rows))
    return RedirectResponse(f"/ui/channels/{rows[0].id}", 303)


async def _get(request: Request, channel_id: int) -> Channel | None:
    async with request.app.state.sessions() as db:
        ch = await db.get(Channel, channel_id)
    return None if ch is None or ch.builtin else ch


@router.get("/{channel_id}")
async def edit_page(channel_id: int, request: Request, session: UserDep) -> Response:
    ch = await _get(request, channel_id)
    if ch is None:
        flash(session, f"channel {channel_id} does not exist", "error")
        return RedirectResponse("/ui/channels", 303)
    return _form_page(request, session, channel=crud.to_public(ch).model_dump())


@router.post("/{channel_id}")
async def update(channel_id: int, request: Request, session: UserDep) -> Response:
    fields = _form_fields(await form_of(request))
    try:
        data = ChannelUpdate.model_validate({**fields, "id": channel_id})
        if data.type is not None and (data.type not in CHANNEL_TYPES or data.type == 0):
            raise ValueError(f"unknown channel type {data.type}")
        _check_url(request, data.base_url)
    except ValidationError as exc:
        return _form_page(
            request,
            session,
            channel={**fields, "id": channel_id},
            error=first_error(exc),
            status=400,
        )
    except ValueError as exc:
        return _form_page(
            request, session, channel={**fields, "id": channel_id}, error=str(exc), status=400
        )
    async with request.app.state.sessions() as db:
        ch = await crud.update_channel(db, data=data, box=request.app.state.box)
    if ch is None:
        flash(session, f"channel {channel_id} does not exist", "error")
        return RedirectResponse("/ui/channels", 303)
    await request.app.state.reload_routes()
    flash(session, f"saved channel {ch.name}")
    return RedirectResponse(f"/ui/channels/{channel_id}", 303)


@router.post("/{channel_id}/status")
async def toggle(channel_id: int, request: Request, session: UserDep) -> Response:
    ch = await _get(request, channel_id)
    if ch is None:
        return Response(f"channel {channel_id} does not exist", status_code=404)
    status = (
        ChannelStatus.MANUALLY_DISABLED
        if ch.status == ChannelStatus.ENABLED
        else ChannelStatus.ENABLED
    )
    async with request.app.state.sessions() as db:
        ch = await crud.update_channel(
            db, data=ChannelUpdate(id=channel_id, status=status), box=request.app.state.box
        )
    await request.app.state.reload_routes()
    assert ch is not None
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
    async with request.app.state.sessions() as db:
        deleted = await crud.delete_channel(db, channel_id=channel_id)
    if deleted:
        await request.app.state.reload_routes()
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
    """gateway.channel_test with the model's own API type, recorded like /api/channel/test."""
    state = request.app.state
    ch = await _get(request, channel_id)
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
    type_ = guess_type(model, orjson.loads(ch.model_types or "{}"))
    ep = endpoint_for(ch, state.box, state.settings)
    result = await run_test(state.upstreams[ep.kind], ep, model, type_)
    async with state.sessions() as db:
        await crud.set_channel_fields(
            db,
            channel_id=channel_id,
            test_time=int(time.time()),
            response_time=int(result.seconds * 1000),
            last_error=result.message[:500],
        )
    if result.success:
        state.health.success(ep.id)
    return render(
        request,
        "partials/test_result.html",
        session,
        ok=result.success,
        model=model,
        message=result.message,
        seconds=result.seconds,
        type=type_,
    )
