"""Admin UI sessions live in the database: two gateways on one database (here two servers on one
SQLite home) share them, a restart keeps them, the table holds only a hash of the session id, and
an ended session is refused everywhere -- at once for page loads, within the cache TTL for htmx
and /api calls without Redis, and through the cluster bus with Redis."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from admin_ui.auth import COOKIE
from admin_ui.sessions import IDLE_S
from tests.admin_ui.helpers import UIClient
from tests.conftest import REDIS_URL
from tests.scale.procs import wait_for
from tests.support.polling import ManualClock


def _with_cookie(url: str, cookie: str) -> UIClient:
    ui = UIClient(url)
    ui.http.cookies.set(COOKIE, cookie)
    return ui


def _page_ok(url: str, cookie: str) -> bool:
    """A full page load: always checked against the database."""
    resp = httpx.get(f"{url}/ui/tokens", cookies={COOKIE: cookie})
    return resp.status_code == 200


def _api_ok(url: str, cookie: str) -> bool:
    """An /api call made with the UI cookie: may be answered from the replica's cache."""
    resp = httpx.get(f"{url}/api/token/", cookies={COOKIE: cookie})
    return resp.status_code == 200


def _rows(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "modelport.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM adminsession")]


def _sql(home: Path, statement: str, *args: Any) -> None:
    with sqlite3.connect(home / "modelport.db") as conn:
        conn.execute(statement, args)


