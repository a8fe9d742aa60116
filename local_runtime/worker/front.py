"""One HTTP front process of a worker (see local_runtime.worker.fronts for why and how).

    python -m local_runtime.worker.front --index I --listen-fd F --link-fd L --internal NAME

Started only by the worker, with the listening socket (F) and its end of the link (L) inherited.
A bare ASGI app rather than Starlette: this process exists to spend as little CPU per request as
possible, and it has two routes of its own. Once the model process has sent INFO, POST to the
model's route (/v1/embeddings or /v1/rerank) is answered here with the same request checks and
response builder the single-process worker uses, so both answer alike; everything else, and
everything before INFO, is proxied to the model process's app unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
import orjson

from local_runtime.engines.base import EngineError
from local_runtime.engines.rerank import parse_rerank, rerank_response
from local_runtime.engines.sentence_transformers import (
    EmbeddingInfo,
    embedding_response,
    parse_embedding_request,
)
from local_runtime.worker import ipc
from local_runtime.worker.auth import RequireSecret
from local_runtime.worker.errors import error_json, parse_json_body
from local_runtime.worker.settings import WorkerSettings
from modelport_wire.openai import RETRY_AFTER

log = logging.getLogger("modelport.worker.front")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# The model's answer to one call: token counts and a rows x width float32 array.
Answer = tuple[list[int], np.ndarray]

_JSON = [(b"content-type", b"application/json")]
# Connection-level headers belong to each hop; uvicorn writes its own date and server.
_REQUEST_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}
_RESPONSE_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"}


class Route:
    """What the front does for the model's own route: check, what to send, what to answer."""

    path: str

    def call(self, body: dict[str, Any]) -> tuple[bytes, Callable[[Answer], dict[str, Any]]]:
        """The CALL payload, and how to turn the answer into the OpenAI body."""
        raise NotImplementedError


class EmbeddingsRoute(Route):
    path = "/v1/embeddings"

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = EmbeddingInfo(
            uid=info["uid"],
            dimensions=info["dimensions"],
            matryoshka=info["matryoshka"],
            normalized=info["normalized"],
        )

    def call(self, body: dict[str, Any]) -> tuple[bytes, Callable[[Answer], dict[str, Any]]]:
        texts, encoding, dimensions = parse_embedding_request(body, self.info)

        def answer(result: Answer) -> dict[str, Any]:
            counts, vectors = result
            return embedding_response(self.info, vectors, counts, encoding, dimensions)

        return orjson.dumps({"texts": texts}), answer


class RerankRoute(Route):
    path = "/v1/rerank"

    def __init__(self, info: dict[str, Any]) -> None:
        self.uid: str = info["uid"]

    def call(self, body: dict[str, Any]) -> tuple[bytes, Callable[[Answer], dict[str, Any]]]:
        query, texts, top_n, return_documents = parse_rerank(body)

        def answer(result: Answer) -> dict[str, Any]:
            counts, scores = result
            return rerank_response(
                self.uid, texts, scores[:, 0].tolist(), counts, top_n, return_documents
            )

        return orjson.dumps({"query": query, "documents": texts}), answer


ROUTES: dict[str, Callable[[dict[str, Any]], Route]] = {
    r.path: r for r in (EmbeddingsRoute, RerankRoute)
}


