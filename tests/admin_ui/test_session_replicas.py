"""Admin UI sessions behind two gateway replicas (separate `modelport serve` processes) on one
PostgreSQL and one Redis, the way a load balancer without sticky sessions would use them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from admin_ui.auth import COOKIE
from admin_ui.sessions import CACHE_TTL_S
from tests.admin_ui.helpers import UIClient
from tests.conftest import REDIS_URL
from tests.scale.procs import Replica, wait_for


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[Callable[[int], list[Replica]]]:
    started: list[Replica] = []
    env = {
        "MODELPORT_DATABASE_URL": pg_url,
        "MODELPORT_REDIS_URL": REDIS_URL,
        "MODELPORT_REDIS_PREFIX": f"mpui-{secrets.token_hex(4)}",
        "MODELPORT_ADMIN_PASSWORD": "replica-admin-password",
    }

    def start(n: int) -> list[Replica]:
        new = [Replica(tmp_path / f"r{len(started) + i}", env) for i in range(n)]
        started.extend(new)
        return [r.ready() for r in new]

    yield start
    for r in started:
        r.stop()


def _status(url: str, path: str, cookie: str) -> int:
    return httpx.get(f"{url}{path}", cookies={COOKIE: cookie}, timeout=30).status_code


def test_login_on_one_replica_logout_on_the_other(replicas, pg_url):
    a, b = replicas(2)
    ui = UIClient(a.url)
    assert ui.login(password="replica-admin-password").status_code == 303
    cookie = ui.http.cookies[COOKIE]
    assert _status(a.url, "/api/token/", cookie) == 200  # a caches the session

    on_b = UIClient(b.url)
    on_b.http.cookies.set(COOKIE, cookie)
    assert on_b.get("/ui/tokens").status_code == 200
    assert on_b.post("/ui/tokens", {"name": "from-b", "unlimited_quota": "on"}).status_code == 303
    assert [t["name"] for t in a.api("GET", "/api/token/")] == ["from-b"]

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        stored = [r[0] for r in conn.execute("SELECT id_hash FROM adminsession")]
    assert len(stored) == 1 and cookie.rsplit(".", 1)[0] not in stored

    assert on_b.post("/ui/logout").status_code == 303
    # With Redis the logout reaches a's cache at once (documented: within a second, a latency
    # for bench/). Polled with a bound under the cache's 5 s lifetime, so only the invalidation
    # can pass this, never the cached copy expiring.
    wait_for(
        lambda: _status(a.url, "/api/token/", cookie) == 401,
        "a to drop the session logged out on b",
        CACHE_TTL_S - 1,
    )
    assert _status(a.url, "/ui/tokens", cookie) == 303


def test_a_session_outlives_the_replicas_that_made_it(replicas):
    (a,) = replicas(1)
    ui = UIClient(a.url)
    ui.login(password="replica-admin-password")
    cookie = ui.http.cookies[COOKIE]
    a.stop()
    (c,) = replicas(1)
    assert _status(c.url, "/ui/tokens", cookie) == 200
    assert _status(c.url, "/api/token/", cookie) == 200
