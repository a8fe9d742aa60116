"""The admin API as One API's own web pages and scripts call it (issue 15).

Shapes read from songquanpeng/one-api (commit 8df4a26): controller/log.go GetAllLogs,
web/default/src/components/LogsTable.js (the query it sends), model/log.go (row json tags),
common/config/config.go `ItemsPerPage = 10`, controller/model.go OpenAIModels, router/api.go
(channel routes), controller/channel-test.go TestChannels, controller/channel-billing.go,
model/channel.go DeleteDisabledChannel, middleware/auth.go TokenAuth, middleware/distributor.go
(`other` as the API version of Azure and Gemini).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from alembic import command
from fastapi import FastAPI, Request
from sqlalchemy import create_engine, inspect, text

from gateway.db.engine import alembic_config, sync_url, upgrade
from tests.support.fake_gemini import FakeGemini, start_fake_gemini
from tests.support.migrations import db_url
from tests.support.servers import ServerThread, free_port

__all__ = ["db_url"]  # the fixture, parametrised over SQLite and PostgreSQL

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def served(gateway, fake_upstream):
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="m")
    return gateway


def test_log_page_query_finds_todays_rows_with_one_api_names(served):
    """LogsTable.js sends every filter, end_timestamp = now + 1 h (was clamped to 10^9: nothing)."""
    key = served.create_token(name="logs")
    served.openai(key).chat.completions.create(model="m", messages=MSG)
    served.flush_usage()
    now = int(time.time())
    query = (
        f"p=0&type=0&username=&token_name=&model_name=&start_timestamp=0"
        f"&end_timestamp={now + 3600}&channel="
    )
    rows = served.api("GET", f"/api/log/?{query}")
    assert len(rows) == 1
    row = rows[0]
    assert row["model_name"] == "m" and row["token_name"] == "logs"
    assert row["username"] == "logs" and row["type"] == 2
    assert row["channel"] == row["channel_id"] > 0
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert "quota" in row and now - 60 <= row["created_at"] <= now + 60
    stat = served.api("GET", f"/api/log/stat?{query}")
    assert stat["requests"] == 1 and "quota" in stat
    # a cleared date field sends NaN (One API reads it as no bound); other log types match none
    assert len(served.api("GET", "/api/log/?start_timestamp=NaN&end_timestamp=NaN")) == 1
    assert served.api("GET", f"/api/log/?type=1&end_timestamp={now + 3600}") == []
    assert served.api("GET", f"/api/log/?start_timestamp={now + 3600}") == []
    assert len(served.api("GET", "/api/log/", params={"username": "logs"})) == 1
    assert served.api("GET", "/api/log/", params={"channel": 2**40}) == []


def test_pages_hold_ten_rows_unless_page_size_says(gateway):
    """One API's frontend asks `?p=N` and splices rows at N * ITEMS_PER_PAGE (10). Eleven
    channels from one multi-line key, plus the built-in local channel, make twelve."""
    gateway.api(
        "POST",
        "/api/channel/",
        json={"name": "c", "type": 50, "key": "\n".join(f"k{i}" for i in range(11))},
    )
    for i in range(12):
        gateway.create_token(name=f"t{i}")
    for path in ("/api/channel/", "/api/token/"):
        assert len(gateway.api("GET", path, params={"p": 0})) == 10
        assert len(gateway.api("GET", path, params={"p": 1})) == 2
        assert len(gateway.api("GET", path, params={"p": 2, "page_size": 5})) == 2
        assert len(gateway.api("GET", path, params={"page_size": 100})) == 12


def test_channel_models_are_objects_with_id(served):
    models = served.api("GET", "/api/channel/models")
    assert {"id": "m", "object": "model", "created": 1626777600, "owned_by": "modelport"} in models


def test_a_key_without_sk_prefix_works(served):
    """TokenAuth does strings.TrimPrefix(key, "sk-"): both forms name the token."""
    key = served.create_token(name="bare")
    out = served.openai(key[3:]).chat.completions.create(model="m", messages=MSG)
    assert out.choices[0].message.content


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    fake = start_fake_gemini()
    yield fake
    fake.stop()


def test_other_is_kept_and_is_gemini_api_version(gateway, gemini):
    """distributor.go: for Azure, Xunfei and Gemini a channel's `other` is the API version when
    its config names none."""
    ch = gateway.add_channel(
        name="g",
        type=24,
        base_url=gemini.url,
        key=gemini.api_key,
        models="gemini-2.0-flash",
        other="v1",
    )
    assert gateway.api("GET", f"/api/channel/{ch['id']}")["other"] == "v1"
    key = gateway.create_token(name="g")
    gateway.openai(key).chat.completions.create(model="gemini-2.0-flash", messages=MSG)
    assert gemini.requests[-1].path.startswith("/v1/models/")


def test_test_all_then_delete_disabled(served, fake_upstream):
    dead = served.add_channel(name="dead", base_url=f"http://127.0.0.1:{free_port()}", models="m")
    back = served.add_channel(name="back", base_url=fake_upstream.url, models="m", status=3)
    results = {r["name"]: r for r in served.api("GET", "/api/channel/test")}
    assert results["up"]["success"] and not results["dead"]["success"]
    # an auto-disabled channel that passes is enabled again (One API's ShouldEnableChannel)
    assert served.api("GET", f"/api/channel/{back['id']}")["status"] == 1
    only = served.api("GET", "/api/channel/test", params={"scope": "disabled"})
    assert only == []  # nothing is disabled now
    assert served.api("GET", f"/api/channel/{dead['id']}")["test_time"] > 0
    served.api("PUT", "/api/channel/", json={"id": dead["id"], "status": 2})
    assert served.api("DELETE", "/api/channel/disabled") == 1
    assert [c["name"] for c in served.api("GET", "/api/channel/")] == ["local", "up", "back"]


@pytest.fixture
def billing() -> Iterator[str]:
    """OpenAI's legacy billing endpoints and DeepSeek's balance, as channel-billing.go reads them."""
    app = FastAPI()

    @app.get("/v1/dashboard/billing/subscription")
    async def subscription(request: Request) -> dict[str, object]:
        assert request.headers["authorization"] == "Bearer sk-bill"
        return {"object": "billing_subscription", "has_payment_method": True, "hard_limit_usd": 120}

    @app.get("/v1/dashboard/billing/usage")
    async def usage(start_date: str, end_date: str) -> dict[str, object]:
        return {"object": "list", "total_usage": 2050}  # cents

    @app.get("/user/balance")
    async def deepseek() -> dict[str, object]:
        return {
            "is_available": True,
            "balance_infos": [
                {"currency": "USD", "total_balance": "1.00"},
                {"currency": "CNY", "total_balance": "42.50"},
            ],
        }

    @app.get("/v1/user/info")
    async def siliconflow() -> dict[str, object]:
        return {"code": 20000, "data": ["not", "an", "object"]}

    with ServerThread(app) as server:
        yield server.url


def test_update_balance(gateway, billing):
    openai_ch = gateway.add_channel(name="o", type=8, base_url=billing, key="sk-bill", models="m")
    deepseek = gateway.add_channel(name="d", type=36, base_url=billing, key="sk-bill", models="m")
    local = gateway.add_channel(name="l", type=30, base_url=billing, models="m")
    body = gateway.admin.get(f"/api/channel/update_balance/{openai_ch['id']}").json()
    assert body == {"success": True, "message": "", "balance": 99.5}
    assert gateway.api("GET", f"/api/channel/{openai_ch['id']}")["balance"] == 99.5
    body = gateway.admin.get(f"/api/channel/update_balance/{deepseek['id']}").json()
    assert body["balance"] == 42.5
    odd = gateway.add_channel(name="s", type=44, base_url=billing, key="sk-bill", models="m")
    body = gateway.admin.get(f"/api/channel/update_balance/{odd['id']}").json()
    assert body["success"] is False and "unexpected shape" in body["message"]
    body = gateway.admin.get(f"/api/channel/update_balance/{local['id']}").json()
    assert body["success"] is False and "no balance API" in body["message"]
    every = gateway.api("GET", "/api/channel/update_balance")
    assert {r["id"]: r.get("balance") for r in every} == {
        openai_ch["id"]: 99.5,
        deepseek["id"]: 42.5,
        odd["id"]: None,
    }


def test_channel_types_follow_one_api(gateway):
    types = {t["type"]: t["name"] for t in gateway.api("GET", "/api/channel/types")}
    assert types[47] == "Baidu Qianfan V2" and types[1047] == "Xinference"
    assert types[30] == "Ollama" and types[36] == "DeepSeek" and types[50] == "OpenAI-compatible"


def test_migration_moves_stored_xinference_channels(db_url):
    """Channels stored as 47 were Xinference (modelport's old number): they become 1047, and
    go back down to 47 with the `other` column."""
    url = db_url
    command.upgrade(alembic_config(url), "0004")
    engine = create_engine(sync_url(url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO channel (type, name, key_enc, base_url, models, model_mapping,"
                ' "group", priority, weight, status, config, system_prompt, created_time,'
                " test_time, response_time, used_quota, balance, last_error, builtin)"
                " VALUES (47, 'xinf', '', 'http://h:9997/v1', 'q', '{}', 'default', 0, 1, 1,"
                " '{}', '', 0, 0, 0, 0, 0, '', false)"
            )
        )
    upgrade(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT type, other FROM channel")).one() == (1047, "")
    command.downgrade(alembic_config(url), "0004")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT type FROM channel")).scalar_one() == 47
        assert "other" not in {c["name"] for c in inspect(conn).get_columns("channel")}
    engine.dispose()
