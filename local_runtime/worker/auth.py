"""The worker's check of the cluster secret (a GPU node's workers; see gateway.cluster.secret).

Under `modelport serve` workers listen on loopback for their own gateway and check nothing. A
node's supervisor starts them with MODELPORT_WORKER_SECRET, and then every request, /health
included, must carry `Authorization: Bearer <secret>`: the gateways send it, and the supervisor
sends it on its health checks. A plain ASGI wrapper rather than Starlette middleware: it is on the
hot path and streams must pass through untouched.
"""

from __future__ import annotations

import hmac

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.cluster.secret import WORKER_SECRET_ENV
from local_runtime.worker.errors import error_body

__all__ = ["WORKER_SECRET_ENV", "RequireSecret"]

_MESSAGE = (
    "this worker belongs to a modelport node and answers only its gateways: send "
    "Authorization: Bearer <MODELPORT_CLUSTER_SECRET>, or call the gateway instead"
)


class RequireSecret:
    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self._expected = b"Bearer " + secret.encode()
        body = error_body(_MESSAGE, status=401, code="invalid_cluster_secret")
        body["error"]["type"] = "authentication_error"
        self._refusal = orjson.dumps(body)

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
