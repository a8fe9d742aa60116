"""/api/status (no auth; used as a healthcheck, as in One API)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway import __version__
from gateway.admin_api.envelope import ok
from gateway.services import services_of

router = APIRouter()


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    state = services_of(request)
    return ok(
        {
            "version": __version__,
            "start_time": state.start_time,
            "system_name": "modelport",
            "runtime": state.runtime is not None,
        }
    )
