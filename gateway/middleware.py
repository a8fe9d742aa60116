"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): a request id on every
response, header and body limits, one structured access line and a metrics count per request.

A request without its own X-Request-ID gets this process's random prefix and a sequence number:
unique without a getrandom() system call per request (the id names a request, it guards nothing).

Headers: more than `max_headers` of them, or more than `max_header_bytes` in total, get 431
(uvicorn's own h11 limit bounds a single incomplete header block before we see it).

Relay routes are called directly once they have answered once (gateway.relay.route, "Direct
calls"), past FastAPI's routing; everything here applies to them all the same.

Bodies over the limit are refused with 413 before they are read whole: at once when
Content-Length says so, or as soon as a chunked body crosses the limit. The limit belongs to the
route, not to what the client says it sends: only the upload routes (`upload_paths`) get
`max_upload`; a multipart Content-Type on any other route still gets `max_json` (it once lifted a
JSON route's limit to the upload limit). Compressed request bodies are refused (415): the gateway
never inflates what a client sends, so no decompression bomb.

Once the app has started (lifespan startup complete) everything built so far -- imported modules,
the app, its services, ~200k objects -- is moved out of the garbage collector's sight
(`gc.freeze()`): those objects live as long as the process, yet every full collection walked
them all, and under load full collections came often enough to cost ~40 % of a relayed
request's CPU (bench/gateway/README.md, round two).
"""

from __future__ import annotations

import gc
import itertools
import logging
import secrets
import time
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.error_handlers import on_surface
from gateway.logging import ACCESS_LOGGER, REQUEST_FIELDS, access_line
from gateway.metrics import Metrics
from gateway.relay.route import DIRECT_TABLE, Handler, serve_direct
from modelport_wire.openai import error_body

access_log = logging.getLogger(ACCESS_LOGGER)


class _TooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing lets it through to the error handlers."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_json: int,
        max_upload: int,
        upload_paths: tuple[str, ...] = (),
        max_headers: int = 100,
        max_header_bytes: int = 32 * 1024,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.max_json = max_json
        self.max_upload = max_upload
        self.upload_paths = upload_paths
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.metrics = metrics
        self._id_prefix = secrets.token_hex(4)
        self._id_seq = itertools.count(1)
        self._direct: dict[tuple[str, str], Handler] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, _freezing_after_startup(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        raw_headers = scope["headers"]
        headers = dict(raw_headers)
        rid = (
            headers.get(b"x-request-id", b"").decode("latin-1")[:64]
            or f"{self._id_prefix}{next(self._id_seq):08x}"
        )
        scope.setdefault("state", {})["request_id"] = rid
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        fields: dict[str, Any] = {"request_id": rid}
        reset = REQUEST_FIELDS.set(fields)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await self._handle(scope, receive, send_with_id, headers, raw_headers)
        except BaseException:  # re-raised; only marks the access line
            status = status or 500
            raise
        finally:
            REQUEST_FIELDS.reset(reset)
            method = scope["method"]
            if self.metrics is not None:
                self.metrics.count_http(method, status or 499)
            access_line(
                access_log,
                fields,
                method=method,
                path=scope["path"],
                status=status or 499,
                started=started,
                client=client[0] if (client := scope.get("client")) else "",
            )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send_with_id: Send,
        headers: dict[bytes, bytes],
        raw_headers: list[tuple[bytes, bytes]],
    ) -> None:
        if len(raw_headers) > self.max_headers or (
            sum(len(k) + len(v) for k, v in raw_headers) > self.max_header_bytes
        ):
            await _reply(
                send_with_id,
                scope["path"],
                431,
                f"request headers too large (at most {self.max_headers} headers, "
                f"{self.max_header_bytes} bytes in total)",
                "request_header_fields_too_large",
            )
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send_with_id)
            return
        encoding = headers.get(b"content-encoding", b"identity").lower()
        if encoding not in (b"identity", b""):
            await _reply(
                send_with_id,
                scope["path"],
                415,
                "compressed request bodies are not accepted: send the body uncompressed",
                "unsupported_content_encoding",
            )
            return
        path: str = scope["path"]
        limit = self.max_upload if path.startswith(self.upload_paths) else self.max_json
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reply(send_with_id, path, 413, _too_large(limit), "request_too_large")
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_with_id(message)

        try:
            direct = self._direct.get((scope["method"], path))
            if direct is not None:
                await serve_direct(direct, scope, limited_receive, tracking_send)
            else:
                scope[DIRECT_TABLE] = self._direct  # a relay route adds itself (route.py)
                await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reply(send_with_id, path, 413, _too_large(limit), "request_too_large")


def _freezing_after_startup(send: Send) -> Send:
    async def send_then_freeze(message: Message) -> None:
        await send(message)
        if message["type"] == "lifespan.startup.complete":
            gc.collect()  # garbage from startup must not become immortal
            gc.freeze()

    return send_then_freeze


def _too_large(limit: int) -> str:
    return (
        f"request body larger than {limit} bytes: send a smaller request (the limit is "
        "MODELPORT_MAX_BODY_BYTES, MODELPORT_MAX_UPLOAD_BYTES for uploads)"
    )


async def _reply(send: Send, path: str, status: int, message: str, code: str) -> None:
    body = orjson.dumps(on_surface(path, error_body(message, code=code)))
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
