"""Attack: a hostile (or compromised) upstream answers 302 to make modelport fetch another address.

aiohttp follows redirects by default, so the relay turned the POST into a GET to wherever the
upstream pointed and handed that body to the sk- caller; channel tests followed it too. Every
client the gateway uses towards an upstream (relay, channel tests, "fetch models", FastGPT push)
now refuses redirects: the caller gets a clear 502 that names neither address.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.export.fastgpt_push import FastGPTPushError, push_models
from tests.admin_ui.helpers import UIClient
from tests.support.servers import ServerThread

COMPLETION = {
    "id": "chatcmpl-elsewhere",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "SECRET"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


@dataclass
class Pair:
    """`redirector` answers every request with 302 to `target`, which records what reaches it."""

    redirector: ServerThread
    target: ServerThread
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def pair() -> Iterator[Pair]:
    target_app = FastAPI()
    hits: list[str] = []

    @target_app.api_route("/{path:path}", methods=["GET", "POST"])
    async def record(path: str, request: Request) -> Response:
        hits.append(f"{request.method} /{path} auth={request.headers.get('authorization')}")
        return JSONResponse(COMPLETION if "chat" in path else {"data": [{"id": "stolen"}]})

    target = ServerThread(target_app).start()
    bounce = FastAPI()

    @bounce.api_route("/{path:path}", methods=["GET", "POST"])
    async def redirect(path: str) -> Response:
        return RedirectResponse(f"{target.url}/{path}", status_code=302)

    redirector = ServerThread(bounce).start()
    yield Pair(redirector, target, hits)
    redirector.stop()
    target.stop()


def _hides_addresses(text: str, p: Pair) -> None:
    for server in (p.redirector, p.target):
        assert str(server.port) not in text, text


def test_relay_does_not_follow_an_upstream_redirect(gateway, pair):
    gateway.add_channel(name="bouncer", base_url=f"{pair.redirector.url}/v1", key="k", models="m")
    client = gateway.openai(gateway.create_token())
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502
    message = err.value.body["message"]  # type: ignore[index]
    assert "redirect" in message
    _hides_addresses(message, pair)
    for stream in (False, True):
        raw = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {gateway.create_token(name=f's{stream}')}"},
            json={"model": "m", "stream": stream, "messages": [{"role": "user", "content": "x"}]},
        )
        assert raw.status_code == 502 and "location" not in raw.headers
        assert "SECRET" not in raw.text
    assert pair.hits == []


def test_channel_test_does_not_follow_a_redirect(gateway, pair):
    cid = gateway.add_channel(name="bouncer", base_url=f"{pair.redirector.url}/v1", models="m")[
        "id"
    ]
    result = gateway.admin.get(f"/api/channel/test/{cid}").json()
    assert result["success"] is False and "redirect" in result["message"]
    assert pair.hits == []


def test_fetch_models_does_not_follow_a_redirect(gateway, pair):
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get("/ui/channels/new")
    answer = ui.http.post(
        "/ui/channels/fetch-models",
        data={"type": "50", "base_url": f"{pair.redirector.url}/v1", "key": "sk-channel-key"},
        headers={"X-CSRF-Token": ui.csrf, "HX-Request": "true"},
    )
    assert "redirect" in answer.text and "stolen" not in answer.text
    assert pair.hits == []


def test_fastgpt_push_does_not_follow_a_redirect(pair):
    models = [{"model": "m", "metadata": {"type": "llm", "provider": "OpenAI"}}]
    with pytest.raises(FastGPTPushError, match=re.compile("redirect", re.I)):
        asyncio.run(push_models(pair.redirector.url, root_password="pw", models_json=models))
    assert pair.hits == []


@pytest.mark.parametrize("channel_type", [3, 14, 24])  # Azure, Anthropic, Gemini (litellm)
def test_litellm_channels_do_not_follow_a_redirect(gateway, pair, channel_type):
    """litellm's HTTP clients follow redirects by default (AsyncHTTPHandler's
    follow_redirects=True, litellm/llms/custom_httpx/http_handler.py): the gateway hands them a
    client that does not."""
    gateway.add_channel(
        name="bouncer",
        type=channel_type,
        base_url=pair.redirector.url,
        key="k",
        models="m",
        config={"api_version": "2024-10-21"},  # read by Azure only
    )
    client = gateway.openai(gateway.create_token())
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code >= 400
    assert "SECRET" not in str(err.value.body)
    assert pair.hits == []


def test_an_azure_channel_still_answers_through_its_own_client(gateway):
    """The Azure client built for the channel (no redirects) speaks Azure's API as litellm's
    would: deployment in the path, api-version in the query, the key in `api-key`."""
    app = FastAPI()
    seen: list[str] = []

    @app.post("/openai/deployments/{deployment}/chat/completions")
    async def chat(deployment: str, request: Request) -> Response:
        seen.append(
            f"{deployment} {request.query_params['api-version']} {request.headers['api-key']}"
        )
        return JSONResponse(COMPLETION)

    with ServerThread(app) as azure:
        gateway.add_channel(
            name="azure",
            type=3,
            base_url=azure.url,
            key="azure-key",
            models="m",
            config={"api_version": "2024-10-21"},
        )
        client = gateway.openai(gateway.create_token())
        answer = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.choices[0].message.content == "SECRET"
    assert seen == ["m 2024-10-21 azure-key"]
