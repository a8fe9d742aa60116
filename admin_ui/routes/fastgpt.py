"""FastGPT export: preview of both formats, download, per-model overrides, push to a FastGPT.
Everything goes through gateway.export (export_fastgpt, push_models, served_models,
load_overrides, save_override), the same code as /api/export/fastgpt."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from admin_ui.web import UserDep, flash, form_of, form_str, render
from gateway.db.models import parse_json_object
from gateway.export.fastgpt import (
    FastGPTExportError,
    FastGPTPushError,
    export_fastgpt,
    push_models,
)
from gateway.export.service import KEY_PLACEHOLDER, load_overrides, save_override, served_models
from gateway.services import services_of

router = APIRouter(prefix="/fastgpt")
FILENAMES = {"config": "config.json", "models": "model-config.json"}


def _key(request: Request, given: str) -> str:
    if given:
        return given
    initial = services_of(request).settings.initial_token
    return initial.get_secret_value() if initial else KEY_PLACEHOLDER


async def _export(request: Request, fmt: str, api_key: str) -> tuple[Any, dict[str, Any]]:
    state = services_of(request)
    async with state.sessions() as db:
        overrides = await load_overrides(db)
    data = export_fastgpt(
        served_models(state.models, state.prices),
        format=fmt,  # type: ignore[arg-type]
        base_url=state.settings.base_url,
        api_key=_key(request, api_key),
        overrides=overrides,
    )
    return data, overrides


def _pretty(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


@router.get("")
async def page(request: Request, session: UserDep) -> Response:
    api_key = request.query_params.get("api_key", "")
    error = ""
    previews: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    try:
        config, overrides = await _export(request, "config", api_key)
        models, _ = await _export(request, "models", api_key)
        previews = {"config": _pretty(config), "models": _pretty(models)}
    except FastGPTExportError as exc:
        error = str(exc)
    served = served_models(services_of(request).models)
    return render(
        request,
        "fastgpt.html",
        session,
        page="fastgpt",
        previews=previews,
        error=error,
        served=served,
        overrides={k: _pretty(v) for k, v in overrides.items()},
        api_key=api_key,
        placeholder=KEY_PLACEHOLDER,
        results=None,
    )


@router.get("/download")
async def download(request: Request, session: UserDep) -> Response:
    fmt = request.query_params.get("format", "config")
    if fmt not in FILENAMES:
        return Response("format must be config or models", status_code=400)
    try:
        data, _ = await _export(request, fmt, request.query_params.get("api_key", ""))
    except FastGPTExportError as exc:
        return Response(str(exc), status_code=400)
    return Response(
        _pretty(data),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{FILENAMES[fmt]}"'},
    )


@router.post("/override")
async def override(request: Request, session: UserDep) -> Response:
    form = await form_of(request)
    model = form_str(form, "model")
    try:
        data = parse_json_object(form_str(form, "data"), "override")
    except ValueError as exc:
        flash(session, f"{model}: {exc}", "error")
        return RedirectResponse("/ui/fastgpt#overrides", 303)
    async with services_of(request).sessions() as db:
        await save_override(db, model=model, data=data)
    flash(session, f"saved the override of {model}" if data else f"removed the override of {model}")
    return RedirectResponse("/ui/fastgpt#overrides", 303)


@router.post("/push")
async def push(request: Request, session: UserDep) -> Response:
    form = await form_of(request)
    url, password = form_str(form, "url"), form_str(form, "root_password")
    api_key = form_str(form, "api_key")
    results: list[Any] | None = None
    if not url or not password:
        flash(session, "enter FastGPT's URL and its root password", "error")
    else:
        try:
            models, _ = await _export(request, "models", api_key)
            results = await push_models(url, root_password=password, models_json=models)
        except (FastGPTExportError, FastGPTPushError) as exc:
            flash(session, f"push failed: {exc}", "error")
    if results is not None:
        good = sum(1 for r in results if r.ok)
        flash(
            session,
            f"pushed {good} of {len(results)} model(s) to {url}",
            "ok" if good == len(results) else "error",
        )
    return render(
        request, "partials/push_result.html", session, results=results, flash=session.pop_flash()
    )
