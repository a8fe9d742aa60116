"""Quota: atomic reservation under concurrency (SQLite and PostgreSQL), settlement, refunds."""

from __future__ import annotations

import asyncio

import httpx
import pytest

MSG = [{"role": "user", "content": "hi"}]
# output price 10 USD / 1M tokens; max_tokens=100 -> reservation 0.001 USD = 500 units;
# the fake answers 6 completion tokens -> 30 units charged.
PRICES = {"m": {"input": 0.0, "output": 10.0}}
RESERVE, CHARGE = 500, 30


async def _fire(url: str, key: str, n: int) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as client:

        async def one() -> int:
            r = await client.post(
                f"{url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "m", "messages": MSG, "max_tokens": 100},
            )
            return r.status_code

        return await asyncio.gather(*(one() for _ in range(n)))


def _race(gw, fake, k: int = 5, n: int = 20) -> None:
    fake.reset(delay=1.0)  # every request reserves before any settles
    gw.add_channel(name="up", base_url=fake.url, models="m")
    key = gw.create_token(name="q", unlimited_quota=False, remain_quota=RESERVE * k)
    statuses = asyncio.run(_fire(gw.url, key, n))
    assert statuses.count(200) == k, statuses
    assert statuses.count(429) == n - k
    gw.flush_usage()
    token = gw.api("GET", "/api/token/", params={"keyword": "q"})[0]
    assert token["used_quota"] == CHARGE * k
    assert token["remain_quota"] == RESERVE * k - CHARGE * k
    stat = gw.api("GET", "/api/log/stat", params={"token_name": "q"})
    assert stat["quota"] == CHARGE * k


def test_quota_race_sqlite(make_gateway, fake_upstream):
    _race(make_gateway(prices=PRICES), fake_upstream)


def test_quota_race_postgres(pg_url, make_gateway, fake_upstream):
    _race(make_gateway(prices=PRICES, database_url=pg_url), fake_upstream)


def test_failed_request_is_refunded(make_gateway, fake_upstream):
    gw = make_gateway(prices=PRICES)
    fake_upstream.reset(status=500)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="r", unlimited_quota=False, remain_quota=1000)
    assert asyncio.run(_fire(gw.url, key, 1)) == [500]
    gw.flush_usage()
    token = gw.api("GET", "/api/token/", params={"keyword": "r"})[0]
    assert token["remain_quota"] == 1000 and token["used_quota"] == 0
    log = gw.api("GET", "/api/log/", params={"token_name": "r"})[0]
    assert log["status"] == 500 and log["quota"] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_unlimited_token_accumulates_used_quota(make_gateway, fake_upstream, stream):
    gw = make_gateway(prices=PRICES)
    gw.add_channel(name="up", type=1, base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="u")
    client = gw.openai(key)
    if stream:
        list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    else:
        client.chat.completions.create(model="m", messages=MSG)
    gw.flush_usage()
    assert gw.api("GET", "/api/token/", params={"keyword": "u"})[0]["used_quota"] == CHARGE


def test_usage_is_counted_locally_when_the_upstream_sends_none(make_gateway, fake_upstream):
    gw = make_gateway(prices=PRICES)
    fake_upstream.reset(send_usage=False)
    gw.add_channel(name="up", type=50, base_url=fake_upstream.url, models="m")  # no injection
    key = gw.create_token(name="l")
    list(gw.openai(key).chat.completions.create(model="m", messages=MSG, stream=True))
    gw.flush_usage()
    log = gw.api("GET", "/api/log/", params={"token_name": "l"})[0]
    assert log["prompt_tokens"] > 0 and log["completion_tokens"] > 0
    assert log["quota"] > 0
