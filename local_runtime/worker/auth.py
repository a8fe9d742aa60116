"""The worker's check of its key (local_runtime.keys says how keys are made).

Every supervisor starts its workers with their own key in MODELPORT_WORKER_SECRET (a loopback
worker under `modelport serve` too: any local process could otherwise use the models without
auth, quota or logs), and then every request, /health included (it names the pid, memory and
load), must carry `Authorization: Bearer <key>`: the gateways send it, and the supervisor sends it
on its health checks. A plain ASGI wrapper rather than Starlette middleware: it is on the hot path
and streams must pass through untouched.
"""

from __future__ import annotations

import hmac

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from local_runtime.keys import WORKER_SECRET_ENV
from local_runtime.worker.errors import error_json

__all__ = ["WORKER_SECRET_ENV", "RequireSecret"]

_MESSAGE = (
    "this worker answers only its modelport gateways (Authorization: Bearer <the worker's own "
    "key>): call the gateway instead, with an API key"
)


class RequireSecret:
    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self._expected = b"Bearer " + secret.encode()
        self._refusal = error_json(401, _MESSAGE, code="invalid_worker_key")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            response = Response(
                self._refusal,
                status_code=401,
                media_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._expected)
        return False
