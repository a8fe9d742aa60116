"""What a cluster does when Redis, PostgreSQL, a node or a replica goes away, and how fast it
recovers (README "Running a cluster"). Real `modelport serve` replicas on one PostgreSQL and one
Redis, a real `modelport node`, default settings; one replica reaches Redis and PostgreSQL
through TCP relays the script cuts, so only that replica loses them.

    python bench/cluster/failures.py        # ~1 min; needs PostgreSQL and Redis on 127.0.0.1

Each figure is the time from the fault (or the repair) until a poll every 50 ms first sees the
new behaviour, so it includes up to 50 ms of polling.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common.report import table, write_results
from tests.conftest import PG_URL, REDIS_URL
from tests.scale.procs import Node, Replica, TcpProxy, wait_for
from tests.support.fake_openai import FakeOpenAI

MSG = [{"role": "user", "content": "hi"}]
NODE_TOKEN = "bench-node-token-" + secrets.token_hex(8)


def since(t0: float, check: Callable[[], Any], limit_s: float = 60.0) -> float:
    wait_for(check, "the expected behaviour", limit_s)
    return time.monotonic() - t0


def chat(url: str, key: str, timeout: float = 30) -> int:
    try:
        return httpx.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "m", "messages": MSG},
            timeout=timeout,
        ).status_code
    except httpx.HTTPError:
        return 0


def health(url: str, path: str = "/health") -> tuple[int, str]:
    r = httpx.get(f"{url}{path}", timeout=5)
    return r.status_code, r.json()["status"]


def token(gw: Replica, name: str, **extra: Any) -> str:
    body = {"name": name, "unlimited_quota": True, **extra}
    return str(gw.api("POST", "/api/token/", json=body)["key"])


def run(home: Path, db_url: str, upstream: FakeOpenAI) -> list[dict[str, Any]]:
    redis_host, redis_port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    pg = db_url.removeprefix("postgresql+psycopg://")
    pg_host, pg_port = pg.split("@")[1].split("/")[0].split(":")
    to_redis, to_pg = TcpProxy((redis_host, int(redis_port))), TcpProxy((pg_host, int(pg_port)))
    common = {"MODELPORT_REDIS_PREFIX": f"mpbench-{secrets.token_hex(4)}",
              "MODELPORT_NODE_TOKEN": NODE_TOKEN, "MODELPORT_LOG_LEVEL": "ERROR"}  # fmt: skip
    a = Replica(home / "a", {**common, "MODELPORT_REDIS_URL": f"redis://127.0.0.1:{to_redis.port}/0",
                             "MODELPORT_DATABASE_URL": db_url.replace(
                                 f"{pg_host}:{pg_port}", f"127.0.0.1:{to_pg.port}")})  # fmt: skip
    b = Replica(home / "b", {**common, "MODELPORT_REDIS_URL": REDIS_URL,
                             "MODELPORT_DATABASE_URL": db_url})  # fmt: skip
    c = Replica(home / "c", {**common, "MODELPORT_REDIS_URL": REDIS_URL,
                             "MODELPORT_DATABASE_URL": db_url})  # fmt: skip
    node = Node(home / "node", gateway=b.url, token=NODE_TOKEN, node_id="gpu-n")
    rows: list[dict[str, Any]] = []
    try:
        for r in (a, b, c):
            r.ready()
        b.api("POST", "/api/channel/", json={"type": 50, "name": "up", "models": "m",
                                             "base_url": upstream.url})  # fmt: skip
        plain, limited = token(b, "plain"), token(b, "limited", rpm=1000)
        wait_for(lambda: chat(a.url, plain) == 200 and chat(a.url, limited) == 200, "a serving")
        wait_for(lambda: "gpu-n" in {n["node_id"] for n in b.api("GET", "/api/nodes")}, "node")

        # --- Redis lost by replica a -----------------------------------------------------------
        t0 = time.monotonic()
        to_redis.cut()
        degraded = since(t0, lambda: health(a.url) == (200, "degraded"))
        limited_status = chat(a.url, limited)
        t1 = time.monotonic()
        token_id = b.api("GET", "/api/token/", params={"keyword": "plain"})[0]["id"]
        b.api("PUT", "/api/token/", params={"status_only": 1}, json={"id": token_id, "status": 2})
        disable = since(t1, lambda: chat(a.url, plain) == 401)
        b.api("PUT", "/api/token/", params={"status_only": 1}, json={"id": token_id, "status": 1})
        ready = health(a.url, "/health/ready")
        t2 = time.monotonic()
        to_redis.resume()
        back = since(t2, lambda: health(a.url) == (200, "ok") and chat(a.url, limited) == 200)
        rows.append({"fault": "Redis lost by one replica",
                     "effect": f"/health degraded after {degraded:.2f}s, readiness {ready[0]}; "
                               f"rate-limited tokens {limited_status} there; a token disabled on "
                               f"another replica refused there after {disable:.2f}s (change log)",
                     "recovered_s": round(back, 2)})  # fmt: skip

        # --- PostgreSQL lost by replica a ------------------------------------------------------
        wait_for(lambda: chat(a.url, plain) == 200, "plain re-enabled on a")
        t0 = time.monotonic()
        to_pg.cut()
        unready = since(t0, lambda: health(a.url, "/health/ready")[0] == 503)
        fresh = token(b, "fresh")  # created while a cannot read the database
        known, unknown = chat(a.url, plain), chat(a.url, fresh)
        t1 = time.monotonic()
        to_pg.resume()
        back = since(t1, lambda: health(a.url, "/health/ready")[0] == 200
                     and chat(a.url, fresh) == 200)  # fmt: skip
        rows.append({"fault": "PostgreSQL lost by one replica",
                     "effect": f"readiness 503 after {unready:.2f}s; a cached token {known}, "
                               f"a token not seen yet {unknown}",
                     "recovered_s": round(back, 2)})  # fmt: skip

        # --- a node lost (SIGKILL) -------------------------------------------------------------
        t0 = time.monotonic()
        node.kill()
        gone = since(t0, lambda: "gpu-n" not in {n["node_id"] for n in b.api("GET", "/api/nodes")})
        rows.append({"fault": "node SIGKILLed", "effect": f"out of routing after {gone:.2f}s "
                     "(node_ttl_s 3)", "recovered_s": None})  # fmt: skip

        # --- a replica lost (SIGKILL) holding concurrency slots ----------------------------------
        slots = token(b, "slots", max_concurrency=2)
        upstream.reset(delay=40.0)
        for _ in range(2):
            threading.Thread(target=chat, args=(c.url, slots, 60), daemon=True).start()
        wait_for(lambda: len(upstream.requests) >= 2, "two requests held on c")
        refused = chat(b.url, slots)
        t0 = time.monotonic()
        c.kill()
        upstream.reset()
        freed = since(t0, lambda: chat(b.url, slots) == 200)
        rows.append({"fault": "replica SIGKILLed with 2 slots of a max_concurrency=2 token",
                     "effect": f"the token {refused} elsewhere until the slots expire",
                     "recovered_s": round(freed, 2)})  # fmt: skip
    finally:
        node.stop()
        for r in (a, b, c):
            r.stop()
        to_redis.cut()
        to_pg.cut()
    return rows


def main() -> None:
    name = f"mp_bench_{secrets.token_hex(4)}"
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    upstream = FakeOpenAI("up").start()
    try:
        with TemporaryDirectory(prefix="modelport-bench-") as home:
            rows = run(Path(home), PG_URL.rsplit("/", 1)[0] + f"/{name}", upstream)
    finally:
        upstream.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    columns = [("fault", "fault"), ("effect", "what it does"), ("recovered_s", "recovered (s)")]
    markdown = table(rows, columns, digits=2)
    print(markdown)
    write_results("cluster", "failures", {"rows": rows}, markdown)


if __name__ == "__main__":
    main()
