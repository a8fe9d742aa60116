"""Attack: the first visitor of a fresh server becomes its administrator.

Until a UI password exists, /ui/setup creates one; the session it makes is accepted by every
/api/* route. Choosing that first password must prove possession of the admin token (or be done
with MODELPORT_ADMIN_PASSWORD), in local and in production mode alike.
"""

from __future__ import annotations

from tests.admin_ui.helpers import PASSWORD, UIClient
from tests.conftest import ADMIN_TOKEN


def _attempt(ui: UIClient, **fields: str) -> int:
    ui.get("/ui/setup")
    data = {"username": "admin", "password": PASSWORD, "confirm": PASSWORD, **fields}
    return ui.post("/ui/setup", data).status_code


def _no_admin_yet(url: str) -> bool:
    return UIClient(url).get("/ui/login").headers.get("location") == "/ui/setup"


def test_setup_without_the_admin_token_makes_no_admin(gateway):
    stranger = UIClient(gateway.url)
    assert _attempt(stranger) == 403
    assert _attempt(stranger, admin_token="sk-a-guess") == 403
    assert _no_admin_yet(gateway.url)
    assert stranger.http.get("/api/token/").status_code == 401  # the stranger's session is nobody

    owner = UIClient(gateway.url)
    assert owner.setup().status_code == 303  # the helper sends the admin token
    assert owner.http.get("/api/token/").json()["success"]
    assert _attempt(stranger, admin_token=ADMIN_TOKEN) == 303  # setup is closed now: to login
    assert stranger.http.get("/api/token/").status_code == 401


def test_production_setup_form_is_never_open(make_gateway):
    gw = make_gateway(env="production", secret_key="a-production-secret-key-0123456789")
    page = UIClient(gw.url).get("/ui/setup")
    assert page.status_code == 200 and 'name="admin_token"' in page.text
    stranger = UIClient(gw.url)
    assert _attempt(stranger) == 403
    assert _no_admin_yet(gw.url)
    assert UIClient(gw.url).setup().status_code == 303


def test_admin_password_setting_needs_no_form(make_gateway):
    gw = make_gateway(admin_password="set-by-the-operator")
    ui = UIClient(gw.url)
    assert ui.get("/ui/setup").headers["location"] == "/ui/login"
    ui.get("/ui/login")  # a CSRF token for the form
    closed = ui.post(
        "/ui/setup",
        {"password": "p" * 10, "confirm": "p" * 10, "admin_token": ADMIN_TOKEN},
    )
    assert closed.headers["location"] == "/ui/login"  # nobody picks a new password
    assert ui.login(password="set-by-the-operator").status_code == 303
