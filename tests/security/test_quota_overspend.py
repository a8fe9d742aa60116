"""Attack: a limited token spends past its quota because the upstream reports more usage than the
gateway reserved.

Before: reservation was an estimate and settlement whatever the upstream reported, so one request
on quota 50 left remain_quota at -99,950 and 100 concurrent requests on quota 1,000 spent far more
than 1,000. Now a limited token pays at most what was reserved for the request's own max_tokens
bound; the over-report is logged and counted (modelport_quota_over_reported). The interleaving
that overspends -- every reservation taken before any settlement -- is forced by an upstream that
holds every answer until the test has seen all requests reserved or refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from tests.support.servers import ServerThread

# output 10 USD / 1M tokens: max_tokens=5 reserves 25 units, max_tokens=2 reserves 10;
# the upstream claims 100,000 completion tokens (500,000 units) for every answer.
PRICES = {"m": {"input": 0.0, "output": 10.0}}
CLAIMED = 100_000
MSG = [{"role": "user", "content": "hi"}]


@dataclass
class Inflating:
    """An OpenAI-compatible upstream that claims CLAIMED completion tokens and holds every answer
    until `release()` (the barrier)."""

    server: ServerThread | None = None
    arrived: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def release(self) -> None:
        assert self.server is not None
        self.server.server_loop.call_soon_threadsafe(self.gate.set)


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": CLAIMED, "total_tokens": CLAIMED + 1},
    }


@pytest.fixture
def inflating() -> Iterator[Inflating]:
    up = Inflating()
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        up.arrived += 1
        await asyncio.wait_for(up.gate.wait(), 120)
        answer = _completion(body["model"])
        if not body.get("stream"):
            return Response(orjson.dumps(answer), media_type="application/json")
        chunk = {**answer, "object": "chat.completion.chunk", "usage": None}
        chunk["choices"] = [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]
        frames = [chunk, {**chunk, "choices": [], "usage": answer["usage"]}]

        async def events() -> Any:
            for f in frames:
                yield b"data: " + orjson.dumps(f) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    up.server = ServerThread(app).start()
    yield up
    up.server.stop()


def _token(gw: Any, name: str) -> dict[str, Any]:
    gw.flush_usage()
    return gw.api("GET", "/api/token/", params={"keyword": name})[0]  # type: ignore[no-any-return]


def _over_reported(gw: Any) -> float:
    text = gw.admin.get("/metrics").text
    lines = [x for x in text.splitlines() if x.startswith("modelport_quota_over_reported_total")]
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines)


@pytest.mark.parametrize("stream", [False, True])
def test_one_request_cannot_take_a_token_below_zero(make_gateway, inflating, stream):
    gw = make_gateway(prices=PRICES)
    inflating.release()
    gw.add_channel(name="up", base_url=inflating.url, models="m")
    key = gw.create_token(name="q50", unlimited_quota=False, remain_quota=50)
    client = gw.openai(key)
    if stream:
        chunks = client.chat.completions.create(
            model="m",
            messages=MSG,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"
    else:
        client.chat.completions.create(model="m", messages=MSG, max_tokens=5)
    token = _token(gw, "q50")
    assert token["remain_quota"] == 25  # 50 - the 25 reserved for max_tokens=5
    assert token["used_quota"] == 25
    log = gw.api("GET", "/api/log/", params={"token_name": "q50"})[0]
    assert log["completion_tokens"] == CLAIMED  # what the upstream said, kept for the admin
    assert log["quota"] == 25  # what the token paid
    assert _over_reported(gw) == CLAIMED * 5 - 25


async def _race(url: str, key: str, n: int, up: Inflating) -> list[int]:
    """n requests at once; the upstream answers none until every one has either reached it
    (reserved) or been refused, so every reservation precedes every settlement."""
    refused = 0
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one() -> int:
            nonlocal refused
            r = await client.post(
                f"{url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "m", "messages": MSG, "max_tokens": 2},
            )
            if r.status_code == 429:  # only for want of quota, never another limit
                assert r.json()["error"]["code"] == "insufficient_quota", r.text
                refused += 1
            return r.status_code

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        deadline = time.monotonic() + 120  # a bound for a slow machine, not a timing claim
        while up.arrived + refused < n:
            assert time.monotonic() < deadline, (up.arrived, refused)
            await asyncio.sleep(0.02)
        up.release()
        return list(await asyncio.gather(*tasks))


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_concurrent_requests_spend_at_most_the_quota(make_gateway, inflating, db, request):
    overrides: dict[str, Any] = {"prices": PRICES}
    if db == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    gw = make_gateway(**overrides)
    gw.add_channel(name="up", base_url=inflating.url, models="m")
    key = gw.create_token(name="q1000", unlimited_quota=False, remain_quota=1000)
    statuses = asyncio.run(_race(gw.url, key, 120, inflating))
    assert statuses.count(200) == 100  # 1000 / 10 reserved each
    assert statuses.count(429) == 20
    token = _token(gw, "q1000")
    assert token["remain_quota"] == 0
    assert token["used_quota"] == 1000
    stat = gw.api("GET", "/api/log/stat", params={"token_name": "q1000"})
    assert stat["quota"] == 1000
