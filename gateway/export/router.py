"""/api/export/fastgpt: both FastGPT formats, stored overrides, and push to a running FastGPT."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from gateway.admin_api.envelope import fail, ok
from gateway.deps import SessionDep
from gateway.export.fastgpt import (
    FastGPTExportError,
    FastGPTPushError,
    export_fastgpt,
    load_user_config,
    push_models,
)
from gateway.export.service import KEY_PLACEHOLDER, load_overrides, save_override, served_models
from gateway.services import services_of

router = APIRouter(prefix="/export/fastgpt")


class ExportRequest(BaseModel):
    format: Literal["config", "models"] = "config"
    api_key: str | None = None
    existing: str | None = Field(default=None, description="a config.json (json5) to merge into")


class PushRequest(BaseModel):
    url: str = Field(min_length=1)
    root_password: str = Field(min_length=1)
    api_key: str | None = None


class OverrideRequest(BaseModel):
    model: str = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data")
    @classmethod
    def storable(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Stored as JSON: what orjson cannot write (an integer beyond 64 bits) is a 400 here,
        not a 500 at the database (the fuzzer found -9223372036854775809)."""
        try:
            orjson.dumps(data)
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"override data cannot be stored: {exc}") from exc
        return data


def _api_key(request: Request, given: str | None) -> str:
    if given:
        return given
    initial = services_of(request).settings.initial_token
    return initial.get_secret_value() if initial else KEY_PLACEHOLDER


async def _build(request: Request, session: SessionDep, body: ExportRequest) -> Any:
    state = services_of(request)
    existing = load_user_config(body.existing) if body.existing else None
    return export_fastgpt(
        served_models(state.models, state.prices),
        format=body.format,
        base_url=state.settings.base_url,
        api_key=_api_key(request, body.api_key),
        overrides=await load_overrides(session),
        existing=existing,
    )


@router.get("")
async def get_export(
    request: Request,
    session: SessionDep,
    format: Literal["config", "models"] = "config",
    api_key: str | None = None,
) -> dict[str, Any]:
    try:
        return ok(await _build(request, session, ExportRequest(format=format, api_key=api_key)))
    except FastGPTExportError as exc:
        return fail(str(exc))


@router.post("")
async def post_export(body: ExportRequest, request: Request, session: SessionDep) -> dict[str, Any]:
    try:
        return ok(await _build(request, session, body))
    except (FastGPTExportError, ValueError) as exc:
        return fail(str(exc))


@router.get("/overrides")
async def get_overrides(session: SessionDep) -> dict[str, Any]:
    return ok(await load_overrides(session))


@router.put("/overrides")
async def put_override(body: OverrideRequest, session: SessionDep) -> dict[str, Any]:
    await save_override(session, model=body.model, data=body.data)
    return ok(await load_overrides(session))


@router.post("/push")
async def push(body: PushRequest, request: Request, session: SessionDep) -> dict[str, Any]:
    try:
        models_json = await _build(
            request, session, ExportRequest(format="models", api_key=body.api_key)
        )
        results = await push_models(
            body.url, root_password=body.root_password, models_json=models_json
        )
    except (FastGPTExportError, FastGPTPushError) as exc:
        return fail(str(exc))
    return ok([dataclasses.asdict(r) for r in results])
