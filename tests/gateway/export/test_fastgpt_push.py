"""push_models against a fake FastGPT that is a real HTTP server."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.export import FastGPTPushError, build_model_config, push_models
from tests.gateway.export.fastgpt_fixtures import API_KEY, BASE_URL, seed_models
from tests.support.fake_fastgpt import BUILTIN_MODEL, FakeFastGPT

PASSWORD = "s3cret-root"


@pytest.fixture
def fastgpt():
    fake = FakeFastGPT(root_password=PASSWORD)
    yield fake
    fake.stop()


def items():
    return build_model_config(seed_models(), base_url=BASE_URL, api_key=API_KEY, overrides={})


async def test_push_reports_each_model_and_never_replaces_the_list(fastgpt):
    fastgpt.state.reject["bge-reranker"] = "rerank model config error"
    results = await push_models(fastgpt.url, root_password=PASSWORD, models_json=items())

    assert [r.model for r in results] == [i["model"] for i in items()]
    failed = [r for r in results if not r.ok]
    assert [(r.model, r.error) for r in failed] == [
        ("bge-reranker", "HTTP 500: rerank model config error")
    ]
    # bge-m3 is one of FastGPT's built-ins (BAAI provider file): updated, not created
    assert {r.model for r in results if r.ok and not r.created} == {"bge-m3"}
    assert fastgpt.state.calls_to("/updateWithJson") == []

    updates = fastgpt.state.calls_to("/api/core/ai/model/update")
    assert len(updates) == len(results)
    assert all(c.authed for c in updates)
    assert all(set(c.body) == {"model", "metadata"} for c in updates)
    stored = fastgpt.state.models
    assert BUILTIN_MODEL["model"] in stored  # FastGPT's own models stay
    assert "bge-reranker" not in stored
    assert stored["qwen-chat"]["isActive"] is True
    assert stored["qwen-chat"]["maxContext"] == 32768
    assert stored["whisper"]["type"] == "stt"


async def test_login_is_root_with_the_sha256_of_the_password(fastgpt):
    await push_models(fastgpt.url, root_password=PASSWORD, models_json=items()[:1])
    (login,) = fastgpt.state.calls_to("/loginByPassword")
    assert login.body["username"] == "root"
    assert len(login.body["password"]) == 64 and login.body["password"] != PASSWORD
    (pre,) = fastgpt.state.calls_to("/preLogin")
    assert pre.method == "GET"


async def test_second_push_updates_and_takes_json_text(fastgpt):
    await push_models(fastgpt.url, root_password=PASSWORD, models_json=items())
    text = json.dumps(items())
    results = await push_models(fastgpt.url, root_password=PASSWORD, models_json=text)
    assert all(r.ok and r.created is False for r in results)


async def test_a_caller_supplied_client_is_used_and_left_open(fastgpt):
    async with httpx.AsyncClient() as client:
        results = await push_models(
            fastgpt.url, root_password=PASSWORD, models_json=items()[:2], http_client=client
        )
        assert all(r.ok for r in results)
        assert not client.is_closed


async def test_an_invalid_entry_is_reported_and_not_sent(fastgpt):
    broken = items()[:2]
    del broken[1]["metadata"]["type"]
    results = await push_models(fastgpt.url, root_password=PASSWORD, models_json=broken)
    assert results[0].ok
    assert not results[1].ok and "not sent" in results[1].error
    assert len(fastgpt.state.calls_to("/api/core/ai/model/update")) == 1


async def test_wrong_password_stops_the_push(fastgpt):
    with pytest.raises(FastGPTPushError, match="user or password error"):
        await push_models(fastgpt.url, root_password="wrong", models_json=items())
    assert fastgpt.state.calls_to("/api/core/ai/model/update") == []


async def test_unreachable_fastgpt_is_a_push_error():
    fake = FakeFastGPT()
    url = fake.url
    fake.stop()  # nothing listens there now
    with pytest.raises(FastGPTPushError, match="cannot reach"):
        await push_models(url, root_password=PASSWORD, models_json=items())