class ModelLink(ipc.FramedProtocol):
    """The front's end of its link: calls in flight by id, and the model's INFO once ready."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        super().__init__()
        self.route: Route | None = None
        self._on_lost = on_lost
        self._waiting: dict[int, asyncio.Future[Answer]] = {}
        self._next_id = 0

    def call(self, payload: bytes) -> asyncio.Future[Answer]:
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        self.send(ipc.frame(self._next_id, ipc.CALL, payload))
        return future

    def frame_received(self, request_id: int, kind: int, payload: bytes) -> None:
        if kind == ipc.INFO:
            info = orjson.loads(payload)
            self.route = ROUTES[info["route"]](info)
            return
        future = self._waiting.pop(request_id, None)
        if future is None or future.done():
            return
        if kind == ipc.RESULT:
            future.set_result(ipc.unpack_result(payload))
        else:
            failure = orjson.loads(payload)
            future.set_exception(
                EngineError(failure["message"], status=failure["status"], code=failure["code"])
            )

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(
                    EngineError("the model process has stopped", status=503, code="unavailable")
                )
        self._waiting.clear()
        self._on_lost()


class FrontApp:
    """The ASGI app of one front."""

    def __init__(self, index: int, link: ModelLink, internal: str) -> None:
        self.link = link
        self.tag = (b"x-modelport-front", str(index).encode())
        # No timeout on this hop: the gateway decides how long a request may take.
        self.proxy = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds="\0" + internal),
            base_url="http://worker",
            timeout=httpx.Timeout(None),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        route = self.link.route
        if route is not None and scope["method"] == "POST" and scope["path"] == route.path:
            await self.answer(route, receive, send)
        else:
            await self.forward(scope, receive, send)

    async def answer(self, route: Route, receive: Receive, send: Send) -> None:
        try:
            payload, build = route.call(parse_json_body(await read_body(receive)))
            body = build(await self.link.call(payload))
        except EngineError as exc:
            await self.error(send, exc.status, exc.message, exc.code)
            return
        except Exception as exc:  # the single-process worker's last-resort handler, same shape
            log.exception("unexpected error")
            await self.error(
                send, 500, f"internal error: {type(exc).__name__}: {exc}", "internal_error"
            )
            return
        await self.respond(send, 200, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Proxy the request to the model process's app and stream its answer back."""
        target = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        headers = [(k, v) for k, v in scope["headers"] if k not in _REQUEST_HOP]
        request = self.proxy.build_request(
            scope["method"],
            target.decode("latin-1"),
            headers=headers,
            content=await read_body(receive),
        )
        try:
            response = await self.proxy.send(request, stream=True)
        except httpx.TransportError as exc:
            await self.error(send, 503, f"the model process is not answering: {exc}", "unavailable")
            return
        try:
            headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _RESPONSE_HOP]
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [*headers, self.tag],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    async def respond(
        self, send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        headers = [*_JSON, (b"content-length", str(len(body)).encode()), self.tag, *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def error(self, send: Send, status: int, message: str, code: str | int | None) -> None:
        """The OpenAI error shape, with Retry-After where the single-process worker sends it."""
        body = error_json(status, message, code=code)
        extra = ((b"retry-after", b"1"),) if status in RETRY_AFTER else ()
        await self.respond(send, status, body, extra)


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def serve(args: argparse.Namespace) -> None:
    import uvicorn

    loop = asyncio.get_running_loop()
    server: uvicorn.Server | None = None

    def on_lost() -> None:
        """The model process has gone: nothing left to serve."""
        if server is not None:
            server.should_exit = True

    link_sock = socket.socket(fileno=args.link_fd)
    _, link = await loop.connect_accepted_socket(lambda: ModelLink(on_lost), sock=link_sock)
    app: Any = FrontApp(args.index, link, args.internal)
    if secret := WorkerSettings().secret:  # a GPU node's worker (worker.auth)
        app = RequireSecret(app, secret)
    config = uvicorn.Config(
        app,
        lifespan="off",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=75,  # as the single-process worker: the gateway's pool keeps them
    )
    server = uvicorn.Server(config)
    if link.transport is None or link.transport.is_closing():
        return  # the worker died while this front started
    await server.serve(sockets=[socket.socket(fileno=args.listen_fd)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_runtime.worker.front")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--link-fd", type=int, required=True)
    parser.add_argument("--internal", required=True, help="abstract socket of the model's app")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s front-{args.index} %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proxied /health otherwise
    import uvloop

    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
