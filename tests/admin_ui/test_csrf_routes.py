"""Every unsafe /ui route refuses a request without its CSRF token (README, Admin UI: "every form
and htmx call carries a CSRF token"). The routes are enumerated from the running app, so a route
added later is covered without editing this test: each POST/PUT/PATCH/DELETE under /ui is sent,
from a logged-in session, once with no token at all and once with a wrong one, as a form and as
an htmx call; every answer must be 403 and nothing may change."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from tests.admin_ui.helpers import UIClient
from tests.conftest import Gateway

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _contexts(routes):
    """(path, route) of every route, flattening FastAPI's included routers (lazy since 0.16x)."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):  # fastapi.routing._IncludedRouter
            for ctx in route.effective_route_contexts():
                yield ctx.path, ctx.original_route
        else:
            yield getattr(route, "path", ""), route


def unsafe_ui_routes(app) -> list[tuple[str, str]]:
    found = set()
    for path, route in _contexts(app.routes):
        methods = getattr(route, "methods", None) or set()
        if path.startswith("/ui"):
            found.update((m, path) for m in methods & UNSAFE)
    return sorted(found)


def _fill(path: str, channel_id: int, token_id: int) -> str:
    """Real ids where a route names a channel or a token, so a refusal is not a 404."""
    ids = {"channel": channel_id, "token": token_id}

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        return str(next((v for k, v in ids.items() if k in path), 1)) if "id" in name else "x"

    return re.sub(r"\{([^}:]+)(?::[^}]+)?\}", one, path)


def _state(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "modelport.db") as db:
        return [
            *db.execute("SELECT id, name, status FROM channel ORDER BY id"),
            *db.execute("SELECT id, name, status FROM token ORDER BY id"),
            *db.execute("SELECT username, password_hash FROM adminuser"),
        ]


def test_every_unsafe_ui_route_refuses_a_request_without_its_csrf_token(
    make_gateway, tmp_path: Path
) -> None:
    gw: Gateway = make_gateway(home=tmp_path)
    routes = unsafe_ui_routes(gw.app)
    assert ("POST", "/ui/tokens") in routes and ("POST", "/ui/logout") in routes
    assert len(routes) >= 10, routes  # the enumeration found the UI, not an empty app
    channel_id = gw.add_channel(name="kept", base_url="http://127.0.0.1:9", models="m")["id"]
    gw.create_token(name="kept")
    token_id = gw.api("GET", "/api/token/")[0]["id"]
    ui = UIClient(gw.url)
    assert ui.setup().status_code == 303
    ui.get("/ui")
    assert ui.csrf
    before = _state(tmp_path)
    accepted = []
    for method, template in routes:
        path = _fill(template, channel_id, token_id)
        attempts = [
            ({}, {"name": "x"}),  # a form without the field
            ({}, {"name": "x", "csrf_token": "forged"}),
            ({"HX-Request": "true"}, None),  # an htmx call without the header
            ({"HX-Request": "true", "X-CSRF-Token": "forged"}, None),
        ]
        for headers, form in attempts:
            r = ui.http.request(method, path, headers=headers, data=form)
            if r.status_code != 403:
                accepted.append((method, path, headers, form, r.status_code, r.text[:200]))
    assert not accepted, accepted
    assert _state(tmp_path) == before
    # the session itself still works: the refusals were about the token, not a broken login
    assert ui.post("/ui/tokens", {"name": "with-token", "unlimited_quota": "on"}).status_code == 303


PUBLIC_API = {"/api/status"}  # gateway.admin_api.status: the version, for One API's frontend


def api_routes(app) -> list[tuple[str, str]]:
    found = set()
    for path, route in _contexts(app.routes):
        if path.startswith("/api") and path not in PUBLIC_API:
            found.update((m, path) for m in (getattr(route, "methods", None) or set()) - {"HEAD"})
    return sorted(found)


def _api_state(home: Path) -> list[tuple]:
    """Whole rows: a probe (test_time, last_error) or a balance query would show here."""
    with sqlite3.connect(home / "modelport.db") as db:
        return [
            *db.execute("SELECT * FROM channel ORDER BY id"),
            *db.execute("SELECT id, name, status, key_hash FROM token ORDER BY id"),
            *db.execute("SELECT * FROM modelprice ORDER BY model"),
        ]


def test_a_ui_session_alone_acts_on_no_api_route_for_another_site(
    make_gateway, fake_upstream, tmp_path: Path
) -> None:
    """What a page on another site can make a logged-in admin's browser send: unsafe methods
    without the X-CSRF-Token header (a form or a no-cors fetch cannot set it), and GETs as a
    top-level navigation, which carries the SameSite=Lax cookie. Every /api route refuses all of
    them; in particular `GET /api/channel/test` (probes every channel at the providers' prices)
    and `GET /api/channel/update_balance` (sends the stored keys out) do nothing."""
    gw: Gateway = make_gateway(home=tmp_path)
    routes = api_routes(gw.app)
    for must in (
        ("GET", "/api/channel/test"),
        ("GET", "/api/channel/update_balance"),
        ("DELETE", "/api/channel/disabled"),
        ("PUT", "/api/option/"),
        ("POST", "/api/price/"),
        ("POST", "/api/import/one-api"),
        ("PUT", "/api/export/fastgpt/overrides"),
    ):
        assert must in routes, must
    channel_id = gw.add_channel(
        name="paid", type=8, base_url=fake_upstream.url, key="sk-upstream", models="m"
    )["id"]
    gw.api("PUT", "/api/channel/", json={"id": channel_id, "status": 2})  # one to delete
    gw.create_token(name="kept")
    token_id = gw.api("GET", "/api/token/")[0]["id"]
    ui = UIClient(gw.url)
    assert ui.setup().status_code == 303
    ui.get("/ui")
    before = _api_state(tmp_path)
    fake_upstream.requests.clear()
    cross_site = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    accepted = []
    for method, template in routes:
        path = _fill(template, channel_id, token_id)
        attempts: list[dict[str, str]] = [cross_site, {"Sec-Fetch-Site": "same-site"}]
        if method in UNSAFE:
            attempts += [{}, {"X-CSRF-Token": "forged"}]
        for headers in attempts:
            r = ui.http.request(method, path, headers=headers, json={"model": "m"})
            if r.status_code not in (401, 403):
                accepted.append((method, path, headers, r.status_code, r.text[:200]))
    assert not accepted, accepted
    assert _api_state(tmp_path) == before
    assert fake_upstream.requests == []
    # the session still reads /api/* from the gateway's own origin, or with no Sec-Fetch-Site
    own = ui.http.get("/api/token/", headers={"Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200 and own.json()["success"]
