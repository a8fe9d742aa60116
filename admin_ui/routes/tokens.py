"""Tokens: create (the key shown once), edit limits, enable/disable, delete, usage per token.

Writes go through TokenService with TokenCreate/TokenUpdate, as /api/token does; the service
announces each change (cached key lookups are dropped).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from admin_ui import stats
from admin_ui.web import UserDep, flash, form_of, form_str, render
from gateway.admin_api.envelope import first_error
from gateway.db.crud import tokens as crud
from gateway.db.models import TokenCreate, TokenUpdate
from gateway.db.tables import TokenStatus
from gateway.services import services_of
from gateway.tokens.service import TokenService

router = APIRouter(prefix="/tokens")
PAGE_SIZE = 50
USAGE_DAYS = 30


def _expiry(value: str) -> int:
    """datetime-local (server time) -> unix seconds; empty means never (-1)."""
    if not value:
        return -1
    try:
        return int(dt.datetime.fromisoformat(value).timestamp())
    except ValueError as exc:
        raise ValueError(f"expiry {value!r} is not a date and time") from exc


def _fields(form: FormData) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": form_str(form, "name"),
        "expired_time": _expiry(form_str(form, "expires")),
        "unlimited_quota": form.get("unlimited_quota") == "on",
        "models": form_str(form, "models"),
        "subnet": form_str(form, "subnet"),
        "log_content": form.get("log_content") == "on",
    }
    for n in ("remain_quota", "rpm", "tpm", "max_concurrency"):
        raw = form_str(form, n)
        if raw:
            data[n] = raw
    return data


def _service(request: Request) -> TokenService:
    service: TokenService = services_of(request).tokens
    return service


def _as_local(ts: int) -> str:
    return "" if ts is None or ts < 0 else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%dT%H:%M")


@router.get("")
async def list_page(request: Request, session: UserDep) -> Response:
    page = max(int(request.query_params.get("p", "0") or 0), 0)
    keyword = request.query_params.get("q", "")
    async with services_of(request).sessions() as db:
        rows, total = await crud.list_tokens(db, page=page, page_size=PAGE_SIZE, keyword=keyword)
        usage = await stats.token_usage(
            db, [r.id for r in rows if r.id], since=time.time() - USAGE_DAYS * 86400
        )
    new_key = session.take_secret()
    return render(
        request,
        "tokens.html",
        session,
        page="tokens",
        tokens=rows,
        total=total,
        p=page,
        pages=(total + PAGE_SIZE - 1) // PAGE_SIZE,
        q=keyword,
        usage=usage,
        usage_days=USAGE_DAYS,
        new_key=new_key,
        now=time.time(),
        form={},
    )


@router.post("")
async def create(request: Request, session: UserDep) -> Response:
    form = await form_of(request)
    try:
        data = TokenCreate.model_validate(_fields(form))
    except ValidationError as exc:
        return await _form_error(request, session, first_error(exc), form)
    except ValueError as exc:
        return await _form_error(request, session, str(exc), form)
    row, key = await _service(request).create(data)
    # Kept in the session row (encrypted) for the next page view only, never in a URL or cookie.
    session.keep_secret(key)
    flash(session, f"created token {row.name or row.id}: copy the key now, it is shown only once")
    return RedirectResponse("/ui/tokens", 303)


async def _form_error(request: Request, session: Any, error: str, form: FormData) -> Response:
    flash(session, error, "error")
    async with services_of(request).sessions() as db:
        rows, total = await crud.list_tokens(db, page_size=PAGE_SIZE)
    return render(
        request,
        "tokens.html",
        session,
        page="tokens",
        tokens=rows,
        total=total,
        p=0,
        pages=1,
        q="",
        usage={},
        usage_days=USAGE_DAYS,
        new_key=None,
        now=time.time(),
        form=dict(form),
        status=400,
    )


@router.get("/{token_id}")
async def edit_page(token_id: int, request: Request, session: UserDep) -> Response:
    row = await _service(request).get(token_id)
    if row is None:
        flash(session, f"token {token_id} does not exist", "error")
        return RedirectResponse("/ui/tokens", 303)
    return render(
        request,
        "token_form.html",
        session,
        page="tokens",
        t=row,
        expires=_as_local(row.expired_time),
        error="",
    )


@router.post("/{token_id}")
async def update(token_id: int, request: Request, session: UserDep) -> Response:
    form = await form_of(request)
    try:
        data = TokenUpdate.model_validate({**_fields(form), "id": token_id})
    except (ValidationError, ValueError) as exc:
        flash(session, first_error(exc) if isinstance(exc, ValidationError) else str(exc), "error")
        return RedirectResponse(f"/ui/tokens/{token_id}", 303)
    row = await _service(request).update(data)
    flash(
        session,
        f"saved token {row.name}" if row else f"token {token_id} does not exist",
        "ok" if row else "error",
    )
    return RedirectResponse("/ui/tokens", 303)


@router.post("/{token_id}/status")
async def toggle(token_id: int, request: Request, session: UserDep) -> Response:
    service = _service(request)
    row = await service.get(token_id)
    if row is not None:
        enabled = row.status == TokenStatus.ENABLED
        row = await (service.disable if enabled else service.enable)(token_id)
    if row is None:
        return Response(f"token {token_id} does not exist", status_code=404)
    return render(request, "partials/token_row.html", session, t=row, usage={}, now=time.time())


@router.post("/{token_id}/delete")
async def delete(token_id: int, request: Request, session: UserDep) -> Response:
    deleted = await _service(request).delete(token_id)
    if request.headers.get("hx-request"):
        return Response("" if deleted else "not found", status_code=200 if deleted else 404)
    flash(session, "deleted" if deleted else "no such token", "ok" if deleted else "error")
    return RedirectResponse("/ui/tokens", 303)
