"""HTTP surfaces of the runtime: Xinference's model API on /v1, and the admin's /api/runtime.

They live in the composition layer, not in local_runtime, because they speak the gateway's admin
auth, its One API envelope and its node placement (gateway.cluster.launch).

The Xinference subset is what its official client, Dify's and New API's "Xinference" providers
call: `GET /v1/cluster/auth` (unauthenticated: the client asks it first to learn whether to send
its key), `POST /v1/models` (launch; answers when ready), `DELETE /v1/models/{uid}`, and the
custom model registrations. Errors there are Xinference's `{"detail": "..."}` with 400 (409 for
a UID in use, 404 for a node that is not connected), which its client turns into RuntimeError
with the detail. `GET /v1/models[/{uid}]` is the relay's (local UIDs carry Xinference's describe
fields).

A launch with a `node` field (`launch_model(..., node="gpu-a")` in Xinference's client) goes to
that GPU node through gateway.cluster.launch, the code path of `POST /api/nodes/models`, and
answers once the node reports the model ready; DELETE withdraws the UID from every node as well
as stopping it here.

A gateway without the runtime (`MODELPORT_RUNTIME_ENABLED=false`, the Kubernetes layout) mounts
`launch_router` alone: launches then go to the named node, or to the connected node with the
most free GPU memory, and the registration routes, which need the runtime's catalog, are absent.

/api/runtime/* speaks One API's `{success, message, data}` envelope like the rest of /api.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from gateway.admin_api.envelope import int_param, json_body, ok
from gateway.cluster import launch as cluster_launch
from gateway.deps import require_admin
from gateway.errors import InvalidRequest, ModelportError, NotFound, Unavailable
from gateway.runtime_host.front import LocalRuntime, RuntimeElsewhere
from gateway.services import services_of
from local_runtime.catalog import Catalog, CatalogError, Family, family_from_xinference, offline
from local_runtime.engines import registry
from local_runtime.launch_params import launch_spec_from_xinference
from local_runtime.resolve import LaunchError
from local_runtime.spec import TYPE_ALIASES, LaunchSpec
from local_runtime.supervisor import (
    ReplicaUnavailable,
    SupervisorOptions,
    UidTaken,
    UnknownInstance,
)


class XinferenceError(BaseModel):
    """Xinference's error body; its client raises RuntimeError with the detail."""

    detail: str


def _detail_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """What /openapi.json declares for the `{"detail"}` answers (others: ErrorResponse)."""
    return {s: {"model": XinferenceError, "description": "Xinference's error"} for s in statuses}


launch_router = APIRouter(prefix="/v1", tags=["Xinference model API"])
xinference_router = APIRouter(
    prefix="/v1", tags=["Xinference model API"], responses=_detail_errors(400)
)
admin_router = APIRouter(
    prefix="/api/runtime", tags=["Runtime admin API"], dependencies=[Depends(require_admin)]
)
Admin = [Depends(require_admin)]


def _runtime(request: Request) -> LocalRuntime:
    runtime = services_of(request).runtime
    assert runtime is not None  # these routes are mounted with the runtime only
    return runtime


def _runtime_or_none(request: Request) -> LocalRuntime | None:
    return services_of(request).runtime


def _catalog(request: Request) -> Catalog:
    catalog = services_of(request).catalog
    assert catalog is not None  # built with the runtime
    return catalog


