"""Where the gateway maps errors to bodies, once per surface.

Every error raised while serving a request (the ModelportError tree, FastAPI's HTTPException and
request-validation errors, anything unexpected) reaches one handler here and leaves in the shape
of the surface it hit: the OpenAI error body (modelport_wire.openai) on /v1/* and every other
path, One API's `{"success": false, "message", "data": null}` on /api/* (gateway.admin_api.envelope).
Xinference's routes answer `{"detail"}` themselves (gateway.runtime_host.api).

/openapi.json declares the same shapes: FastAPI's default `422 HTTPValidationError` goes (a
validation error answers 400 in the surface's shape), and every operation's `default` response
is its surface's error body, so a client generated from the schema parses what it really gets.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from gateway.admin_api.envelope import fail
from modelport_wire.errors import ModelportError
from modelport_wire.openai import ErrorResponse, error_body, status_code, status_type

log = logging.getLogger("modelport")

# The errors every /v1 route can answer, declared in /openapi.json so that generated clients
# know the body (components.schemas.ErrorResponse, OpenAI's own name for it).
OPENAI_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Invalid request: bad JSON, a missing or mistyped field (`param` names it)"),
        (401, "Missing or invalid API key"),
        (403, "The key may not use this model, or comes from a refused address"),
        (404, "Unknown model (the message lists the models the key can use)"),
        (413, "Request body too large"),
        (429, "Rate limit or quota exceeded (see Retry-After)"),
        (500, "Internal error (the message carries the request id)"),
        (502, "Every upstream endpoint tried failed"),
        (503, "No endpoint available, or the model is still loading (see Retry-After)"),
        (504, "The upstream did not answer in time"),
    )
}


class OneApiError(BaseModel):
    """One API's failure envelope (gateway.admin_api.envelope.fail), every error on /api/*."""

    success: Literal[False]
    message: str
    data: None


_SCHEMAS = "#/components/schemas/"


def declare_surface_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with each operation's errors in the shape on_surface gives them (in place)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorResponse, OneApiError):
        defs = model.model_json_schema(ref_template=_SCHEMAS + "{model}")
        schemas.update(defs.pop("$defs", {}))
        schemas.setdefault(model.__name__, defs)
    for path, operations in spec.get("paths", {}).items():
        model = OneApiError if path.startswith("/api/") else ErrorResponse
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses.setdefault(
                "default",
                {
                    "description": "Any other error, in this surface's shape",
                    "content": {
                        "application/json": {"schema": {"$ref": _SCHEMAS + model.__name__}}
                    },
                },
            )
    if "HTTPValidationError" not in str(spec.get("paths")):
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
    return spec


def on_surface(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI error body in the shape of the surface `path` belongs to."""
    if path.startswith("/api/"):
        return fail(body["error"]["message"])
    return body


def respond(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(on_surface(request.url.path, body), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    build_openapi = app.openapi  # FastAPI caches its result in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_surface_errors(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ModelportError)
    async def on_modelport_error(request: Request, exc: ModelportError) -> Response:
        return respond(request, exc.status, exc.body(), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        status = exc.status_code
        body = error_body(message, type=status_type(status), code=status_code(status))
        return respond(request, exc.status_code, body, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            message = f"request body is not valid JSON: {first.get('msg', '')}"
            param = None
        else:
            param = ".".join(loc) or None
            where = f"{param}: " if param else ""
            message = f"{where}{first.get('msg', 'invalid request')}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more problem(s))"
        return respond(request, 400, error_body(message, code="invalid_request", param=param))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> Response:
        rid = getattr(request.state, "request_id", "")
        log.exception("unhandled error (request %s)", rid)
        message = f"internal error (request id {rid}); the operator can find it in the logs"
        body = error_body(message, type="server_error", code="internal_error")
        # uvicorn drops the connection after an unhandled error: say so, or a keep-alive
        # client (a proxy) sends its next request into a reset
        return respond(request, 500, body, {"Connection": "close"})
