"""Attack: guessing credentials under concurrency.

The UI login limit was checked before the argon2 verify and recorded after it, so 40 parallel
guesses were all evaluated; admin-token and sk- key guessing had no limit at all. Every failed
attempt is now counted per client address *before* the credential is checked, and over the limit
the answer is a 429 with Retry-After in the envelope of the surface (form, One API, OpenAI).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import openai
import pytest

from gateway.auth.guard import ADMIN_TOKEN_FAILURES, API_KEY_FAILURES, UI_LOGIN_FAILURES
from tests.admin_ui.helpers import UIClient
from tests.conftest import ADMIN_TOKEN
from tests.security.conftest import from_address
from tests.support.polling import ManualClock


async def _burst(
    url: str, n: int, make: object, cookies: dict[str, str] | None = None
) -> list[httpx.Response]:
    """`n` requests sent at once, each on its own connection (cookies on the client: httpx
    deprecates per-request cookies)."""
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=httpx.Limits(max_connections=n), cookies=cookies
    ) as client:
        return await asyncio.gather(*(make(client, i) for i in range(n)))  # type: ignore[operator]


def test_forty_parallel_wrong_passwords_are_not_all_evaluated(gateway):
    UIClient(gateway.url).setup()
    attacker = UIClient(gateway.url)
    attacker.get("/ui/login")
    cookies, csrf = dict(attacker.http.cookies), attacker.csrf

    async def guess(client: httpx.AsyncClient, i: int) -> httpx.Response:
        data = {"username": "admin", "password": f"wrong-{i}", "csrf_token": csrf}
        return await client.post("/ui/login", data=data)

    answers = asyncio.run(_burst(gateway.url, 40, guess, cookies))
    counts = Counter(r.status_code for r in answers)
    assert set(counts) <= {401, 429}, counts
    assert counts[401] <= UI_LOGIN_FAILURES, counts  # at most the limit reached argon2
    limited = next(r for r in answers if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert "too many failed logins" in limited.text and "<form" in limited.text


def test_hundred_parallel_wrong_admin_tokens_get_429_per_address(proxied_gateway):
    gw = proxied_gateway()
    attacker = from_address("203.0.113.7")

    async def guess(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.get("/api/token/", headers={"Authorization": f"guess-{i}", **attacker})

    answers = asyncio.run(_burst(gw.url, 100, guess))
    counts = Counter(r.status_code for r in answers)
    assert set(counts) == {401, 429}, counts
    assert counts[401] <= ADMIN_TOKEN_FAILURES, counts
    limited = next(r for r in answers if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    body = limited.json()  # One API's envelope
    assert body["success"] is False and "too many failed admin-token attempts" in body["message"]

    # Counted before the compare: the attacking address learns nothing, not even from the
    # right token, while the operator at another address is unaffected.
    right = {"Authorization": ADMIN_TOKEN}
    assert gw.admin.get("/api/token/", headers={**right, **attacker}).status_code == 429
    assert gw.admin.get("/api/token/", headers={**right, **from_address("198.51.100.2")}).json()[
        "success"
    ]


def test_admin_token_limit_resets_after_its_window(proxied_gateway):
    gw = proxied_gateway()
    guard = gw.app.state.services.guards.admin_token
    clock = guard.clock = ManualClock()  # the window passes when the test says, not on a timer
    me = from_address("192.0.2.10")
    for i in range(ADMIN_TOKEN_FAILURES):
        assert (
            gw.admin.get("/api/token/", headers={"Authorization": f"x{i}", **me}).status_code == 401
        )
    right = {"Authorization": ADMIN_TOKEN, **me}
    assert gw.admin.get("/api/token/", headers=right).status_code == 429
    clock.advance(guard.window_s - 1)
    assert gw.admin.get("/api/token/", headers=right).status_code == 429  # not yet
    clock.advance(1.001)
    assert gw.admin.get("/api/token/", headers=right).json()["success"]


def test_sk_key_guessing_is_limited_and_a_known_key_keeps_working(proxied_gateway):
    gw = proxied_gateway()
    key = gw.create_token(name="real")
    attacker = from_address("203.0.113.9")
    known = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", **attacker})
    assert known.get("/v1/models").status_code == 200  # a key seen before: the cheap path

    async def guess(client: httpx.AsyncClient, i: int) -> httpx.Response:
        headers = {"Authorization": f"Bearer sk-guess{i:04d}", **attacker}
        return await client.get("/v1/models", headers=headers)

    answers = asyncio.run(_burst(gw.url, 100, guess))
    counts = Counter(r.status_code for r in answers)
    assert set(counts) == {401, 429}, counts
    assert counts[401] <= API_KEY_FAILURES, counts
    limited = next(r for r in answers if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_error"  # OpenAI's error shape

    # The official client sees a RateLimitError, not a 500 or a reset connection.
    client = gw.openai("sk-another-guess", default_headers=attacker)
    with pytest.raises(openai.RateLimitError):
        client.models.list()
    # Only failures are counted: the known key from the same address and a new one elsewhere work.
    assert known.get("/v1/models").status_code == 200
    other = gw.openai(key, default_headers=from_address("198.51.100.3"))
    assert other.models.list().data is not None
    known.close()


def test_a_burst_with_one_valid_key_on_a_cold_cache_is_not_taken_for_guessing(gateway):
    """Each attempt is counted before its lookup, so 100 parallel requests with a real key that
    the gateway had not looked up yet (after a restart, or every cache TTL) were 100 attempts in
    flight from one address: all past the 30th got "too many invalid API keys". Concurrent
    requests with the same key now share one lookup and one count."""
    key = gateway.create_token(name="busy")

    async def call(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})

    answers = asyncio.run(_burst(gateway.url, 100, call))
    assert Counter(r.status_code for r in answers) == {200: 100}
