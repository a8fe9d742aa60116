"""GET /files/images/{name}: serves the expiring image links (see `links`), and sweeps them.

The link is the credential (like a presigned object-store URL): a client that asked for
`response_format=url` hands it to a browser or another service with no API key. A bad or missing
signature is a 403, an expired link a 410 (its file is deleted then and there), an unknown name
a 404. The sweep runs every `min(ttl, 60)` seconds; `clock` is injectable so tests decide time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from gateway.errors import ModelportError, NotFound, PermissionDenied
from gateway.services import services_of
from local_runtime import image_links as links

log = logging.getLogger("modelport.files")


class LinkExpired(ModelportError):
    status = 410
    type = "invalid_request_error"
    code = "link_expired"


@dataclass
class ImageLinks:
    """The folder, key and lifetime of image links, the services' `image_links`."""

    folder: Path
    key: str = field(repr=False)
    ttl_s: float
    clock: Callable[[], float] = time.time

    def worker_env(self) -> dict[str, str]:
        """What a local worker needs to write and sign links (the supervisor passes it on)."""
        return {links.LINK_KEY_ENV: self.key, links.LINK_TTL_ENV: repr(self.ttl_s)}

    def path_for(self, name: str, sig: str) -> Path:
        """The file a link names, or the error saying why it is not served."""
        expiry = links.expires_at(name)
        if expiry is None:
            raise NotFound(f"no image {name!r}: image links come from /v1/images/generations")
        if not sig or not links.valid_signature(self.key, name, sig):
            raise PermissionDenied(
                "this image link's signature is missing or wrong: use the whole URL the "
                "images response returned",
                code="bad_signature",
            )
        path = self.folder / name
        if expiry <= self.clock():
            path.unlink(missing_ok=True)
            raise LinkExpired(
                f"this image link expired (links last {self.ttl_s:g} s, setting "
                "image_link_ttl_s): generate the image again or ask for b64_json"
            )
        if not path.is_file():
            raise NotFound("this image is no longer stored: generate it again")
        return path

    def sweep(self) -> int:
        return links.sweep(self.folder, self.clock())


router = APIRouter()


@router.get("/files/images/{name}", include_in_schema=False)
async def image_file(name: str, request: Request, sig: str = "") -> Response:
    image_links: ImageLinks = services_of(request).image_links
    path = image_links.path_for(name, sig)
    left = max(0, int((links.expires_at(name) or 0) - image_links.clock()))
    return FileResponse(
        path, media_type="image/png", headers={"Cache-Control": f"private, max-age={left}"}
    )


@contextlib.asynccontextmanager
async def sweeping(image_links: ImageLinks) -> AsyncIterator[None]:
    """Delete expired files while the app runs (entered in its lifespan)."""

    async def sweep_forever() -> None:
        interval = min(image_links.ttl_s, 60.0)
        while True:
            try:
                removed = await asyncio.to_thread(image_links.sweep)
            except OSError as exc:  # a full or read-only disk must not stop the next sweep
                log.warning("image link sweep failed: %s", exc)
            else:
                if removed:
                    log.info("deleted %d expired image(s)", removed)
            await asyncio.sleep(interval)

    task = asyncio.create_task(sweep_forever(), name="image-link-sweep")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
