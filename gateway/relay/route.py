"""A leaner route class for the JSON relay endpoints (chat, completions, embeddings, rerank,
images): the same OpenAPI schema as any FastAPI route, a shorter path per request.

Why: a relayed request is a few hundred microseconds of gateway CPU, and profiling showed FastAPI's
generic machinery (dependency solving, re-walking the routes, reading the body as `json.loads`
then validating the dict) among the largest parts of it. Every relay endpoint has the same shape --
`(body: SomeRequest, request: Request, caller: Caller, relay: RelayService)` -- so this class
resolves the parameters once, when the route is built, and per request does only: authenticate,
check the Content-Type, read the body, validate it with pydantic-core straight from the bytes,
call the endpoint.
Validation errors become FastAPI's own RequestValidationError, so the app's one handler still
words them.

An endpoint with any other parameter is refused at import time rather than served wrongly.

Direct calls: once a relay route has answered a request, GatewayMiddleware sends later requests for
the same method and path straight to its handler (`serve_direct`), past FastAPI's router, its
exception and exit-stack middleware and the two request wrappers -- nine coroutine layers that
every await of the request resumed through, ~15 % of a relayed request's CPU. The route teaches
the middleware its own address (`DIRECT_TABLE` in the scope), so no FastAPI internals are read;
exceptions get the app's own handlers, as FastAPI's ExceptionMiddleware would give them.

`UploadRoute` (the multipart audio endpoints) keeps FastAPI's generic handler but authenticates
from the headers first: FastAPI reads and spools the whole form before it solves dependencies,
so a caller without a key could make the gateway take in 64 MiB before its 401.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, get_type_hints

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.auth.tokens import Caller
from gateway.deps import current_caller
from gateway.errors import InvalidRequest
from gateway.relay.service import RelayService
from gateway.services import services_of

DIRECT_TABLE = "modelport.relay_direct"  # scope key: {(method, path): handler}, per middleware
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class RelayRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        hints = get_type_hints(endpoint, include_extras=False)
        body_name, model = "", None
        request_name = caller_name = relay_name = ""
        for name in inspect.signature(endpoint).parameters:
            kind = hints.get(name)
            if kind is Request:
                request_name = name
            elif kind is Caller:
                caller_name = name
            elif kind is RelayService:
                relay_name = name
            elif isinstance(kind, type) and issubclass(kind, BaseModel) and model is None:
                body_name, model = name, kind
            else:
                raise TypeError(f"RelayRoute {self.path}: unsupported parameter {name!r}")
        if model is None:
            raise TypeError(f"RelayRoute {self.path}: no pydantic body parameter")
        validate = model.model_validate_json

        async def handle(request: Request) -> Response:
            kwargs: dict[str, Any] = {}
            # Credentials first, as FastAPI's dependencies would: an anonymous caller learns
            # nothing about the body's shape.
            if caller_name:
                kwargs[caller_name] = await current_caller(request)
            _require_json(request)
            try:
                kwargs[body_name] = validate(await request.body())
            except ValidationError as exc:
                errors = exc.errors(include_url=False)
                for e in errors:
                    e["loc"] = ("body", *e["loc"])
                raise RequestValidationError(errors) from None
            if request_name:
                kwargs[request_name] = request
            if relay_name:
                kwargs[relay_name] = services_of(request).relay
            response: Response = await endpoint(**kwargs)
            return response

        direct = not self.param_convertors  # an exact path: the same handler for every request

        async def handle_and_teach(request: Request) -> Response:
            table = request.scope.get(DIRECT_TABLE)
            if direct and table is not None and not request.scope.get("root_path"):
                table[(request.scope["method"], request.scope["path"])] = handle
            return await handle(request)

        return handle_and_teach


async def serve_direct(handle: Handler, scope: Scope, receive: Receive, send: Send) -> None:
    """What FastAPI does for a matched relay route, less its layers: the handler's answer, or the
    app's handler for what it raised (ModelportError, validation, HTTPException). Anything else
    goes on to ServerErrorMiddleware (the 500 handler), as it would through FastAPI."""
    request = Request(scope, receive, send)
    try:
        response = await handle(request)
    except Exception as exc:
        on_error = _handler_for(scope["app"].exception_handlers, exc)
        if on_error is None:
            raise
        answer = on_error(request, exc)
        response = await answer if inspect.isawaitable(answer) else answer
    await response(scope, receive, send)


def _handler_for(handlers: dict[Any, Any], exc: Exception) -> Any:
    """Starlette's lookup: a status handler for an HTTPException, else the nearest class in the
    exception's MRO -- short of Exception itself, which is the 500 handler's, outside."""
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


def _require_json(request: Request) -> None:
    """A JSON route reads JSON: any other declared Content-Type is refused (415) rather than
    parsed as JSON anyway. No Content-Type at all is taken as JSON, as FastAPI does."""
    ctype = request.headers.get("content-type")
    if ctype is None:
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise InvalidRequest(
        f"this endpoint takes a JSON body; Content-Type {media!r} is not accepted: "
        "send 'Content-Type: application/json'",
        status=415,
        code="unsupported_media_type",
    )


class UploadRoute(APIRoute):
    """FastAPI's route, with the caller authenticated before any of the body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            await current_caller(request)  # the CallerDep then reuses request.state.caller
            return await handler(request)

        return handle
