"""Prices: remote models billed at litellm's bundled price, admin prices winning, local models
free unless priced, One API's ModelRatio/CompletionRatio options, and no per-request cost.

Quota units are One API's: 500000 = 1 USD (songquanpeng/one-api common/config/config.go
`QuotaPerUnit = 500 * 1000.0`), and ratio 1 = 0.002 USD / 1K tokens
(relay/billing/ratio/model.go: "1 === $0.002 / 1K tokens").
"""

from __future__ import annotations

import json
import math
import secrets

import pytest
from sqlalchemy import event

from gateway.upstreams import litellm_table
from tests.conftest import REDIS_URL
from tests.support.polling import wait_for

MSG = [{"role": "user", "content": "hi"}]
QUOTA = 10_000_000


def litellm_row(model: str) -> dict:
    """The row as litellm ships it, read here independently of gateway.upstreams.litellm_table."""
    return json.loads(litellm_table.table_path().read_text())[model]  # type: ignore[union-attr]


def expected_quota(prompt: int, completion: int, usd_in_per_token: float, usd_out: float) -> int:
    return math.ceil((prompt * usd_in_per_token + completion * usd_out) * 500_000 - 1e-9)


def one_chat(gw, key: str, model: str) -> dict:
    gw.openai(key).chat.completions.create(model=model, messages=MSG, max_tokens=50)
    gw.flush_usage()
    return gw.api("GET", "/api/log/", params={"model_name": model})[0]


def token_row(gw, name: str) -> dict:
    return next(t for t in gw.api("GET", "/api/token/") if t["name"] == name)


def test_channel_model_spends_litellm_price(make_gateway, fake_upstream):
    """Before issue 15 an unpriced gpt-4o was free: used_quota stayed 0."""
    _spends_litellm_price(make_gateway(), fake_upstream)


def test_channel_model_spends_litellm_price_postgres(pg_url, make_gateway, fake_upstream):
    # pg_url first: its database is dropped after the gateways stop
    _spends_litellm_price(make_gateway(database_url=pg_url), fake_upstream)


def _spends_litellm_price(gw, fake_upstream) -> None:
    gw.add_channel(name="openai", type=1, base_url=fake_upstream.url, models="gpt-4o")
    key = gw.create_token(name="q", unlimited_quota=False, remain_quota=QUOTA)
    log = one_chat(gw, key, "gpt-4o")
    row = litellm_row("gpt-4o")
    want = expected_quota(
        log["prompt_tokens"],
        log["completion_tokens"],
        row["input_cost_per_token"],
        row["output_cost_per_token"],
    )
    assert log["prompt_tokens"] == 11 and log["completion_tokens"] > 0  # the fake's usage
    assert want > 0 and log["quota"] == want
    assert log["cost_usd"] == pytest.approx(want / 500_000)
    token = token_row(gw, "q")
    assert token["used_quota"] == want and token["remain_quota"] == QUOTA - want
    listed = gw.api("GET", "/api/price/gpt-4o")
    assert listed["source"] == "litellm" and listed["litellm_key"] == "gpt-4o"
    assert listed["input"] == pytest.approx(row["input_cost_per_token"] * 1e6)


def test_mapped_channel_model_is_priced_by_its_upstream_name(make_gateway, fake_upstream):
    gw = make_gateway()
    gw.add_channel(
        name="m",
        base_url=fake_upstream.url,
        models="house-model",
        model_mapping={"house-model": "gpt-4o-mini"},
    )
    price = gw.api("GET", "/api/price/house-model")
    row = litellm_row("gpt-4o-mini")
    assert price["source"] == "litellm" and price["litellm_key"] == "gpt-4o-mini"
    assert price["output"] == pytest.approx(row["output_cost_per_token"] * 1e6)


def test_no_hosting_provider_price_is_guessed(make_gateway, fake_upstream):
    """litellm knows `deepinfra/Qwen/Qwen2.5-7B-Instruct`; the admin's own vLLM serving
    `Qwen/Qwen2.5-7B-Instruct` is not billed at DeepInfra's price, nor is a row priced 0."""
    gw = make_gateway()
    gw.add_channel(name="vllm", base_url=fake_upstream.url, models="Qwen/Qwen2.5-7B-Instruct,chat")
    assert gw.api("GET", "/api/price/Qwen/Qwen2.5-7B-Instruct")["source"] == "free"
    assert gw.api("GET", "/api/price/chat")["source"] == "free"


