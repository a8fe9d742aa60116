"""Push model-config entries into a running FastGPT (>= 4.8.20) as its root user.

Uses `POST /api/core/ai/model/update` once per model: it creates or merges that one model.
`updateWithJson` is never called, because it replaces FastGPT's whole model list, built-in and
hand-made models included. Login is FastGPT's own: `preLogin` gives a one-time code, then
`loginByPassword` takes the sha256 hex of the password and sets the `fastgpt_token` cookie.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from gateway.export.fastgpt_types import SystemModelItem
from gateway.security.upstream_urls import channel_url_problem

log = logging.getLogger(__name__)

PRE_LOGIN = "/api/support/user/account/preLogin"
LOGIN = "/api/support/user/account/loginByPassword"
MODEL_LIST = "/api/core/ai/model/list"
MODEL_UPDATE = "/api/core/ai/model/update"
TOKEN_COOKIE = "fastgpt_token"  # noqa: S105 (a cookie name)


class FastGPTPushError(RuntimeError):
    """The push could not start: FastGPT unreachable, or the root login refused."""


@dataclass(frozen=True, slots=True)
class PushResult:
    model: str
    ok: bool
    error: str | None = None
    created: bool | None = None  # True: new to FastGPT; False: updated; None: not known


def _message(resp: httpx.Response) -> str | None:
    """FastGPT's error text from `{code, statusText, message, data}`, or None on success."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.is_redirect:
        return f"HTTP {resp.status_code}: a redirect, not followed (give FastGPT's own URL)"
    if isinstance(body, dict):
        code = body.get("code", resp.status_code)
        if resp.is_success and code in (200, None):
            return None
        text = body.get("message") or body.get("statusText") or f"code {code}"
        return f"HTTP {resp.status_code}: {text}"
    if resp.is_success:
        return None
    return f"HTTP {resp.status_code}: {resp.text[:200]}"


async def _login(client: httpx.AsyncClient, base: str, username: str, password: str) -> str:
    try:
        pre = await client.get(base + PRE_LOGIN, params={"username": username})
        code = None
        if pre.status_code != 404:  # FastGPT before preLogin existed takes no code
            if (err := _message(pre)) is not None:
                raise FastGPTPushError(f"FastGPT preLogin failed: {err}")
            code = (pre.json().get("data") or {}).get("code")
        body = {
            "username": username,
            "password": hashlib.sha256(password.encode()).hexdigest(),
            "code": code,
        }
        resp = await client.post(base + LOGIN, json=body)
    except httpx.HTTPError as exc:
        raise FastGPTPushError(f"cannot reach FastGPT at {base}: {exc}") from exc
    if (err := _message(resp)) is not None:
        raise FastGPTPushError(f"FastGPT refused the {username} login: {err}")
    token = resp.cookies.get(TOKEN_COOKIE) or ((resp.json().get("data") or {}).get("token"))
    if not token:
        raise FastGPTPushError(f"FastGPT's login answer set no {TOKEN_COOKIE} cookie")
    return str(token)


async def _known_models(
    client: httpx.AsyncClient, base: str, headers: dict[str, str]
) -> set[str] | None:
    """Model ids FastGPT has now; None when the list cannot be read (creation then unknown)."""
    try:
        resp = await client.get(base + MODEL_LIST, headers=headers)
    except httpx.HTTPError as exc:
        log.info("FastGPT model list unavailable: %s", exc)
        return None
    data = resp.json().get("data") if _message(resp) is None else None
    if not isinstance(data, list):
        return None
    return {m["model"] for m in data if isinstance(m, dict) and "model" in m}


def _items(models_json: str | Sequence[Mapping[str, Any]]) -> list[Any]:
    items = json.loads(models_json) if isinstance(models_json, str) else list(models_json)
    if not isinstance(items, list):
        raise ValueError("models_json must be a list of {model, metadata}")
    return items


async def push_models(
    fastgpt_url: str,
    *,
    root_password: str,
    models_json: str | Sequence[Mapping[str, Any]],
    http_client: httpx.AsyncClient | None = None,
    username: str = "root",
) -> list[PushResult]:
    """Log in as root and upsert each `{model, metadata}` (build_model_config's output, or its
    JSON text). One result per entry, in order; an entry that fails validation is not sent.
    Raises FastGPTPushError when FastGPT cannot be reached or the login fails."""
    items = _items(models_json)
    base = fastgpt_url.rstrip("/")
    try:
        scheme = httpx.URL(base).scheme
    except httpx.InvalidURL as exc:
        raise FastGPTPushError(f"{fastgpt_url!r} is not a valid URL: {exc}") from exc
    if scheme not in ("http", "https"):
        raise FastGPTPushError(f"FastGPT's URL must start with http:// or https://, got {base!r}")
    # FastGPT on the LAN is the usual case; a cloud metadata service never is (the rule for a
    # channel's URL, without its allow list).
    if problem := channel_url_problem(base, []):
        raise FastGPTPushError(f"FastGPT's URL {base!r} is refused: {problem}")
    # Redirects are not followed: the root password's hash goes to the URL given, nowhere else.
    client = http_client or httpx.AsyncClient(
        timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=False
    )
    try:
        token = await _login(client, base, username, root_password)
        headers = {"Cookie": f"{TOKEN_COOKIE}={token}"}
        known = await _known_models(client, base, headers)
        return [await _push_one(client, base, headers, item, known) for item in items]
    finally:
        if http_client is None:
            await client.aclose()


async def _push_one(
    client: httpx.AsyncClient,
    base: str,
    headers: dict[str, str],
    item: Any,
    known: set[str] | None,
) -> PushResult:
    name = str(item.get("model")) if isinstance(item, Mapping) else repr(item)
    try:
        SystemModelItem.model_validate(item)
    except ValidationError as exc:
        return PushResult(name, False, f"not sent, invalid entry: {exc.errors()[0]['msg']}")
    body = {"model": item["model"], "metadata": item["metadata"]}
    try:
        resp = await client.post(base + MODEL_UPDATE, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return PushResult(name, False, f"request failed: {exc}")
    if (err := _message(resp)) is not None:
        return PushResult(name, False, err)
    return PushResult(name, True, created=None if known is None else name not in known)
