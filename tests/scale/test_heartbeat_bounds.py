"""An oversized heartbeat (issue 20): 3,000 listed workers (176 KiB) froze both gateways, /health
included, for 37.5 s. A heartbeat is now bounded in bytes (413, before it is parsed) and in
workers (400 naming the setting), parsed off the event loop, and applying an unchanged one only
refreshes its TTL."""

from __future__ import annotations

import threading
import time

import httpx
import orjson

from tests.conftest import REDIS_URL
from tests.scale.procs import beat

NODE_TOKEN = "node-shared-secret-0123456789"


def _workers(n: int) -> list[dict]:
    return [
        {"uid": f"model-{i}", "base_url": f"http://127.0.0.1:{10000 + i}/v1", "key_id": f"{i:016x}"}
        for i in range(n)
    ]


def test_health_answers_while_huge_heartbeats_arrive_and_they_are_refused(
    make_gateway, pg_url: str, tmp_path
):
    gw = make_gateway(
        node_token=NODE_TOKEN,
        database_url=pg_url,
        redis_url=REDIS_URL,
        redis_prefix=f"mpbound-{tmp_path.name}",
        node_max_workers=256,
    )
    huge = {"node_id": "flood", "workers": _workers(3000)}
    raw = orjson.dumps(huge)
    assert len(raw) > 176 * 1024

    statuses: list[int] = []
    done = threading.Event()

    def flood() -> None:
        while not done.is_set():
            statuses.append(beat(gw.url, NODE_TOKEN, huge, raw=raw).status_code)

    senders = [threading.Thread(target=flood) for _ in range(4)]
    for t in senders:
        t.start()
    try:
        health, slowest = [], 0.0
        while len(statuses) < 40:  # /health keeps answering through the whole flood
            t0 = time.monotonic()
            health.append(httpx.get(f"{gw.url}/health", timeout=10).status_code)
            slowest = max(slowest, time.monotonic() - t0)
    finally:
        done.set()
        for t in senders:
            t.join(60)
    assert set(health) == {200} and len(health) >= 1
    print(f"{len(statuses)} refused heartbeats of {len(raw)} bytes; slowest /health {slowest:.3f}s")
    assert set(statuses) == {413}, set(statuses)

    # under the byte limit but over the worker bound: 400 naming the setting
    r = beat(gw.url, NODE_TOKEN, {"node_id": "many", "workers": _workers(300)})
    assert r.status_code == 400 and "node_max_workers" in r.json()["message"]
    # at the bound it is accepted, and repeating it changes nothing
    for _ in range(3):
        r = beat(gw.url, NODE_TOKEN, {"node_id": "many", "workers": _workers(256)})
        assert r.status_code == 200, r.text
    (node,) = [n for n in gw.api("GET", "/api/nodes") if n["node_id"] == "many"]
    assert len(node["workers"]) == 256
    assert "flood" not in {n["node_id"] for n in gw.api("GET", "/api/nodes")}