def test_admin_price_overrides_default_and_reset_restores_it(make_gateway, fake_upstream):
    gw = make_gateway()
    gw.add_channel(name="openai", type=1, base_url=fake_upstream.url, models="gpt-4o")
    key = gw.create_token(name="a", unlimited_quota=False, remain_quota=QUOTA)
    set_ = gw.api("PUT", "/api/price/", json={"model": "gpt-4o", "input": 100, "output": 300})
    assert set_["source"] == "admin" and set_["model_ratio"] == 50 and set_["completion_ratio"] == 3
    log = one_chat(gw, key, "gpt-4o")
    assert log["quota"] == expected_quota(
        log["prompt_tokens"], log["completion_tokens"], 100e-6, 300e-6
    )
    assert gw.api("DELETE", "/api/price/gpt-4o") is None
    assert gw.api("GET", "/api/price/gpt-4o")["source"] == "litellm"
    missing = gw.admin.delete("/api/price/gpt-4o").json()
    assert missing["success"] is False and "no admin price" in missing["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o", "input": -1},
        {"model": "gpt-4o", "input": "NaN"},
        {"model": "gpt-4o", "output": 1e300},
        {"model": "", "input": 1},
        {"model": "a\nb", "input": 1},
    ],
)
def test_bad_prices_are_refused(gateway, body):
    resp = gateway.admin.put("/api/price/", json=body).json()
    assert resp["success"] is False and resp["message"]
    assert gateway.api("GET", "/api/price/") == []


def test_local_model_stays_free_unless_priced(make_gateway):
    """A local worker serving a name litellm prices (gpt-4o-mini) costs nothing by default."""
    gw = make_gateway(runtime_enabled=True)
    # the fake engine answers from the SmolLM2 starter entry's files without reading them
    body = {
        "model_name": "smollm2-135m-instruct",
        "model_uid": "gpt-4o-mini",
        "model_engine": "fake",
    }
    assert gw.admin.post("/v1/models", json=body, timeout=120).status_code == 200
    wait_for(lambda: "gpt-4o-mini" in gw.app.state.services.routes.local_uids(), "the local worker")
    key = gw.create_token(name="l", unlimited_quota=False, remain_quota=QUOTA)
    log = one_chat(gw, key, "gpt-4o-mini")
    assert log["completion_tokens"] > 0 and log["quota"] == 0
    assert token_row(gw, "l")["used_quota"] == 0
    assert gw.api("GET", "/api/price/gpt-4o-mini")["source"] == "free"

    gw.api("POST", "/api/price/", json={"model": "gpt-4o-mini", "input": 1000, "output": 1000})
    before = token_row(gw, "l")["used_quota"]
    log = one_chat(gw, key, "gpt-4o-mini")
    want = expected_quota(log["prompt_tokens"], log["completion_tokens"], 1e-3, 1e-3)
    assert log["quota"] == want > 0 and token_row(gw, "l")["used_quota"] == before + want


def options(gw) -> dict[str, str]:
    return {o["key"]: o["value"] for o in gw.api("GET", "/api/option/")}


