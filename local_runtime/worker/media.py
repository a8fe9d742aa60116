"""Uploads in (audio) and images out, the two routes that are not JSON in, JSON out.

Audio arrives as multipart; the body is counted while it streams in so an oversized upload is
refused with 413 before it is all on disk. Engines get a file path (faster-whisper, ffmpeg and
friends want one). Images come back from engines as PNG bytes; the worker returns them inline
(`b64_json`) or writes them where the gateway serves files and returns a signed, expiring link
(`url`; the scheme is `local_runtime.image_links`).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from local_runtime import image_links as links
from local_runtime.engines.base import EngineError


class UploadTooLarge(EngineError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"upload too large: the limit is {limit} bytes ({limit / 2**20:.0f} MiB)",
            status=413,
            code="upload_too_large",
        )


def _limited(request: Request, limit: int) -> Request:
    """The same request, whose body raises UploadTooLarge past `limit` bytes."""
    received = 0
    receive = request.receive

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise UploadTooLarge(limit)
        return message

    return Request(request.scope, limited_receive)


# Form fields OpenAI's CreateTranscriptionRequest declares as arrays (openai/openai-openapi
# openapi.yaml); curl users repeat them without the SDK's `[]` suffix.
ARRAY_FIELDS = frozenset({"timestamp_granularities", "include"})


async def read_audio_upload(request: Request, limit: int) -> tuple[str, dict[str, Any]]:
    """Save the multipart `file` to a temp file; return (path, the other form fields).

    The caller deletes the file (see `remove_upload`).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(limit)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise EngineError("send the audio as multipart/form-data with a 'file' field")
    form = await _limited(request, limit).form(max_files=1, max_fields=64)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise EngineError("missing the 'file' field (the audio to transcribe)", code="file")
        params: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key == "file" or isinstance(value, UploadFile):
                continue
            if key.endswith("[]") or key in ARRAY_FIELDS:  # repeated: keep every value
                params.setdefault(key.removesuffix("[]"), []).append(value)
            else:
                params[key] = value
        suffix = Path(upload.filename or "audio").suffix[:16] or ".bin"
        handle, path = tempfile.mkstemp(prefix="modelport-upload-", suffix=suffix)
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(upload.file, out)
        return path, params
    finally:
        await form.close()


def remove_upload(path: str) -> None:
    Path(path).unlink(missing_ok=True)


async def image_response(
    images: list[bytes],
    body: dict[str, Any],
    *,
    files_dir: str | None,
    public_url: str,
    link_key: str | None,
    link_ttl_s: float,
    run: Callable[[Callable[[], Any]], Awaitable[Any]],
) -> dict[str, Any]:
    """OpenAI's images response: b64_json by default (as for gpt-image-1), or url."""
    response_format = body.get("response_format") or "b64_json"
    if response_format == "b64_json":
        data = [{"b64_json": base64.b64encode(png).decode("ascii")} for png in images]
    elif response_format == "url":
        if not files_dir or not link_key:
            raise EngineError(
                "response_format=url needs the worker to know where files are served and how "
                f"to sign links (MODELPORT_FILES_DIR, {links.LINK_KEY_ENV}; a gateway's own "
                "workers have both); ask for b64_json instead",
                code="response_format",
            )
        folder = Path(files_dir) / "images"
        names = await run(lambda: [_write_image(folder, png, link_ttl_s) for png in images])
        data = [{"url": links.link(public_url, link_key, name)} for name in names]
    else:
        raise EngineError(
            f"response_format must be 'b64_json' or 'url', not {response_format!r}",
            code="response_format",
        )
    return {"created": int(time.time()), "data": data}


def _write_image(folder: Path, png: bytes, ttl_s: float) -> str:
    """Write under <files_dir>/images/ with an unguessable name that carries its expiry."""
    folder.mkdir(parents=True, exist_ok=True)
    name = links.new_name(time.time(), ttl_s)
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(png)
    tmp.replace(folder / name)
    return name
