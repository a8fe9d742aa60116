"""The worker's HTTP app: one loaded engine behind OpenAI-shaped routes.

Starlette rather than FastAPI on purpose: every request here is on the hot path of a benchmark
against in-process calls, bodies are parsed once with orjson and handed to the engine as dicts,
and validation belongs to the engine (which knows what its library accepts) and the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from local_runtime.engines import base
from local_runtime.engines.base import Engine, EngineError
from local_runtime.spec import ResolvedSpec
from local_runtime.worker import media
from local_runtime.worker.auth import RequireSecret
from local_runtime.worker.discovery import find_engine_class, import_engine_class
from local_runtime.worker.errors import error_response, parse_json_body
from local_runtime.worker.fronts import FrontPool, check_engine
from local_runtime.worker.settings import WorkerSettings
from modelport_wire import openai as wire

log = logging.getLogger("modelport.worker")

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class WorkerState:
    """Everything the routes share, hung on `app.state.worker` (no module-level state)."""

    spec: ResolvedSpec
    settings: WorkerSettings
    on_fatal: Callable[[], None] | None = None
    engine: Engine | None = None
    capabilities: frozenset[str] = frozenset()
    engine_name: str = ""
    status: str = "loading"
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    load_seconds: float | None = None
    inflight: int = 0
    fronts: FrontPool | None = None  # engine_options.http_fronts > 0 (local_runtime.worker.fronts)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "uid": self.spec.uid,
            "engine": self.engine_name or self.spec.engine,
            "model_type": self.spec.model_type,
            "capabilities": sorted(self.capabilities),
            "pid": os.getpid(),
            "rss_bytes": rss_bytes(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "load_seconds": self.load_seconds,
            "inflight": self.inflight,
        }
        if self.fronts is not None:
            body["inflight"] += self.fronts.inflight
            body["fronts"] = self.fronts.status()
        if self.error:
            body["error"] = self.error
        if self.engine is not None and self.status == "ready":
            return {**self.engine.status(), **body}  # the worker's own keys win
        return body

    async def load(self) -> None:
        """Build and load the engine; on failure report, then exit after a grace period."""
        t0 = time.perf_counter()
        try:
            cls = (
                import_engine_class(self.settings.engine_class)
                if self.settings.engine_class
                else find_engine_class(self.spec)
            )
            self.engine_name = cls.name
            self.capabilities = cls.capabilities
            for ok, reason in (cls.available(), cls.match(self.spec)):
                if not ok:
                    raise RuntimeError(reason)
            engine = cls(self.spec)
            # An engine may narrow its capabilities per spec (the fake engine does).
            self.capabilities = frozenset(engine.capabilities)
            if self.fronts is not None:
                check_engine(engine)
            await _in_daemon_thread(engine.load)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.status = "error"
            self.error = f"failed to load {self.spec.uid!r}: {type(exc).__name__}: {exc}"
            log.exception("load failed")
            print(f"modelport-worker: {self.error}", file=sys.stderr, flush=True)
            if self.on_fatal is not None:
                asyncio.get_running_loop().call_later(
                    self.settings.error_exit_grace_s, self.on_fatal
                )
            return
        self.engine = engine
        self.load_seconds = round(time.perf_counter() - t0, 3)
        if self.fronts is not None:
            self.fronts.serve(engine)
        self.status = "ready"
        log.info("%s ready in %.2fs", self.spec.uid, self.load_seconds)

    def unload(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            self.status = "stopping"
            engine.unload()


async def _in_daemon_thread(fn: Callable[[], None]) -> None:
    """Run `fn` in a daemon thread: unlike the default executor, which asyncio joins at
    shutdown, a SIGTERM during a long load must not wait for the load to finish."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)

    def target() -> None:
        outcome: BaseException | None = None
        try:
            fn()
        except BaseException as exc:
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we loaded
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=target, name="model-load", daemon=True).start()
    await done


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- request plumbing ------------------------------------------------------------------------
def _state(request: Request) -> WorkerState:
    return request.app.state.worker


def _ready_engine(state: WorkerState, capability: str) -> Engine:
    if state.capabilities and capability not in state.capabilities:
        raise EngineError(
            f"model {state.spec.uid!r} ({state.engine_name or state.spec.engine}) serves "
            f"{', '.join(sorted(state.capabilities))}; it does not serve {capability}",
            status=400,
            code="unsupported_operation",
        )
    if state.status == "error":
        raise EngineError(state.error or "the model failed to load", status=503, code="load_failed")
    if state.engine is None or state.status != "ready":
        raise EngineError(
            f"model {state.spec.uid!r} is {state.status}; retry when /health says ready",
            status=503,
            code="model_not_ready",
        )
    if not state.capabilities:  # engine built without declaring: trust its class
        state.capabilities = frozenset(state.engine.capabilities)
    return state.engine


async def _json_body(request: Request) -> dict[str, Any]:
    return parse_json_body(await request.body())


def _respond(state: WorkerState, result: Any) -> Response:
    if isinstance(result, dict):
        return Response(orjson.dumps(result, option=_JSON_OPTIONS), media_type="application/json")
    return _stream(state, result, wire.MEDIA_TYPE, wire.HEADERS)


