"""Admin UI sessions over plain HTTP: first-start setup, cookie flags, CSRF, login rate limit,
logout, and the admin API accepting a UI session only with the CSRF header on unsafe methods."""

from __future__ import annotations

import httpx

from tests.admin_ui.helpers import PASSWORD, UIClient, csrf_of
from tests.conftest import ADMIN_TOKEN


def test_first_start_asks_for_the_password_then_logs_in(gateway):
    ui = UIClient(gateway.url)
    assert ui.get("/").headers["location"] == "/ui"
    assert ui.get("/ui").headers["location"].startswith("/ui/login")
    assert ui.get("/ui/login").headers["location"] == "/ui/setup"
    page = ui.get("/ui/setup")
    assert page.status_code == 200 and "admin token" in page.text

    short = ui.post(
        "/ui/setup",
        {"username": "admin", "password": "short", "confirm": "short", "admin_token": ADMIN_TOKEN},
    )
    assert short.status_code == 400 and "at least 8" in short.text
    done = ui.setup()
    assert done.status_code == 303 and done.headers["location"] == "/ui"
    assert ui.get("/ui").status_code == 200

    # Setup is gone once an admin exists; a second visitor cannot reset the password.
    other = UIClient(gateway.url)
    assert other.get("/ui/setup").headers["location"] == "/ui/login"
    other.get("/ui/login")
    again = other.post("/ui/setup", {"username": "x", "password": "p" * 10, "confirm": "p" * 10})
    assert again.headers["location"] == "/ui/login"
    assert other.login(password="p" * 10, username="x").status_code == 401
    assert UIClient(gateway.url).login().status_code == 303


def test_admin_password_setting_creates_the_admin(make_gateway):
    gw = make_gateway(admin_password="from-the-environment")
    ui = UIClient(gw.url)
    assert ui.get("/ui/setup").headers["location"] == "/ui/login"
    assert ui.login(password="from-the-environment").status_code == 303
    assert ui.get("/ui/tokens").status_code == 200


def test_session_cookie_flags(gateway):
    UIClient(gateway.url).setup()
    ui = UIClient(gateway.url)
    resp = ui.login()
    cookie = resp.headers["set-cookie"].lower()
    assert "modelport_session=" in cookie
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http here: a Secure cookie would never come back
    ui = UIClient(gateway.url)
    ui.get("/ui/login")
    https = ui.http.post(
        "/ui/login",
        data={"username": "admin", "password": PASSWORD, "csrf_token": ui.csrf},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "secure" in https.headers["set-cookie"].lower()


def test_forms_without_a_valid_csrf_token_are_refused(gateway):
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get("/ui/tokens")
    assert ui.post("/ui/tokens", {"name": "x"}, csrf=False).status_code == 403
    assert ui.post("/ui/tokens", {"name": "x", "csrf_token": "forged"}).status_code == 403
    assert (
        ui.http.post("/ui/channels/1/delete", headers={"X-CSRF-Token": "nope"}).status_code == 403
    )
    assert gateway.api("GET", "/api/token/") == []  # nothing was created
    ok = ui.post("/ui/tokens", {"name": "x", "unlimited_quota": "on"})
    assert ok.status_code == 303
    assert [t["name"] for t in gateway.api("GET", "/api/token/")] == ["x"]

    # The login form is protected too (login CSRF), and a token from another session is useless.
    anon = UIClient(gateway.url)
    anon.get("/ui/login")
    stolen = anon.csrf
    assert (
        anon.post("/ui/login", {"username": "admin", "password": PASSWORD}, csrf=False).status_code
        == 403
    )
    assert ui.post("/ui/tokens", {"name": "y", "csrf_token": stolen}).status_code == 403


def test_forged_or_unknown_session_cookies_are_ignored(gateway):
    ui = UIClient(gateway.url)
    ui.setup()
    value = ui.http.cookies["modelport_session"]
    sid, _sig = value.rsplit(".", 1)
    forged = httpx.Client(base_url=gateway.url, cookies={"modelport_session": f"{sid}.{'0' * 64}"})
    assert forged.get("/ui", follow_redirects=False).status_code == 303
    made_up = httpx.Client(base_url=gateway.url, cookies={"modelport_session": "abc.def"})
    assert made_up.get("/ui", follow_redirects=False).status_code == 303


def test_login_rate_limit_per_username_and_per_ip(gateway):
    ui = UIClient(gateway.url)
    ui.setup()
    attacker = UIClient(gateway.url)
    attacker.get("/ui/login")
    for _ in range(5):
        assert (
            attacker.post("/ui/login", {"username": "admin", "password": "wrong"}).status_code
            == 401
        )
    limited = attacker.post("/ui/login", {"username": "admin", "password": PASSWORD})
    assert limited.status_code == 429
    assert "too many failed logins" in limited.text and "seconds" in limited.text
    # Per IP as well: another username from the same address is limited too.
    other = attacker.post("/ui/login", {"username": "someone", "password": "x"})
    assert other.status_code == 429


def test_logout_invalidates_the_session(gateway):
    ui = UIClient(gateway.url)
    ui.setup()
    old_cookie = ui.http.cookies["modelport_session"]
    ui.get("/ui")
    assert ui.post("/ui/logout", csrf=False).status_code == 403  # logout needs the token too
    out = ui.post("/ui/logout")
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    replay = httpx.Client(base_url=gateway.url, cookies={"modelport_session": old_cookie})
    assert replay.get("/ui", follow_redirects=False).status_code == 303
    assert replay.get("/api/channel/").status_code == 401


def test_admin_api_accepts_a_session_but_unsafe_methods_need_the_csrf_header(gateway):
    ui = UIClient(gateway.url)
    ui.setup()
    page = ui.get("/ui")
    token = csrf_of(page.text)
    listed = ui.http.get("/api/token/")
    assert listed.status_code == 200 and listed.json()["success"]

    refused = ui.http.post("/api/token/", json={"name": "csrf", "unlimited_quota": True})
    assert refused.status_code == 401 and not refused.json()["success"]
    wrong = ui.http.post("/api/token/", json={"name": "csrf"}, headers={"X-CSRF-Token": "bad"})
    assert wrong.status_code == 401
    assert gateway.api("GET", "/api/token/") == []

    allowed = ui.http.post(
        "/api/token/",
        json={"name": "csrf", "unlimited_quota": True},
        headers={"X-CSRF-Token": token},
    )
    assert allowed.json()["success"], allowed.text
    # Without any session the API still wants the admin token.
    assert httpx.get(f"{gateway.url}/api/token/").status_code == 401
