"""The FastGPT export carries what modelport charges for each model.

FastGPT bills its own users from the prices in a model's config (`inputPrice`/`outputPrice`,
`charsPointsPrice`, per 1K tokens: labring/FastGPT packages/global/core/ai/model.d.ts), so an
export that says 0 for a model the gateway charges for makes FastGPT's usage pages wrong.
"""

from __future__ import annotations

import httpx

from gateway.upstreams import litellm_table
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.fake_openai import FakeOpenAI


def test_export_prices_are_the_gateways_prices(gateway: Gateway, fake_upstream: FakeOpenAI) -> None:
    gateway.add_channel(name="cloud", base_url=fake_upstream.url, models="gpt-4o-mini,house-llm")
    admin = gateway.api("POST", "/api/price/", json={"model": "house-llm", "input": 2, "output": 6})
    assert admin["model"] == "house-llm"
    doc = gateway.api("GET", "/api/export/fastgpt", params={"format": "config"})
    entries = {e["model"]: e for e in doc["llmModels"]}

    house = entries["house-llm"]  # USD per 1M tokens -> per 1K
    assert (house["inputPrice"], house["outputPrice"]) == (0.002, 0.006)

    entry = litellm_table.lookup("gpt-4o-mini")
    assert entry is not None and entry.input_cost_per_token > 0
    mini = entries["gpt-4o-mini"]
    assert mini["inputPrice"] == round(entry.input_cost_per_token * 1000, 6)
    assert mini["outputPrice"] == round(entry.output_cost_per_token * 1000, 6)


def test_an_override_json_cannot_store_is_a_400_not_a_500(gateway: Gateway) -> None:
    """The fuzzer's find: an integer beyond 64 bits reached orjson at the database write (500)."""
    r = httpx.put(
        f"{gateway.url}/api/export/fastgpt/overrides",
        json={"model": "m", "data": {"maxContext": -9223372036854775809}},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 400, r.text
    assert "cannot be stored" in r.text
