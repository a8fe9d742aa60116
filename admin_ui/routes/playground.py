"""Playground: chat (streamed), embeddings similarity, transcription, image generation.

The browser holds no sk- key, so these endpoints relay server-side through the services' relay as
the admin caller (gateway.auth.tokens.ADMIN_CALLER): the same routing, failover and usage logs as
/v1/*, with requests logged under the token name "admin".
"""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from admin_ui.web import UserDep, form_of, form_str, render
from gateway.admin_api.envelope import first_error
from gateway.auth.tokens import ADMIN_CALLER
from gateway.billing.tokenizer import count_input, count_messages
from gateway.errors import InvalidRequest, ModelportError
from gateway.export.service import served_models
from gateway.relay.chat.protocol import ChatCompletionRequest
from gateway.relay.service import RelayCall
from gateway.services import services_of
from gateway.upstreams.base import UploadPart, UpstreamRequest

router = APIRouter(prefix="/playground")


def _call(
    request: Request, surface: str, model: str, body: dict[str, Any] | None = None, **kw: Any
) -> RelayCall:
    return RelayCall(
        caller=ADMIN_CALLER,
        request=UpstreamRequest(
            surface=surface,
            model=model,
            stream=bool(body and body.get("stream")),
            body=body,
            raw=orjson.dumps(body) if body is not None else None,
            form=kw.pop("form", None),
            files=kw.pop("files", []),
        ),
        request_id=getattr(request.state, "request_id", ""),
        **kw,
    )


async def _json_result(request: Request, call: RelayCall) -> tuple[dict[str, Any] | None, str]:
    """Runs a non-streaming call: (parsed body, "") or (None, error message)."""
    try:
        resp = await services_of(request).relay.run(call)
    except ModelportError as exc:
        return None, exc.message
    try:
        obj = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        return None, f"HTTP {resp.status_code}: {bytes(resp.body)[:300].decode('utf-8', 'replace')}"
    if resp.status_code >= 400 or not isinstance(obj, dict):
        message = (obj.get("error") or {}).get("message") if isinstance(obj, dict) else None
        return None, f"HTTP {resp.status_code}: {message or obj}"
    return obj, ""


@router.get("")
async def page(request: Request, session: UserDep) -> Response:
    served = served_models(services_of(request).models)
    by_type: dict[str, list[str]] = {}
    for m in served:
        by_type.setdefault(m.kind, []).append(m.id)
    return render(
        request,
        "playground.html",
        session,
        page="playground",
        by_type=by_type,
        all_models=[m.id for m in served],
    )


@router.post("/chat")
async def chat(request: Request, session: UserDep) -> Response:
    """Streams the upstream's SSE to the page unchanged (relay.run returns the stream)."""
    try:
        raw = orjson.loads(await request.body())
        if not isinstance(raw, dict):
            raise InvalidRequest("send a JSON object")
        body = {k: raw[k] for k in ("model", "messages", "temperature", "max_tokens") if k in raw}
        body["stream"] = True
        req = ChatCompletionRequest.model_validate(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        raise InvalidRequest(first_error(exc)) from exc
    call = _call(
        request,
        "chat",
        req.model,
        body,
        estimate_prompt=lambda: count_messages(req.messages),
        max_output_tokens=req.output_bound(
            services_of(request).settings.default_max_tokens_estimate
        ),
    )
    return await services_of(request).relay.run(call)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@router.post("/embeddings")
async def embeddings(request: Request, session: UserDep) -> Response:
    form = await form_of(request)
    model, a, b = form_str(form, "model"), form_str(form, "a"), form_str(form, "b")
    if not (model and a and b):
        return render(
            request, "partials/play_result.html", session, error="pick a model and enter two texts"
        )
    body = {"model": model, "input": [a, b]}
    obj, error = await _json_result(
        request,
        _call(request, "embeddings", model, body, estimate_prompt=lambda: count_input([a, b])),
    )
    if obj is None:
        return render(request, "partials/play_result.html", session, error=error)
    vectors = [
        d.get("embedding") or []
        for d in sorted(obj.get("data", []), key=lambda d: d.get("index", 0))
    ]
    if len(vectors) != 2:
        return render(
            request,
            "partials/play_result.html",
            session,
            error="the upstream did not return two embeddings",
        )
    return render(
        request,
        "partials/play_result.html",
        session,
        similarity=_cosine(vectors[0], vectors[1]),
        dims=len(vectors[0]),
    )


@router.post("/transcribe")
async def transcribe(request: Request, session: UserDep) -> Response:
    form = await form_of(request)
    model, upload = form_str(form, "model"), form.get("file")
    if not model or not isinstance(upload, UploadFile):
        return render(
            request, "partials/play_result.html", session, error="pick a model and an audio file"
        )
    part = UploadPart(
        "file",
        upload.filename or "audio",
        upload.content_type or "application/octet-stream",
        upload.file,
    )
    call = _call(
        request,
        "transcriptions",
        model,
        None,
        form=[("model", model), ("response_format", "json")],
        files=[part],
        count_usage=lambda obj: (0, 0),
    )
    obj, error = await _json_result(request, call)
    if obj is None:
        return render(request, "partials/play_result.html", session, error=error)
    return render(request, "partials/play_result.html", session, text=str(obj.get("text", "")))


@router.post("/image")
async def image(request: Request, session: UserDep) -> Response:
    form = await form_of(request)
    model, prompt = form_str(form, "model"), form_str(form, "prompt")
    size = form_str(form, "size") or "512x512"
    if not (model and prompt):
        return render(
            request, "partials/play_result.html", session, error="pick a model and write a prompt"
        )
    body = {"model": model, "prompt": prompt, "n": 1, "size": size, "response_format": "b64_json"}
    obj, error = await _json_result(
        request, _call(request, "images", model, body, count_usage=lambda obj: (0, 0))
    )
    if obj is None:
        return render(request, "partials/play_result.html", session, error=error)
    item = (obj.get("data") or [{}])[0]
    src = item.get("url") or ""
    if item.get("b64_json"):
        try:
            base64.b64decode(item["b64_json"], validate=True)
            src = "data:image/png;base64," + item["b64_json"]
        except ValueError:
            return render(
                request,
                "partials/play_result.html",
                session,
                error="the upstream returned invalid base64",
            )
    return render(request, "partials/play_result.html", session, image=src, prompt=prompt)
