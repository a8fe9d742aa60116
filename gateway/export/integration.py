"""Plugs the export API into the app (called from gateway.app)."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from gateway.deps import require_admin
from gateway.export.router import router


def install(app: FastAPI) -> None:
    app.include_router(
        router, prefix="/api", dependencies=[Depends(require_admin)], tags=["Admin API"]
    )
