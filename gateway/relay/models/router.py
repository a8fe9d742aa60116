from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.auth.tokens import Caller
from gateway.deps import CallerDep
from gateway.errors import ModelNotFound
from gateway.relay.models.service import ModelDirectory
from gateway.services import services_of

router = APIRouter()


def _directory(request: Request) -> ModelDirectory:
    return services_of(request).models


def _described(d: ModelDirectory, caller: Caller, model_id: str) -> dict[str, Any] | None:
    return next((d.entry(m) for m in d.served(caller) if m.id == model_id), None)


@router.get("/models", summary="List the models this token can use")
async def list_models(request: Request, caller: CallerDep) -> dict[str, Any]:
    d = _directory(request)
    return {"object": "list", "data": [d.entry(m) for m in d.served(caller)]}


@router.get("/models/{model_id:path}", summary="Describe one model")
async def get_model(model_id: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    d = _directory(request)
    if (found := _described(d, caller, model_id)) is not None:
        return found
    if caller.may_use(model_id) and (not_ready := await d.not_ready(model_id)) is not None:
        # asking may have refreshed this process's view of the local runtime
        if (found := _described(d, caller, model_id)) is not None:
            return found
        raise not_ready
    raise ModelNotFound(
        f"model '{model_id}' does not exist or this token may not use it", param="model"
    )
