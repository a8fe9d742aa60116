"""The one domain error base: what went wrong, with the status and OpenAI kind it maps to.

The gateway's tree (gateway.errors) and the engines' EngineError (local_runtime.engines.base)
both derive from it, so each HTTP surface maps every domain error once, at its edge: `/v1/*` to
the OpenAI body (`body()`), `/api/*` to One API's envelope, Xinference's routes to `{"detail"}`.
"""

from __future__ import annotations

from typing import Any

from modelport_wire.openai import error_body


class ModelportError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, code=self.code, param=self.param)
