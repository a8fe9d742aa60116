"""Media URLs in chat messages are fetched by the gateway, through the SSRF guard, and sent
upstream inline as data: URLs.

A vision or audio model server (vLLM, llama.cpp with a projector, a GPU box on the LAN) fetches an
http(s) URL in an `image_url`, `audio_url` or `video_url` part from wherever it runs: inside our
network. Left to it, a caller could have it read 169.254.169.254 or an internal admin page and
describe the result back. So the gateway fetches such URLs itself under gateway.security.ssrf
(public addresses only unless MODELPORT_FETCH_ALLOW says otherwise, every redirect re-checked,
size-capped) and the upstream only ever sees the bytes. Any other scheme but data: is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.errors import InvalidRequest
from gateway.security.ssrf import Fetched

MEDIA_PARTS = ("image_url", "audio_url", "video_url")
MAX_MEDIA_URLS = 16  # per request: each is a fetch the gateway makes for the caller

Fetch = Callable[[str], Awaitable[Fetched]]


def _url_holders(body: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(the dict holding `url`, which part) for every media part whose URL is not inline."""
    found = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in MEDIA_PARTS:
                continue
            holder = part.get(part["type"])
            if isinstance(holder, str):  # some clients send the URL bare
                holder = part[part["type"]] = {"url": holder}
            if not isinstance(holder, dict):
                continue
            url = holder.get("url")
            if isinstance(url, str) and not url.startswith("data:"):
                found.append((holder, str(part["type"])))
    return found


async def inline_media_urls(body: dict[str, Any], fetch: Fetch) -> bool:
    """Replace every http(s) media URL in `body` with a data: URL of what it points at; True
    when something changed. Refusals are the caller's 400 (url_not_allowed)."""
    holders = _url_holders(body)
    if len(holders) > MAX_MEDIA_URLS:
        raise InvalidRequest(
            f"{len(holders)} media URLs in one request; at most {MAX_MEDIA_URLS} (send the "
            "others inline as data: URLs)",
            param="messages",
            code="too_many_media_urls",
        )
    for holder, kind in holders:
        url = holder["url"]
        if not url.lower().startswith(("http://", "https://")):
            raise InvalidRequest(
                f"{kind} must be an http(s) or data: URL, not {url[:40]!r}",
                param="messages",
                code="url_not_allowed",
            )
        got = await fetch(url)
        if got.status != 200:
            raise InvalidRequest(
                f"could not fetch the {kind} {url[:200]!r}: it answered HTTP {got.status}",
                param="messages",
                code="media_fetch_failed",
            )
        ctype = next((v for k, v in got.headers.items() if k.lower() == "content-type"), "")
        mime = ctype.split(";")[0].strip() or "application/octet-stream"
        holder["url"] = f"data:{mime};base64,{base64.b64encode(got.body).decode()}"
    return bool(holders)
