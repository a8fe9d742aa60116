"""Two gateway replicas (separate processes) on one PostgreSQL and one Redis act as one gateway:
they start together on a fresh database, admin writes on one reach the other within one second,
and quota and RPM limits hold across both under concurrent load."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import REDIS_URL
from tests.scale.procs import Replica, wait_for

MSG = [{"role": "user", "content": "hi"}]
# output price 10 USD / 1M tokens; max_tokens=100 -> reservation 500 units; 6 tokens -> 30 units
PRICES = {"m": {"input": 0.0, "output": 10.0}}
RESERVE, CHARGE = 500, 30


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[Callable[[int], list[Replica]]]:
    started: list[Replica] = []
    env = {
        "MODELPORT_DATABASE_URL": pg_url,
        "MODELPORT_REDIS_URL": REDIS_URL,
        "MODELPORT_REDIS_PREFIX": f"mpscale-{secrets.token_hex(4)}",
        "MODELPORT_PRICES": json.dumps(PRICES),
    }

    def start(n: int) -> list[Replica]:
        new = [Replica(tmp_path / f"r{len(started) + i}", env) for i in range(n)]
        started.extend(new)  # all spawned before any is waited for: they start at once
        return [r.ready() for r in new]

    yield start
    for r in started:
        r.stop()


def _chat(url: str, key: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": MSG, **extra},
        timeout=30,
    )


async def _fire(urls: list[str], key: str, n: int) -> list[int]:
    """n requests at once, alternating between the replicas."""
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int) -> int:
            r = await client.post(
                f"{urls[i % len(urls)]}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "m", "messages": MSG, "max_tokens": 100},
            )
            return r.status_code

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_replicas_starting_together_migrate_a_fresh_database_once(replicas, pg_url):
    a, b, c = replicas(3)
    for r in (a, b, c):
        assert r.api("GET", "/api/status")
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        locals_ = conn.execute("SELECT count(*) FROM channel WHERE builtin").fetchone()
    assert len(versions) == 1
    assert locals_ == (1,)  # the built-in local channel was created once, not per replica


def test_channel_disabled_on_one_replica_leaves_the_other_within_one_second(
    replicas, fake_upstreams
):
    a, b = replicas(2)
    up1, up2 = fake_upstreams("up1"), fake_upstreams("up2")
    ch1 = a.api("POST", "/api/channel/", json={"type": 50, "name": "one", "base_url": up1.url,
                                               "models": "m"})  # fmt: skip
    a.api("POST", "/api/channel/", json={"type": 50, "name": "two", "base_url": up2.url,
                                         "models": "m"})  # fmt: skip
    key = a.api("POST", "/api/token/", json={"name": "t", "unlimited_quota": True})["key"]
    # b learnt of both channels from a's writes (no reload on b): both receive b's traffic
    wait_for(
        lambda: _chat(b.url, key).status_code == 200 and up1.requests and up2.requests,
        "b routing to both channels",
        10,
    )
    ch_id = ch1["id"] if isinstance(ch1, dict) else ch1[0]["id"]

    a.api("PUT", "/api/channel/", json={"id": ch_id, "status": 2})
    time.sleep(1.0)  # the requirement: in effect on every replica within one second
    up1.requests.clear()
    up2.requests.clear()
    for _ in range(20):
        assert _chat(b.url, key).status_code == 200
    assert not up1.requests, "replica b still routes to the channel disabled on replica a"
    assert len(up2.requests) == 20


def test_token_disabled_on_one_replica_is_refused_by_the_other_within_one_second(
    replicas, fake_upstream
):
    a, b = replicas(2)
    a.api("POST", "/api/channel/", json={"type": 50, "name": "up", "base_url": fake_upstream.url,
                                         "models": "m"})  # fmt: skip
    created = a.api("POST", "/api/token/", json={"name": "tk", "unlimited_quota": True})
    key = created["key"]
    wait_for(lambda: _chat(b.url, key).status_code == 200, "b serving the token", 10)
    token_id = a.api("GET", "/api/token/", params={"keyword": "tk"})[0]["id"]
    a.api("PUT", "/api/token/", params={"status_only": 1}, json={"id": token_id, "status": 2})
    time.sleep(1.0)
    # b had the token cached (30 s TTL); only the invalidation can make it refuse now
    assert _chat(b.url, key).status_code == 401


def test_quota_holds_across_replicas_under_concurrent_load(replicas, fake_upstream):
    a, b = replicas(2)
    fake_upstream.reset(delay=1.0)  # every request reserves before any settles
    a.api("POST", "/api/channel/", json={"type": 50, "name": "up", "base_url": fake_upstream.url,
                                         "models": "m"})  # fmt: skip
    k = 6
    key = a.api("POST", "/api/token/", json={"name": "q", "unlimited_quota": False,
                                             "remain_quota": RESERVE * k})["key"]  # fmt: skip
    wait_for(lambda: b.api("GET", "/api/channel/", params={"page_size": 50}), "b up", 10)
    time.sleep(1.0)
    statuses = asyncio.run(_fire([a.url, b.url], key, 24))
    assert statuses.count(200) == k, statuses
    assert statuses.count(429) == 24 - k

    def settled() -> bool:
        token = a.api("GET", "/api/token/", params={"keyword": "q"})[0]
        return token["used_quota"] == CHARGE * k and token["remain_quota"] == (RESERVE - CHARGE) * k

    wait_for(settled, "usage settled on both replicas", 10)


def test_rpm_holds_across_replicas_under_concurrent_load(replicas, fake_upstream):
    a, b = replicas(2)
    a.api("POST", "/api/channel/", json={"type": 50, "name": "up", "base_url": fake_upstream.url,
                                         "models": "m"})  # fmt: skip
    key = a.api("POST", "/api/token/", json={"name": "r", "unlimited_quota": True, "rpm": 7})["key"]
    time.sleep(1.0)
    statuses = asyncio.run(_fire([a.url, b.url], key, 30))
    assert statuses.count(200) == 7, statuses
    assert statuses.count(429) == 23
