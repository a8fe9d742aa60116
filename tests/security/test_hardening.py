"""Hardening defaults (issue 14).

Before: the SQLite database (hashed keys, encrypted channel keys, usage) and everything else
`modelport serve` created followed the umask (0644: readable by every local user); the UI sent
no CSP, could be framed (clickjacking) and leaked its URLs in Referer; /docs pulled Swagger UI
from a CDN. Now files are owner-only, the UI pages carry a CSP that fits them (the browser tests
in tests/admin_ui/test_browser*.py run under it), X-Frame-Options DENY, no-referrer and nosniff,
and /docs and /redoc exist only when MODELPORT_DOCS=1.
"""

from __future__ import annotations

import stat
from pathlib import Path

import httpx

from admin_ui.headers import CSP
from tests.scale.procs import Replica


def _loose(paths: list[Path]) -> list[str]:
    return [f"{p} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in paths if p.stat().st_mode & 0o077]


def test_the_sqlite_database_is_owner_only(make_gateway, tmp_path):
    home = tmp_path / "home"
    gw = make_gateway(home=home)
    gw.create_token(name="t")  # a write: the WAL and shared-memory files exist now
    files = [home / n for n in ("modelport.db", "modelport.db-wal", "modelport.db-shm")]
    assert all(f.exists() for f in files)
    assert _loose(files) == []


def test_serve_creates_nothing_other_users_can_read(tmp_path):
    home = tmp_path / "home"
    replica = Replica(home, {}).ready()
    try:
        replica.api("POST", "/api/token/", json={"name": "t", "unlimited_quota": True})
        created = [p for p in home.rglob("*") if p.name != "serve.log"]  # serve.log: the test's
        assert any(p.name == "modelport.db" for p in created)
        assert _loose(created) == []
    finally:
        replica.stop()


def test_ui_pages_carry_the_security_headers(gateway):
    for path in ("/ui/login", "/ui/setup", "/ui/static/app.js"):
        r = httpx.get(f"{gateway.url}{path}")
        assert r.headers["content-security-policy"] == CSP, path
        assert "frame-ancestors 'none'" in CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_api_answers_are_not_sniffed_and_send_no_referrer(gateway):
    r = httpx.get(f"{gateway.url}/v1/models")
    assert r.status_code == 401
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "content-security-policy" not in r.headers  # JSON, not a page


def test_docs_are_off_unless_enabled(make_gateway):
    off = make_gateway()
    assert httpx.get(f"{off.url}/docs").status_code == 404
    assert httpx.get(f"{off.url}/redoc").status_code == 404
    assert httpx.get(f"{off.url}/openapi.json").json()["info"]["title"] == "modelport"
    on = make_gateway(docs=True)
    r = httpx.get(f"{on.url}/docs")
    assert r.status_code == 200 and r.headers["x-frame-options"] == "DENY"