def _detail(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


# --- Xinference model API -------------------------------------------------------------------------
@launch_router.get("/cluster/auth", summary="Whether this server wants an API key (it does)")
async def cluster_auth() -> dict[str, bool]:
    return {"auth": True}


@launch_router.post(
    "/models",
    dependencies=Admin,
    summary="Launch a model (Xinference)",
    responses=_detail_errors(400, 404, 409, 503),
)
async def launch_model(request: Request) -> JSONResponse:
    try:
        body = await json_body(request)
    except InvalidRequest as exc:
        return _detail(exc.message)
    wait = request.query_params.get("wait_ready", "true").lower() not in ("false", "0", "no")
    try:
        spec = launch_spec_from_xinference(body)
        if spec.node is None and body.get("worker_ip"):
            node = await cluster_launch.node_at(services_of(request), str(body["worker_ip"]))
            spec = spec.model_copy(update={"node": node})
        runtime = _runtime_or_none(request)
        if spec.node is not None or runtime is None:  # no runtime here: the roomiest node
            await _launch_on_node(request, spec, wait=wait)
        else:
            await runtime.launch(spec, wait=wait)
    except UidTaken as exc:
        return _detail(exc.message, 409)
    except LaunchError as exc:
        return _detail(exc.message)
    except ModelportError as exc:
        return _detail(exc.message, exc.status)
    return JSONResponse({"model_uid": spec.uid})


async def _launch_on_node(request: Request, spec: LaunchSpec, *, wait: bool) -> None:
    """Placed exactly as POST /api/nodes/models places it (on `node`, or the roomiest node),
    then awaited like a local launch (ready, or the node's own error and nothing left placed)."""
    state = services_of(request)
    placed = await cluster_launch.place(state, spec)
    if wait:
        runtime = _runtime_or_none(request)
        options = runtime.options if runtime is not None else SupervisorOptions()
        await cluster_launch.wait_ready(
            state, placed, placed_at=time.time(), limit_s=options.ready_timeout_s
        )


@launch_router.delete(
    "/models/{model_uid}",
    dependencies=Admin,
    summary="Terminate a model (Xinference)",
    responses=_detail_errors(400),
)
async def terminate_model(model_uid: str, request: Request) -> JSONResponse:
    """Stops the UID here and withdraws it from every GPU node it was launched on."""
    on_nodes = await cluster_launch.unplace_everywhere(services_of(request), model_uid)
    runtime = _runtime_or_none(request)
    try:
        if runtime is None:
            raise UnknownInstance(model_uid)
        await runtime.terminate(model_uid)
    except UnknownInstance as exc:
        if not on_nodes:
            return _detail(exc.message)
    return JSONResponse(None)


def _registration(family: Family) -> dict[str, Any]:
    return {"model_name": family.name, "is_builtin": not family.custom}


def _model_type(model_type: str) -> str:
    kind = TYPE_ALIASES.get(model_type, model_type)
    if kind not in ("llm", "embedding", "rerank", "audio", "image"):
        raise LaunchError(
            f"unknown model type {model_type!r} (LLM, embedding, rerank, audio or image)"
        )
    return kind


@xinference_router.get("/model_registrations/{model_type}", dependencies=Admin)
async def list_registrations(model_type: str, request: Request) -> JSONResponse:
    try:
        kind = _model_type(model_type)
    except LaunchError as exc:
        return _detail(exc.message)
    detailed = request.query_params.get("detailed", "false").lower() == "true"
    families = _catalog(request).families(type=kind)
    return JSONResponse(
        [{**_registration(f), **(f.model_dump(mode="json") if detailed else {})} for f in families]
    )


@xinference_router.get("/model_registrations/{model_type}/{model_name}", dependencies=Admin)
async def get_registration(model_type: str, model_name: str, request: Request) -> JSONResponse:
    family = _catalog(request).get(model_name)
    if family is None:
        return _detail(f"no model named {model_name!r} is registered")
    return JSONResponse({**_registration(family), **family.model_dump(mode="json")})


@xinference_router.post("/model_registrations/{model_type}", dependencies=Admin)
async def register_model(model_type: str, request: Request) -> JSONResponse:
    """Xinference's body: {"model": "<the model's JSON, as a string>", "persist": bool}."""
    try:
        kind = _model_type(model_type)
        body = await json_body(request)
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str):
            model = json.loads(model)
        if not isinstance(model, dict):
            raise LaunchError("'model' must be the custom model's JSON (an object or a string)")
        persist = bool(body.get("persist", True))
        _register(_catalog(request), model, kind, persist)
    except (LaunchError, CatalogError, InvalidRequest) as exc:
        return _detail(getattr(exc, "message", None) or str(exc))
    except json.JSONDecodeError as exc:
        return _detail(f"'model' is not valid JSON: {exc}")
    return JSONResponse(None)


def _register(catalog: Catalog, model: dict[str, Any], kind: str, persist: bool) -> Family:
    """Xinference JSON -> custom family. A bare `model_uri` (no specs, no format) lets the
    catalog infer format and type from the files, as `modelport register --model-path` does."""
    uri = model.get("model_uri")
    if uri and not model.get("model_specs") and not model.get("model_format"):
        extra = {
            key: model[key]
            for key in ("dimensions", "max_tokens", "context_length", "description")
            if model.get(key) is not None
        }
        if model.get("model_ability"):
            extra["abilities"] = model["model_ability"]
        if model.get("model_lang"):
            extra["languages"] = model["model_lang"]
        return catalog.register_path(
            str(model.get("model_name", "")),
            str(uri).removeprefix("file://"),
            kind,
            engine=model.get("model_engine"),
            persist=persist,
            **extra,
        )
    return catalog.register(family_from_xinference(model, kind), persist=persist)