def test_a_session_made_on_one_gateway_works_on_the_other_with_csrf(make_gateway, tmp_path):
    a = make_gateway(home=tmp_path)
    b = make_gateway(home=tmp_path)
    ui = UIClient(a.url)
    ui.setup()
    ui.get("/ui/tokens")
    cookie = ui.http.cookies[COOKIE]
    on_b = _with_cookie(b.url, cookie)
    assert on_b.get("/ui/tokens").status_code == 200
    assert on_b.csrf == ui.csrf  # the CSRF token is derived from the session, not per process

    # CSRF is still enforced on b; the token a's page gave works there.
    assert on_b.post("/ui/tokens", {"name": "x"}, csrf=False).status_code == 403
    assert on_b.post("/ui/tokens", {"name": "x", "csrf_token": "forged"}).status_code == 403
    assert a.api("GET", "/api/token/") == []
    assert (
        on_b.post("/ui/tokens", {"name": "made-on-b", "unlimited_quota": "on"}).status_code == 303
    )
    # The new key and the flash message wait in the row: the redirect may land on a.
    after = UIClient(a.url)
    after.http.cookies.set(COOKIE, cookie)
    page = after.get("/ui/tokens")
    assert "copy the key now" in page.text
    found = re.search(r'id="new-key" readonly value="(sk-[^"]+)"', page.text)
    assert found, "the new key did not reach the page served by the other gateway"
    key = found.group(1)
    listed = httpx.get(f"{a.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200
    # Shown once: the next view on b no longer has it.
    again = on_b.get("/ui/tokens")
    assert key not in again.text and "copy the key now" not in again.text


def test_logout_on_one_gateway_is_refused_on_the_other_within_the_cache_ttl(make_gateway, tmp_path):
    a = make_gateway(home=tmp_path)
    b = make_gateway(home=tmp_path)
    ui = UIClient(a.url)
    ui.setup()
    cookie = ui.http.cookies[COOKIE]
    assert _api_ok(a.url, cookie)  # a now holds the session in its cache
    on_b = _with_cookie(b.url, cookie)
    on_b.get("/ui")
    assert on_b.post("/ui/logout").status_code == 303

    assert not _page_ok(b.url, cookie)
    # Whatever else may tell a, its cached copy lives at most cache_ttl_s: a's cache clock is
    # moved past that rather than waited for.
    sessions = a.app.state.services.ui.sessions
    sessions.cache_clock = ManualClock(sessions.cache_clock() + sessions.cache_ttl_s + 0.001)
    assert not _api_ok(a.url, cookie)
    assert not _page_ok(a.url, cookie)


def test_page_loads_see_a_logout_from_the_other_gateway_at_once(make_gateway, tmp_path):
    a = make_gateway(home=tmp_path)
    b = make_gateway(home=tmp_path)
    a.app.state.services.ui.sessions.cache_ttl_s = 3600
    ui = UIClient(a.url)
    ui.setup()
    cookie = ui.http.cookies[COOKIE]
    assert _api_ok(a.url, cookie) and _page_ok(a.url, cookie)
    on_b = _with_cookie(b.url, cookie)
    on_b.get("/ui")
    on_b.post("/ui/logout")
    assert not _page_ok(a.url, cookie)  # no bus, a long cache: the page load read the row
    assert not _api_ok(a.url, cookie)  # and dropped a's cached copy


def test_logout_reaches_the_other_gateway_through_redis(make_gateway, tmp_path):
    prefix = f"mpui-{secrets.token_hex(4)}"
    a = make_gateway(home=tmp_path, redis_url=REDIS_URL, redis_prefix=prefix)
    b = make_gateway(home=tmp_path, redis_url=REDIS_URL, redis_prefix=prefix)
    a.app.state.services.ui.sessions.cache_ttl_s = 3600  # only the bus can make a forget its copy
    first, second = UIClient(a.url), UIClient(a.url)
    first.setup()
    second.login()
    one, two = first.http.cookies[COOKIE], second.http.cookies[COOKIE]
    assert _api_ok(a.url, one) and _api_ok(a.url, two)

    on_b = _with_cookie(b.url, one)
    on_b.get("/ui")
    on_b.post("/ui/logout")
    wait_for(lambda: not _api_ok(a.url, one), "a refusing the session ended on b", 10)
    assert _api_ok(a.url, two)  # only that session ended

    # "Log out everywhere" on b ends every session of the user, a's cached ones included.
    third = UIClient(b.url)
    third.login()
    own = third.http.cookies[COOKIE]
    assert third.post("/ui/logout-all").headers["location"] == "/ui/login"
    wait_for(lambda: not _api_ok(a.url, two), "a refusing sessions after logout-all", 10)
    assert not _page_ok(b.url, own) and not _page_ok(a.url, own)
    assert _rows(tmp_path) == []


def test_a_session_survives_a_restart_but_not_a_new_secret(make_gateway, tmp_path):
    first = make_gateway(home=tmp_path, secret_key="the-first-secret-key-0123456789")
    ui = UIClient(first.url)
    ui.setup()
    cookie = ui.http.cookies[COOKIE]
    first.stop()

    again = make_gateway(home=tmp_path, secret_key="the-first-secret-key-0123456789")
    assert _page_ok(again.url, cookie) and _api_ok(again.url, cookie)
    again.stop()

    rotated = make_gateway(home=tmp_path, secret_key="a-rotated-secret-key-9876543210")
    assert not _page_ok(rotated.url, cookie) and not _api_ok(rotated.url, cookie)


def test_the_database_holds_no_usable_session_id(make_gateway, tmp_path):
    gw = make_gateway(home=tmp_path)
    ui = UIClient(gw.url)
    ui.setup()
    ui.post("/ui/tokens", {"name": "t", "unlimited_quota": "on"})  # a key waits in the row
    cookie = ui.http.cookies[COOKIE]
    sid = cookie.rsplit(".", 1)[0]
    (row,) = _rows(tmp_path)
    assert row["id_hash"] == hashlib.sha256(sid.encode()).hexdigest()
    dump = repr(row)
    assert sid not in dump and cookie not in dump
    assert "sk-" not in dump  # the waiting token key is encrypted

    # Even someone holding the server secret cannot turn the stored hash into a cookie.
    store = gw.app.state.services.ui.sessions
    from_leak = store.cookie_value(store.anonymous(row["id_hash"]))
    assert not _page_ok(gw.url, from_leak) and not _api_ok(gw.url, from_leak)
    assert _page_ok(gw.url, cookie)


def test_expired_sessions_are_refused_and_purged_at_login(make_gateway, tmp_path):
    gw = make_gateway(home=tmp_path)
    idle, old = UIClient(gw.url), UIClient(gw.url)
    idle.setup()
    old.login()
    idle_sid = idle.http.cookies[COOKIE].rsplit(".", 1)[0]
    old_sid = old.http.cookies[COOKIE].rsplit(".", 1)[0]
    now = int(time.time())
    _sql(
        tmp_path,
        "UPDATE adminsession SET seen_at = ? WHERE id_hash = ?",
        now - IDLE_S - 1,
        hashlib.sha256(idle_sid.encode()).hexdigest(),
    )
    _sql(
        tmp_path,
        "UPDATE adminsession SET expires_at = ? WHERE id_hash = ?",
        now - 1,
        hashlib.sha256(old_sid.encode()).hexdigest(),
    )
    for ui in (idle, old):
        assert ui.get("/ui/tokens").headers["location"].startswith("/ui/login")
        assert ui.http.get("/api/token/").status_code == 401
        assert ui.post("/ui/tokens", {"name": "late"}).status_code == 403
    assert gw.api("GET", "/api/token/") == []

    assert len(_rows(tmp_path)) == 2
    UIClient(gw.url).login()
    assert len(_rows(tmp_path)) == 1  # the two expired rows went at this login
