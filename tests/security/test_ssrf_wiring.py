"""Attack: make modelport (or a model server behind it) reach addresses it must not.

Before: gateway/security/ssrf.py existed but nothing called it. A channel could point at the
cloud metadata service (169.254.169.254 and friends) or a non-HTTP scheme; an image URL in a chat
message went to the model server, which fetched it from inside our network; "fetch models" sent a
channel's stored key to whatever base URL the form held; a FastGPT push went to any address.
Now, through the real request paths:
- channel URLs may be private (local vLLM, LAN) but not metadata addresses or non-HTTP schemes,
  unless MODELPORT_UPSTREAM_ALLOW lists them; checked when written and before every request;
- media URLs in chat messages are fetched by the gateway under the SSRF guard and sent upstream
  inline as data: URLs (OpenAI's image_url part: openai/openai-openapi openapi.yaml,
  ChatCompletionRequestMessageContentPartImage; vLLM's audio_url/video_url parts:
  vllm-project/vllm vllm/entrypoints/chat_utils.py);
- "fetch models" sends a stored key only to the channel's stored base URL;
- the FastGPT push refuses a metadata URL.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

import openai
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from gateway.export.fastgpt_push import FastGPTPushError, push_models
from tests.admin_ui.helpers import UIClient
from tests.support.servers import ServerThread

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
METADATA_URLS = [
    "http://169.254.169.254/v1",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://[fd00:ec2::254]/v1",
    "http://2852039166/v1",  # 169.254.169.254 as one decimal number
    "http://[::ffff:169.254.169.254]/v1",
]
BAD_SCHEMES = ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://10.0.0.1/x"]


@dataclass
class Internal:
    """A server inside "our network": a secret page, an image, and a models list that records
    which key asked."""

    server: ServerThread
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def internal() -> Iterator[Internal]:
    app = FastAPI()
    hits: list[str] = []

    @app.get("/{path:path}")
    async def page(path: str, request: Request) -> Response:
        hits.append(f"/{path} auth={request.headers.get('authorization')}")
        if path.endswith(".png"):
            return Response(PNG, media_type="image/png")
        if path.endswith("models"):
            return JSONResponse({"data": [{"id": "internal-model"}]})
        return Response("root:x:0:0 SECRET", media_type="text/plain")

    server = ServerThread(app).start()
    yield Internal(server, hits)
    server.stop()


@pytest.mark.parametrize("url", METADATA_URLS + BAD_SCHEMES)
def test_a_channel_cannot_point_at_cloud_metadata_or_a_non_http_scheme(gateway, url):
    answer = gateway.admin.post(
        "/api/channel/", json={"type": 50, "name": "meta", "base_url": url, "models": "m"}
    ).json()
    assert answer["success"] is False
    assert "metadata" in answer["message"] or "http(s)" in answer["message"]


def test_a_channel_update_cannot_move_it_to_metadata(gateway, fake_upstream):
    cid = gateway.add_channel(name="up", base_url=fake_upstream.url, models="m")["id"]
    answer = gateway.admin.put(
        "/api/channel/", json={"id": cid, "base_url": "http://169.254.169.254/v1"}
    ).json()
    assert answer["success"] is False and "metadata" in answer["message"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1", "http://192.168.1.20:8000/v1", "http://10.0.0.5/v1"]
)
def test_private_channel_urls_keep_working(gateway, url):
    """A local vLLM or a GPU server on the LAN is what channels are for."""
    assert gateway.add_channel(name="lan", base_url=url, models="m")["base_url"] == url


def test_metadata_channel_allowed_only_when_listed(make_gateway):
    gw = make_gateway(upstream_allow=["169.254.169.254"])
    assert gw.add_channel(name="imds", base_url="http://169.254.169.254/v1", models="m")


def test_a_metadata_channel_already_in_the_database_is_never_called(make_gateway, tmp_path):
    """A row written before this check (or by hand, or by an import) still cannot be used: the
    relay refuses the URL before connecting, and the caller's 502 does not say where."""
    home = tmp_path / "home"
    gw = make_gateway(home=home)
    cid = gw.add_channel(name="old", base_url="http://10.1.2.3/v1", models="m")["id"]
    with sqlite3.connect(home / "modelport.db") as db:
        db.execute("UPDATE channel SET base_url='http://169.254.169.254/v1' WHERE id=?", (cid,))
    asyncio.run_coroutine_threadsafe(
        gw.app.state.services.changes.routes_changed(), gw.server.server_loop
    ).result(30)
    client = gw.openai(gw.create_token(name="c"))
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502
    assert "169.254" not in str(err.value.body)
    gw.flush_usage()
    row = gw.api("GET", "/api/log/", params={"token_name": "c"})[0]
    assert "metadata" in row["error"]