@xinference_router.delete("/model_registrations/{model_type}/{model_name}", dependencies=Admin)
async def unregister_model(model_type: str, model_name: str, request: Request) -> JSONResponse:
    try:
        _catalog(request).unregister(model_name)
    except CatalogError as exc:
        return _detail(str(exc))
    return JSONResponse(None)


# --- admin API (One API envelope) -----------------------------------------------------------------
@admin_router.get("/instances", summary="Launched models with their replicas and timers")
async def instances(request: Request) -> dict[str, Any]:
    return ok(_runtime(request).instances())


@admin_router.post("/instances", summary="Launch (LaunchSpec fields); answers when ready")
async def launch(request: Request) -> dict[str, Any]:
    body = await json_body(request)
    try:
        spec = launch_spec_from_xinference(body)
        wait = request.query_params.get("wait", "true").lower() not in ("false", "0", "no")
        return ok(await _runtime(request).launch(spec, wait=wait))
    except UidTaken as exc:
        raise InvalidRequest(exc.message, status=409, code="uid_taken") from None
    except LaunchError as exc:
        raise InvalidRequest(exc.message, code="launch_failed") from None


def _instance_call(request: Request, uid: str) -> LocalRuntime:
    runtime = _runtime(request)
    if uid not in runtime:
        raise NotFound(f"no model is launched under uid {uid!r}")
    return runtime


@contextmanager
def _on_the_owner() -> Iterator[None]:
    """Logs, unload and load need the worker processes: with `--workers N` only the process
    that runs them answers; the others say so (a 503: a retry may reach that process)."""
    try:
        yield
    except RuntimeElsewhere as exc:
        raise Unavailable(exc.message, code="runtime_elsewhere") from None


@admin_router.get("/instances/{uid}")
async def instance(uid: str, request: Request) -> dict[str, Any]:
    return ok(_instance_call(request, uid).instance(uid))


@admin_router.get("/instances/{uid}/logs", summary="The tail of each replica's worker log")
async def logs(uid: str, request: Request) -> dict[str, Any]:
    lines = int_param(request, "lines", 200, lo=1, hi=10_000)
    raw = request.query_params.get("replica")
    replica = int_param(request, "replica", 0) if raw not in (None, "") else None
    with _on_the_owner():
        return ok({"uid": uid, "logs": _instance_call(request, uid).logs(uid, lines, replica)})


@admin_router.delete("/instances/{uid}")
async def terminate(uid: str, request: Request) -> dict[str, Any]:
    await _instance_call(request, uid).terminate(uid)
    return ok(message=f"terminated {uid}")


@admin_router.post("/instances/{uid}/unload", summary="Stop the workers; the next request reloads")
async def unload(uid: str, request: Request) -> dict[str, Any]:
    runtime = _instance_call(request, uid)
    with _on_the_owner():
        await runtime.unload(uid)
    return ok(runtime.instance(uid))


@admin_router.post("/instances/{uid}/load", summary="Start an unloaded model now")
async def load(uid: str, request: Request) -> dict[str, Any]:
    runtime = _instance_call(request, uid)
    try:
        with _on_the_owner():
            await runtime.load(uid)
    except ReplicaUnavailable as exc:
        raise Unavailable(str(exc), code="load_failed") from None
    return ok(runtime.instance(uid))


@admin_router.get("/engines", summary="Engines, whether they run here, and why not")
async def engines() -> dict[str, Any]:
    # importing an engine's module may import its library: keep that off the event loop
    return ok(await run_in_threadpool(registry.available_engines))


@admin_router.get(
    "/catalog", summary="Families (built-in and custom); which launch with no download"
)
async def catalog(request: Request) -> dict[str, Any]:
    q = request.query_params
    families = _catalog(request).families(
        type=q.get("type") or None, ability=q.get("ability") or None, search=q.get("search") or None
    )
    runtime = _runtime_or_none(request)
    home = runtime.home if runtime is not None else None
    # looks for files on disk (cache, starter packages): off the event loop
    return ok(await run_in_threadpool(offline.rows, families, home))
