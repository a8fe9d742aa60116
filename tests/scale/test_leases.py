"""Concurrency slots across replicas on PostgreSQL + Redis (issue 20): a slot lives as long as
its request, however long that is, and no longer than `concurrency_lease_ttl_s` after its holder
dies (SIGKILL) -- before, a killed replica's slots were held for 960 s, refusing the token on
every other replica."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.conftest import REDIS_URL
from tests.scale.procs import Replica, wait_for

TTL = 2.0
MSG = [{"role": "user", "content": "hi"}]


def _chat(url: str, key: str, timeout: float = 30) -> int:
    try:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "m", "messages": MSG},
            timeout=timeout,
        )
    except httpx.HTTPError:
        return 0  # the killed replica's connections
    return r.status_code


def test_a_killed_replicas_slots_come_back_within_the_lease_ttl(
    tmp_path: Path, pg_url: str, fake_upstream
):
    env = {
        "MODELPORT_DATABASE_URL": pg_url,
        "MODELPORT_REDIS_URL": REDIS_URL,
        "MODELPORT_REDIS_PREFIX": f"mplease-{tmp_path.name}",
        "MODELPORT_CONCURRENCY_LEASE_TTL_S": str(TTL),
    }
    a, b = Replica(tmp_path / "a", env), Replica(tmp_path / "b", env)
    try:
        a.ready()
        b.ready()
        a.api("POST", "/api/channel/", json={"type": 50, "name": "up", "models": "m",
                                             "base_url": fake_upstream.url})  # fmt: skip
        key = a.api("POST", "/api/token/", json={"name": "c", "unlimited_quota": True,
                                                 "max_concurrency": 2})["key"]  # fmt: skip
        wait_for(lambda: _chat(b.url, key) == 200, "b serving the token", 20)

        fake_upstream.reset(delay=20.0)  # the two requests on `a` hold their slots
        held = [threading.Thread(target=_chat, args=(a.url, key, 90), daemon=True) for _ in "ab"]
        for t in held:
            t.start()
        wait_for(lambda: len(fake_upstream.requests) == 2, "both requests upstream", 20)
        assert _chat(b.url, key) == 429
        # live requests keep their slots past the TTL (refreshed while they run)
        time.sleep(3 * TTL)
        assert _chat(b.url, key) == 429

        a.kill()
        fake_upstream.reset()
        killed = time.monotonic()
        wait_for(lambda: _chat(b.url, key) == 200, "the dead replica's slots freed", 10 * TTL)
        print(f"slots back {time.monotonic() - killed:.1f}s after SIGKILL (lease TTL {TTL}s)")
    finally:
        a.stop()
        b.stop()
