"""`GET /api/channel/test/:id` and `/api/export/fastgpt*` over real HTTP, with an admin token, as a
One API script or FastGPT operator calls them.

One API's TestChannel (songquanpeng/one-api, controller/channel-test.go, `TestChannel`) answers
HTTP 200 with `{success, message, time}` (time in seconds, `success: false` with the upstream's
error otherwise) after sending `{model: ?model=, max_tokens: 1, messages: [{user, "hi"}]}`
(`buildTestRequest`) to the channel with its key.
"""

from __future__ import annotations

import json

import httpx

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.fake_fastgpt import FakeFastGPT


def _get(gw: Gateway, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{gw.url}{path}", params=params, headers={"Authorization": ADMIN_TOKEN})


def test_channel_test_by_id_over_http(make_gateway, fake_upstream) -> None:
    gw: Gateway = make_gateway()
    ch = gw.add_channel(name="up", base_url=fake_upstream.url, models="m1,m2", key="sk-ch")
    r = _get(gw, f"/api/channel/test/{ch['id']}", model="m2")
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True and body["message"] == ""
    assert isinstance(body["time"], float) and body["time"] >= 0
    sent = fake_upstream.requests[-1]
    assert sent.body["model"] == "m2" and sent.headers["authorization"] == "Bearer sk-ch"
    assert sent.body["messages"][0]["role"] == "user"

    fake_upstream.reset(status=401, error_message="bad key upstream")
    failed = _get(gw, f"/api/channel/test/{ch['id']}").json()
    assert failed["success"] is False and "bad key upstream" in failed["message"]
    assert "time" in failed

    missing = _get(gw, "/api/channel/test/99999")
    assert missing.status_code == 200 and missing.json()["success"] is False
    refused = httpx.get(f"{gw.url}/api/channel/test/{ch['id']}")  # no admin token
    assert refused.status_code == 401 and refused.json()["success"] is False


def test_fastgpt_export_endpoints_over_http(make_gateway, fake_upstream) -> None:
    gw: Gateway = make_gateway()
    gw.add_channel(name="up", base_url=fake_upstream.url, models="qwen-chat")
    key = gw.create_token(name="fastgpt")

    config = _get(gw, "/api/export/fastgpt", format="config", api_key=key).json()
    assert config["success"] is True
    (llm,) = config["data"]["llmModels"]
    assert llm["model"] == "qwen-chat"
    assert config["data"]["systemEnv"]["chatApiKey"] == key
    assert (
        config["data"]["systemEnv"]["oneapiUrl"] == f"{gw.app.state.services.settings.base_url}/v1"
    )
    models = httpx.post(
        f"{gw.url}/api/export/fastgpt",
        json={"format": "models", "api_key": key},
        headers={"Authorization": ADMIN_TOKEN},
    ).json()
    assert [m["model"] for m in models["data"]] == ["qwen-chat"]

    put = httpx.put(
        f"{gw.url}/api/export/fastgpt/overrides",
        json={"model": "qwen-chat", "data": {"maxContext": 4096}},
        headers={"Authorization": ADMIN_TOKEN},
    ).json()
    assert put["success"] is True
    assert (
        _get(gw, "/api/export/fastgpt/overrides").json()["data"]["qwen-chat"]["maxContext"] == 4096
    )
    again = _get(gw, "/api/export/fastgpt", format="config", api_key=key).json()
    assert again["data"]["llmModels"][0]["maxContext"] == 4096

    fastgpt = FakeFastGPT(root_password="root-pw")
    try:
        pushed = httpx.post(
            f"{gw.url}/api/export/fastgpt/push",
            json={"url": fastgpt.url, "root_password": "root-pw", "api_key": key},
            headers={"Authorization": ADMIN_TOKEN},
            timeout=60,
        ).json()
        assert pushed["success"] is True, pushed
        assert [(r["model"], r["ok"]) for r in pushed["data"]] == [("qwen-chat", True)]
        assert fastgpt.state.db["qwen-chat"]["maxContext"] == 4096
        wrong = httpx.post(
            f"{gw.url}/api/export/fastgpt/push",
            json={"url": fastgpt.url, "root_password": "wrong", "api_key": key},
            headers={"Authorization": ADMIN_TOKEN},
            timeout=60,
        ).json()
        assert wrong["success"] is False and wrong["message"]
    finally:
        fastgpt.stop()
    for path in ("/api/export/fastgpt", "/api/export/fastgpt/overrides"):
        assert httpx.get(f"{gw.url}{path}").status_code == 401
    json.dumps(config)  # the envelope is plain JSON
