"""A replica that loses Redis while the others keep it (issue 20): it says so on /health (200,
"degraded") and stays ready (/health/ready 200: the database works), limited tokens keep working
(their limits count per replica meanwhile), admin changes made on the other replica still reach it through the database change log within about a second, and a node
heartbeating only to it is not evicted from the other replica (node records live in the
database)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import REDIS_URL
from tests.gateway.faults.helpers import TcpProxy
from tests.scale.procs import Node, Replica, connected, wait_for

NODE_TOKEN = "node-shared-secret-0123456789"
MSG = [{"role": "user", "content": "hi"}]


def _chat(url: str, key: str) -> int:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": MSG},
        timeout=30,
    ).status_code


def test_a_replica_without_redis_is_degraded_but_serves_and_evicts_no_node(
    tmp_path: Path, pg_url: str, fake_upstream
):
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    proxy = TcpProxy(host, int(port))
    common = {
        "MODELPORT_DATABASE_URL": pg_url,
        "MODELPORT_REDIS_PREFIX": f"mpdeg-{tmp_path.name}",
        "MODELPORT_NODE_TOKEN": NODE_TOKEN,
        "MODELPORT_NODE_TTL_S": "2",
    }
    a = Replica(
        tmp_path / "a", {**common, "MODELPORT_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
    )
    b = Replica(tmp_path / "b", {**common, "MODELPORT_REDIS_URL": REDIS_URL})
    node = Node(tmp_path / "node", gateway=a.url, token=NODE_TOKEN, node_id="gpu-a")
    try:
        a.ready()
        b.ready()
        assert httpx.get(f"{a.url}/health").json() == {"status": "ok"}
        b.api("POST", "/api/channel/", json={"type": 50, "name": "up", "models": "m",
                                             "base_url": fake_upstream.url})  # fmt: skip
        key = b.api("POST", "/api/token/", json={"name": "t", "unlimited_quota": True})["key"]
        limited = b.api("POST", "/api/token/", json={"name": "l", "unlimited_quota": True,
                                                     "rpm": 1000})["key"]  # fmt: skip
        wait_for(lambda: _chat(a.url, key) == 200, "a serving b's token", 10)
        connected(b, {"gpu-a"})

        proxy.cut()
        health = wait_for(
            lambda: (
                (h := httpx.get(f"{a.url}/health", timeout=10)).json()["status"] == "degraded" and h
            ),
            "a reporting degraded",
            20,
        )
        assert health.status_code == 200 and health.json()["degraded"] == ["redis"]
        assert "unreachable" in health.json()["redis"]
        ready = httpx.get(f"{a.url}/health/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert httpx.get(f"{b.url}/health").json() == {"status": "ok"}
        # its limits count per replica meanwhile, instead of a 503 for every limited token
        assert _chat(a.url, limited) == 200

        token_id = b.api("GET", "/api/token/", params={"keyword": "t"})[0]["id"]
        b.api("PUT", "/api/token/", params={"status_only": 1}, json={"id": token_id, "status": 2})
        disabled = time.monotonic()
        wait_for(lambda: _chat(a.url, key) == 401, "the disable reaching a without Redis", 10)
        print(f"token disable reached the Redis-less replica in {time.monotonic() - disabled:.2f}s")

        # the node heartbeats only to `a`; b keeps it for many TTLs
        deadline = time.monotonic() + 4 * 2.0
        while time.monotonic() < deadline:
            assert "gpu-a" in {n["node_id"] for n in b.api("GET", "/api/nodes")}
            time.sleep(0.2)
    finally:
        node.stop()
        a.stop()
        b.stop()
        proxy.stop()
