"""Speech to text. The caller is authenticated from the headers before any of the body is read
(UploadRoute). The multipart body is then parsed as it streams in: file parts are spooled to disk
past 1 MB (never held whole in memory), then re-sent upstream from the spool, so model mapping
applies and a retry can replay the upload."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.responses import Response

from gateway.deps import CallerDep, RelayDep
from gateway.errors import InvalidRequest
from gateway.relay.bounds import ModelName
from gateway.relay.route import UploadRoute
from gateway.relay.service import RelayCall
from gateway.services import services_of
from gateway.upstreams.base import UploadPart, UpstreamRequest

router = APIRouter(route_class=UploadRoute)

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


async def _relay_audio(
    request: Request, caller: CallerDep, relay: RelayDep, surface: str, model: str
) -> Response:
    form = await request.form()  # already parsed (and size-limited) for the validated params
    settings = services_of(request).settings
    items = form.multi_items()
    n_files = sum(isinstance(v, StarletteUpload) for _, v in items)
    if n_files > settings.max_form_files or len(items) - n_files > settings.max_form_fields:
        raise InvalidRequest(
            f"too many form parts ({n_files} files, {len(items) - n_files} fields): at most "
            f"{settings.max_form_files} files and {settings.max_form_fields} fields",
            code="too_many_form_parts",
        )
    fields: list[tuple[str, str]] = []  # every part in order: fields may repeat
    files: list[UploadPart] = []
    for name, value in items:
        if isinstance(value, StarletteUpload):
            files.append(
                UploadPart(
                    name,
                    value.filename or "audio",
                    value.content_type or "application/octet-stream",
                    value.file,
                )
            )
        else:
            fields.append((name, value))
    call = RelayCall(
        caller=caller,
        request=UpstreamRequest(
            surface=surface,
            model=model,
            stream=False,
            body=None,
            raw=None,
            form=fields,
            files=files,
        ),
        request_id=getattr(request.state, "request_id", ""),
        count_usage=lambda obj: (0, 0),
    )
    return await relay.run(call)


@router.post("/audio/transcriptions", response_model=None, summary="Transcribe audio")
async def transcriptions(
    request: Request,
    caller: CallerDep,
    relay: RelayDep,
    file: Annotated[UploadFile, File(description="audio in any format ffmpeg/PyAV reads")],
    model: Annotated[ModelName, Form()],
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat | None, Form()] = None,
    temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
) -> Response:
    return await _relay_audio(request, caller, relay, "transcriptions", model)


@router.post("/audio/translations", response_model=None, summary="Translate audio to English")
async def translations(
    request: Request,
    caller: CallerDep,
    relay: RelayDep,
    file: Annotated[UploadFile, File()],
    model: Annotated[ModelName, Form()],
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat | None, Form()] = None,
    temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
) -> Response:
    return await _relay_audio(request, caller, relay, "translations", model)