def test_one_api_ratio_options_round_trip(make_gateway, fake_upstream):
    """One API's shapes: GET /api/option/ -> data [{key, value: string}] (controller/option.go
    GetOptions); PUT /api/option/ {key, value} (UpdateOption); ModelRatio/CompletionRatio values
    are JSON maps serialised to strings (model/option.go updateOptionMap ->
    relay/billing/ratio/model.go UpdateModelRatioByJSONString); One API's own frontend
    (web/default/src/components/OperationSetting.js) sends the whole map back."""
    gw = make_gateway()
    gw.add_channel(name="openai", type=1, base_url=fake_upstream.url, models="gpt-4o")
    key = gw.create_token(name="o", unlimited_quota=False, remain_quota=QUOTA)
    got = options(gw)
    assert got["QuotaPerUnit"] == "500000"
    row = litellm_row("gpt-4o")
    ratio, completion = json.loads(got["ModelRatio"]), json.loads(got["CompletionRatio"])
    assert ratio["gpt-4o"] == pytest.approx(row["input_cost_per_token"] * 1e6 / 2)
    assert completion["gpt-4o"] == pytest.approx(
        row["output_cost_per_token"] / row["input_cost_per_token"]
    )

    # What One API's settings page does on save: the map it read, sent back as a string.
    assert (
        gw.api("PUT", "/api/option/", json={"key": "ModelRatio", "value": got["ModelRatio"]})
        is None
    )
    assert gw.api("GET", "/api/price/gpt-4o")["source"] == "litellm"  # nothing pinned
    assert options(gw) == got

    ratio["gpt-4o"] = 5
    gw.api("PUT", "/api/option/", json={"key": "ModelRatio", "value": json.dumps(ratio)})
    gw.api("PUT", "/api/option/", json={"key": "CompletionRatio", "value": '{"gpt-4o": 2}'})
    price = gw.api("GET", "/api/price/gpt-4o")
    assert (price["source"], price["input"], price["output"]) == ("admin", 10, 20)
    assert json.loads(options(gw)["ModelRatio"])["gpt-4o"] == 5
    log = one_chat(gw, key, "gpt-4o")
    # One API's formula: (prompt + completion * CompletionRatio) * ModelRatio
    assert log["quota"] == math.ceil((log["prompt_tokens"] + log["completion_tokens"] * 2) * 5)

    del ratio["gpt-4o"]  # One API replaces the whole map: a missing model loses its price
    gw.api("PUT", "/api/option/", json={"key": "ModelRatio", "value": json.dumps(ratio)})
    assert gw.api("GET", "/api/price/gpt-4o")["source"] == "litellm"

    for body, words in (
        ({"key": "ModelRatio", "value": "{not json"}, "not valid JSON"),
        ({"key": "ModelRatio", "value": '{"gpt-4o": "x"}'}, "must be a number"),
        ({"key": "CompletionRatio", "value": "[1]"}, "JSON object"),
        ({"key": "Theme", "value": "berry"}, "keeps no option"),
        ({"key": "QuotaPerUnit", "value": "1000"}, "fixed at 500000"),
    ):
        resp = gw.admin.put("/api/option/", json=body).json()
        assert resp["success"] is False and words in resp["message"], (body, resp)
    assert gw.api("GET", "/api/price/gpt-4o")["source"] == "litellm"


def test_price_lookup_costs_no_database_read_and_no_table_lookup(make_gateway, fake_upstream):
    """Per request the price is two dict hits: no ModelPrice query, no litellm table search
    (the defaults are rebuilt only when the route table changes)."""
    gw = make_gateway()
    gw.add_channel(name="openai", type=1, base_url=fake_upstream.url, models="gpt-4o")
    key = gw.create_token(name="f", unlimited_quota=False, remain_quota=QUOTA)
    one_chat(gw, key, "gpt-4o")  # warm: defaults built for this route generation
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement.lower())

    engine = gw.app.state.services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    before = litellm_table.lookup.cache_info()
    try:
        client = gw.openai(key)
        for _ in range(20):
            client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=50)
        gw.flush_usage()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    after = litellm_table.lookup.cache_info()
    assert statements, "the listener saw the quota and usage writes"
    assert not [s for s in statements if "modelprice" in s]
    assert (after.hits + after.misses) == (before.hits + before.misses)


@pytest.mark.parametrize("bus", ["change log", "redis"])
def test_price_change_reaches_another_replica(pg_url, make_gateway, fake_upstream, bus):
    """Two gateways on one PostgreSQL database: a price set on one bills on the other, through
    Redis pub/sub or, without Redis, the change log every replica polls (gateway.cluster)."""
    kw = {"database_url": pg_url}
    if bus == "redis":
        kw |= {"redis_url": REDIS_URL, "redis_prefix": f"mp-prices-{secrets.token_hex(4)}:"}
    a = make_gateway(**kw)
    b = make_gateway(**kw)
    a.add_channel(name="openai", type=1, base_url=fake_upstream.url, models="gpt-4o")
    a.api("PUT", "/api/price/", json={"model": "gpt-4o", "input": 7, "output": 9})
    wait_for(lambda: b.app.state.services.prices.get("gpt-4o").input == 7, "the price on replica b")
    assert b.api("GET", "/api/price/gpt-4o")["source"] == "admin"
    a.api("DELETE", "/api/price/gpt-4o")
    wait_for(
        lambda: b.app.state.services.prices.get("gpt-4o").source == "litellm", "the reset on b"
    )
