"""Models: the catalog (search, type and ability filters; grouped by type; each family marked
ready to launch offline or with the download it needs), launch with Xinference's parameters,
running instances (status, replicas, memory, uptime, idle timer, progress, logs, terminate) and
custom model registration. Talks to the services' runtime and catalog through the composition
layer (gateway.runtime_host.ui_actions), never to local_runtime itself."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from admin_ui import runtime_view
from admin_ui.web import UserDep, flash, form_of, form_str, render
from gateway.admin_api.envelope import first_error
from gateway.runtime_host import ui_actions

router = APIRouter(prefix="/models")
TYPES = ("llm", "embedding", "rerank", "audio", "image")
FORM_LIMIT = 40
ABILITIES = (
    "chat",
    "generate",
    "tools",
    "vision",
    "reasoning",
    "embeddings",
    "rerank",
    "transcriptions",
    "translations",
    "images",
)


def _launch_fields(form: FormData) -> dict[str, Any]:
    data: dict[str, Any] = {"model_name": form_str(form, "model_name")}
    for name in (
        "model_uid",
        "model_engine",
        "model_format",
        "model_size_in_billions",
        "quantization",
        "model_path",
    ):
        if value := form_str(form, name):
            data[name] = value
    n_gpu = form_str(form, "n_gpu") or "auto"
    data["n_gpu"] = n_gpu if n_gpu == "auto" else int(n_gpu) if n_gpu.isdigit() else n_gpu
    data["replica"] = form_str(form, "replica") or "1"
    if keep := form_str(form, "keep_alive_s"):
        data["keep_alive_s"] = keep
    data["trust_remote_code"] = form.get("trust_remote_code") == "on"
    return data


@router.get("")
async def page(request: Request, session: UserDep) -> Response:
    catalog = runtime_view.catalog_of(request)
    q = {n: request.query_params.get(n, "").strip() for n in ("q", "type", "ability")}
    families = (
        catalog.families(
            type=q["type"] or None, ability=q["ability"] or None, search=q["q"] or None
        )
        if catalog is not None
        else []
    )
    runtime = runtime_view.runtime_of(request)
    home = runtime.home if runtime is not None else None
    # looks for files on disk (cache, starter packages): off the event loop
    statuses = await run_in_threadpool(ui_actions.family_statuses, families, home)
    groups = [(kind, [f for f in families if f.type == kind]) for kind in TYPES]
    return render(
        request,
        "models.html",
        session,
        page="models",
        families=families,
        groups=[(kind, members) for kind, members in groups if members],
        statuses=statuses,
        # a launch form per family is ~3 kB: the full catalog (250+) links to a filtered page
        with_forms=len(families) <= FORM_LIMIT,
        form_limit=FORM_LIMIT,
        q=q,
        types=TYPES,
        abilities=ABILITIES,
        enabled=runtime_view.runtime_of(request) is not None,
        running=await runtime_view.instances(request),
        duration=runtime_view.duration,
    )


@router.get("/instances")
async def instances(request: Request, session: UserDep) -> Response:
    """The running-instances table alone, polled by the page while anything is loading."""
    return render(
        request,
        "partials/instances.html",
        session,
        running=await runtime_view.instances(request),
        duration=runtime_view.duration,
    )


@router.post("/launch")
async def launch(request: Request, session: UserDep) -> Response:
    runtime = runtime_view.runtime_of(request)
    if runtime is None:
        flash(session, "the local runtime is disabled on this server", "error")
        return RedirectResponse("/ui/models", 303)
    form = await form_of(request)
    try:
        uid = await ui_actions.launch(runtime, _launch_fields(form))
    except ValidationError as exc:
        flash(session, f"cannot launch: {first_error(exc)}", "error")
    except ui_actions.Refused as exc:
        flash(session, f"cannot launch: {exc}", "error")
    else:
        flash(session, f"launching {uid}: it is served as model '{uid}' once ready")
    return RedirectResponse("/ui/models#running", 303)


@router.post("/instances/{uid}/terminate")
async def terminate(uid: str, request: Request, session: UserDep) -> Response:
    if await ui_actions.terminate(runtime_view.runtime_of(request), uid):
        flash(session, f"terminated {uid}")
    else:
        flash(session, f"{uid} is not running", "error")
    if request.headers.get("hx-request"):
        return await instances(request, session)
    return RedirectResponse("/ui/models#running", 303)


@router.get("/instances/{uid}/logs")
async def logs(uid: str, request: Request, session: UserDep) -> Response:
    by_replica = ui_actions.logs(runtime_view.runtime_of(request), uid, lines=200)
    return render(request, "partials/instance_logs.html", session, uid=uid, logs=by_replica)


@router.post("/register")
async def register(request: Request, session: UserDep) -> Response:
    """A custom model from local files (type and format inferred from what is there)."""
    catalog = runtime_view.catalog_of(request)
    form = await form_of(request)
    name, path = form_str(form, "name"), form_str(form, "path")
    if catalog is None:
        flash(session, "the local runtime is disabled on this server", "error")
    elif not name or not path:
        flash(session, "enter a name and the path of the model files", "error")
    else:
        try:
            family = ui_actions.register_path(
                catalog,
                name,
                path,
                form_str(form, "model_type") or None,
                form_str(form, "engine") or None,
            )
            flash(session, f"registered {family.name} ({family.type}, {family.formats()[0]})")
        except ui_actions.Refused as exc:
            flash(session, str(exc), "error")
    return RedirectResponse("/ui/models", 303)