def test_a_balance_query_never_sends_a_stored_key_to_metadata(make_gateway, tmp_path):
    """The balance APIs use the channel's stored key: a row moved to a metadata address (by hand,
    or before the write check existed) is refused before anything is sent."""
    home = tmp_path / "home"
    gw = make_gateway(home=home)
    cid = gw.add_channel(name="o", type=8, base_url="http://10.1.2.3", key="sk-up", models="m")[
        "id"
    ]
    with sqlite3.connect(home / "modelport.db") as db:
        db.execute("UPDATE channel SET base_url='http://169.254.169.254/v1' WHERE id=?", (cid,))
    one = gw.admin.get(f"/api/channel/update_balance/{cid}").json()
    assert one["success"] is False and "metadata" in one["message"]
    (every,) = gw.api("GET", "/api/channel/update_balance")
    assert every["id"] == cid and "metadata" in every["error"]


def _image_message(url: str) -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is in this picture?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


@pytest.mark.parametrize("where", ["metadata", "internal", "file"])
def test_a_callers_image_url_into_our_network_is_refused(gateway, fake_upstream, internal, where):
    url = {
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "internal": f"{internal.server.url}/etc/passwd",
        "file": "file:///etc/passwd",
    }[where]
    gateway.add_channel(name="vision", base_url=fake_upstream.url, models="m")
    client = gateway.openai(gateway.create_token())
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", messages=_image_message(url))
    assert err.value.body["code"] == "url_not_allowed"  # type: ignore[index]
    assert fake_upstream.requests == []  # the model server never saw the URL
    assert internal.hits == []  # and nothing in our network was fetched


def test_an_allowed_image_url_reaches_the_model_inline(make_gateway, fake_upstream, internal):
    """With the internal host allowed (an image store), the gateway fetches the image and the
    model server gets only its bytes, as a data: URL."""
    gw = make_gateway(fetch_allow=["127.0.0.1"])
    gw.add_channel(name="vision", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token())
    client.chat.completions.create(
        model="m", messages=_image_message(f"{internal.server.url}/cat.png")
    )
    sent = fake_upstream.requests[-1].body
    assert sent is not None
    part = sent["messages"][0]["content"][1]
    assert part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert internal.hits == ["/cat.png auth=None"]  # the caller's key never travels


def _fetch_models(ui: UIClient, **data: str) -> str:
    return ui.http.post(
        "/ui/channels/fetch-models",
        data={"type": "50", **data},
        headers={"X-CSRF-Token": ui.csrf, "HX-Request": "true"},
    ).text


def test_fetch_models_sends_a_stored_key_only_to_the_stored_url(gateway, fake_upstream, internal):
    stored = gateway.add_channel(
        name="real", base_url=f"{internal.server.url}/v1", key="sk-stored-secret", models="x"
    )
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get(f"/ui/channels/{stored['id']}")
    # The edit form with the key left empty and the URL changed to an address of one's choosing.
    text = _fetch_models(ui, id=str(stored["id"]), base_url=f"{fake_upstream.url}/v1", key="")
    assert "saved key is only sent to the saved base URL" in text
    assert all("sk-stored-secret" not in str(r.headers) for r in fake_upstream.requests)
    # To the stored URL it goes, as before.
    text = _fetch_models(ui, id=str(stored["id"]), base_url=f"{internal.server.url}/v1", key="")
    assert "internal-model" in text
    assert internal.hits == ["/v1/models auth=Bearer sk-stored-secret"]


def test_fetch_models_refuses_a_metadata_url(gateway):
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get("/ui/channels/new")
    text = _fetch_models(ui, base_url="http://169.254.169.254/latest", key="k")
    assert "metadata" in text


def test_fastgpt_push_refuses_a_metadata_url():
    models = [{"model": "m", "metadata": {"type": "llm", "provider": "OpenAI"}}]
    with pytest.raises(FastGPTPushError, match="metadata"):
        asyncio.run(push_models("http://169.254.169.254/", root_password="pw", models_json=models))


def test_media_urls_are_fetched_only_for_admitted_requests(make_gateway, fake_upstream, internal):
    """The fetch happens after the limits and the quota reservation: a caller turned away makes
    the gateway fetch nothing, and a refused URL costs the caller no quota."""
    gw = make_gateway(fetch_allow=["127.0.0.1"], prices={"m": {"input": 0.0, "output": 10.0}})
    gw.add_channel(name="vision", base_url=fake_upstream.url, models="m")
    poor = gw.openai(gw.create_token(name="poor", unlimited_quota=False, remain_quota=5))
    with pytest.raises(openai.RateLimitError):
        poor.chat.completions.create(
            model="m", messages=_image_message(f"{internal.server.url}/cat.png"), max_tokens=2
        )
    assert internal.hits == []
    rich = gw.openai(gw.create_token(name="rich", unlimited_quota=False, remain_quota=1000))
    with pytest.raises(openai.BadRequestError):
        rich.chat.completions.create(
            model="m", messages=_image_message("http://169.254.169.254/latest/"), max_tokens=2
        )
    gw.flush_usage()
    token = gw.api("GET", "/api/token/", params={"keyword": "rich"})[0]
    assert (token["remain_quota"], token["used_quota"]) == (1000, 0)
