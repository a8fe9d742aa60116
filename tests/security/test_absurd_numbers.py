"""Attack: absurd numbers. `max_tokens=1e19` on a limited token was a 500 (OverflowError in the
quota reservation) and a reset connection. Every number the gateway reads has a bound, and a
request beyond it is a 400 that names the field, before any quota is reserved."""

from __future__ import annotations

import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]
BIG = 1e19

CASES = [
    ("/v1/chat/completions", {"messages": MSG}, "max_tokens", BIG),
    ("/v1/chat/completions", {"messages": MSG}, "max_tokens", 10**30),
    ("/v1/chat/completions", {"messages": MSG}, "max_completion_tokens", BIG),
    ("/v1/chat/completions", {"messages": MSG}, "n", BIG),
    ("/v1/chat/completions", {"messages": MSG}, "top_logprobs", BIG),
    ("/v1/chat/completions", {"messages": MSG}, "seed", 10**30),
    ("/v1/chat/completions", {"messages": MSG}, "presence_penalty", BIG),
    ("/v1/completions", {"prompt": "hi"}, "max_tokens", BIG),
    ("/v1/completions", {"prompt": "hi"}, "best_of", BIG),
    ("/v1/completions", {"prompt": "hi"}, "logprobs", BIG),
    ("/v1/embeddings", {"input": "hi"}, "dimensions", BIG),
    ("/v1/rerank", {"query": "q", "documents": ["a", "b"]}, "top_n", BIG),
]


@pytest.fixture
def limited(make_gateway, fake_upstream):
    gw = make_gateway(prices={"m": {"input": 1.0, "output": 2.0}})
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="budget", unlimited_quota=False, remain_quota=1_000_000)
    return gw, key


def test_every_bound_is_a_400_naming_the_field(limited):
    gw, key = limited
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}) as http:
        for path, body, field, value in CASES:
            r = http.post(path, json={"model": "m", **body, field: value})
            assert r.status_code == 400, (path, field, r.status_code, r.text)
            error = r.json()["error"]
            assert error["param"] == field and field in error["message"], (path, error)
        assert http.post("/v1/chat/completions", json={"model": "m", "messages": MSG}).is_success


def test_openai_client_gets_a_bad_request_not_a_reset(limited):
    gw, key = limited
    client = gw.openai(key)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", messages=MSG, max_tokens=10**19)
    assert "max_tokens" in err.value.message
    # The largest allowed request is reserved without overflow: refused for quota, not a 500.
    with pytest.raises(openai.RateLimitError) as quota:
        client.chat.completions.create(model="m", messages=MSG, max_tokens=1 << 24, n=128)
    assert quota.value.code == "insufficient_quota"
    token = next(t for t in gw.api("GET", "/api/token/") if t["name"] == "budget")
    assert token["remain_quota"] == 1_000_000  # nothing was taken