def _stream(
    state: WorkerState,
    chunks: AsyncIterator[bytes],
    media_type: str,
    headers: Mapping[str, str] | None = None,
) -> StreamingResponse:
    state.inflight += 1  # the stream is in flight until its last byte, not until we return

    async def counted() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            state.inflight -= 1

    return StreamingResponse(counted(), media_type=media_type, headers=headers)


async def _guarded(request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
    state = _state(request)
    state.inflight += 1
    try:
        return await work()
    except EngineError as exc:
        return error_response(exc.status, exc.message, code=exc.code)
    finally:
        state.inflight -= 1


def _json_route(capability: str) -> Callable[[Request], Awaitable[Response]]:
    method_name = capability  # Engine methods are named after their capability.

    async def endpoint(request: Request) -> Response:
        async def work() -> Response:
            engine = _ready_engine(_state(request), capability)
            body = await _json_body(request)
            return _respond(_state(request), await getattr(engine, method_name)(body))

        return await _guarded(request, work)

    return endpoint


def _audio_route(translate: bool) -> Callable[[Request], Awaitable[Response]]:
    capability = base.TRANSLATIONS if translate else base.TRANSCRIPTIONS

    async def endpoint(request: Request) -> Response:
        async def work() -> Response:
            state = _state(request)
            engine = _ready_engine(state, capability)
            path, params = await media.read_audio_upload(request, state.settings.max_upload_bytes)
            try:
                result, media_type = await engine.transcriptions(path, params, translate=translate)
            finally:
                media.remove_upload(path)
            if isinstance(result, dict):
                return Response(orjson.dumps(result), media_type=media_type or "application/json")
            return Response(result, media_type=media_type or "text/plain")

        return await _guarded(request, work)

    return endpoint


async def images(request: Request) -> Response:
    async def work() -> Response:
        state = _state(request)
        engine = _ready_engine(state, base.IMAGES)
        body = await _json_body(request)
        pngs = await engine.images(body)
        result = await media.image_response(
            pngs,
            body,
            files_dir=state.settings.files_dir,
            public_url=state.settings.public_url,
            link_key=state.settings.link_key,
            link_ttl_s=state.settings.link_ttl_s,
            run=asyncio.to_thread,
        )
        return _respond(state, result)

    return await _guarded(request, work)


async def speech(request: Request) -> Response:
    """Audio bytes as the engine encodes them; a bad request is refused before the first byte."""

    async def work() -> Response:
        state = _state(request)
        engine = _ready_engine(state, base.SPEECH)
        media_type, audio = await engine.speech(await _json_body(request))
        return _stream(state, audio, media_type)

    return await _guarded(request, work)


async def health(request: Request) -> Response:
    return Response(orjson.dumps(_state(request).health()), media_type="application/json")


async def models(request: Request) -> Response:
    state = _state(request)
    spec = state.spec
    card = {
        "id": spec.uid,
        "object": "model",
        "created": int(state.started_at),
        "owned_by": "modelport",
        "model_name": spec.model_name,
        "model_type": spec.model_type,
        "engine": state.engine_name or spec.engine,
        "abilities": spec.abilities,
        "capabilities": sorted(state.capabilities),
        "context_length": spec.context_length,
        "dimensions": spec.dimensions,
        "max_tokens": spec.max_tokens,
        "voices": spec.voices,
        "status": state.status,
    }
    return Response(orjson.dumps({"object": "list", "data": [card]}), media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(
        500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error"
    )


def create_app(
    spec: ResolvedSpec,
    settings: WorkerSettings | None = None,
    *,
    on_fatal: Callable[[], None] | None = None,
    fronts: FrontPool | None = None,
) -> Starlette:
    """Build the app; the model loads in the background once the server starts.

    `on_fatal` is called `settings.error_exit_grace_s` after a failed load (the CLI stops the
    server and exits non-zero there). With `fronts`, the app serves the front processes (which
    start with it) on their private socket instead of clients on the port.
    """
    state = WorkerState(
        spec=spec, settings=settings or WorkerSettings(), on_fatal=on_fatal, fronts=fronts
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if fronts is not None:
            await fronts.start()
        task = asyncio.create_task(state.load())
        try:
            yield
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if fronts is not None:
                await fronts.stop()  # the batcher keeps serving their last requests meanwhile
            state.unload()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", _json_route(base.CHAT), methods=["POST"]),
        Route("/v1/completions", _json_route(base.COMPLETIONS), methods=["POST"]),
        Route("/v1/embeddings", _json_route(base.EMBEDDINGS), methods=["POST"]),
        Route("/v1/rerank", _json_route(base.RERANK), methods=["POST"]),
        Route("/v1/audio/transcriptions", _audio_route(translate=False), methods=["POST"]),
        Route("/v1/audio/translations", _audio_route(translate=True), methods=["POST"]),
        Route("/v1/images/generations", images, methods=["POST"]),
        Route("/v1/audio/speech", speech, methods=["POST"]),
    ]
    secret = state.settings.secret
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequireSecret, secret=secret)] if secret else None,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.worker = state
    return app
