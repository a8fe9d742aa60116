"""Every token write, from the admin API, the UI and the One API importer, drops cached key
lookups exactly once (TokenService does it; no surface does it itself)."""

from __future__ import annotations

import openai
import pytest

from tests.admin_ui.helpers import UIClient
from tests.support.announcements import count_announcements, expecting


def test_admin_api_token_writes_announce_once(gateway):
    expect = expecting(count_announcements(gateway.app))
    with expect("create", tokens=1):
        key = gateway.create_token(name="a")
    tid = gateway.api("GET", "/api/token/", params={"keyword": "a"})[0]["id"]
    with expect("edit", tokens=1):
        gateway.api("PUT", "/api/token/", json={"id": tid, "rpm": 5})
    with expect("disable (status only)", tokens=1):
        gateway.api("PUT", "/api/token/", params={"status_only": 1}, json={"id": tid, "status": 2})
    with expect("edit a token that does not exist"):
        assert gateway.admin.put("/api/token/", json={"id": 999_999}).json()["success"] is False
    with expect("delete", tokens=1):
        gateway.api("DELETE", f"/api/token/{tid}")
    with expect("delete again"):
        assert gateway.admin.delete(f"/api/token/{tid}").json()["success"] is False
    assert key.startswith("sk-")


def test_a_key_refused_before_its_token_exists_works_once_imported(gateway):
    """An unknown key is cached as unknown (gateway.auth.tokens); the import's announcement
    drops that entry (through the app's notifier), so the key works at once, not after the
    cache ages out."""
    key = "sk-" + "z" * 48
    client = gateway.openai(key)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    plan = {"tokens": [{"one_api_id": 1, "key": key, "name": "late", "unlimited_quota": True}]}
    assert gateway.api("POST", "/api/import/one-api", json=plan)["tokens"] == 1
    assert client.models.list().object == "list"


def test_import_announces_once_per_kind(gateway, fake_upstream):
    expect = expecting(count_announcements(gateway.app))
    plan = {
        "channels": [
            {
                "one_api_id": i,
                "name": f"c{i}",
                "type": 50,
                "base_url": fake_upstream.url,
                "key": "k",
                "models": "m",
                "config": {"one_api_id": i},
            }
            for i in (1, 2)
        ],
        "tokens": [{"one_api_id": i, "name": f"t{i}", "key": f"sk-{i}" + "x" * 47} for i in (1, 2)],
    }
    with expect("import two channels and two tokens", routes=1, tokens=1):
        done = gateway.api("POST", "/api/import/one-api", json=plan)
    assert (done["channels"], done["tokens"]) == (2, 2)
    with expect("import the same again: all skipped"):
        gateway.api("POST", "/api/import/one-api", json=plan)


def test_ui_token_writes_announce_once(gateway):
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get("/ui")
    hx = {"X-CSRF-Token": ui.csrf, "HX-Request": "true"}
    expect = expecting(count_announcements(gateway.app))
    with expect("create", tokens=1):
        assert ui.post("/ui/tokens", {"name": "u", "unlimited_quota": "on"}).status_code == 303
    tid = gateway.api("GET", "/api/token/")[0]["id"]
    with expect("edit", tokens=1):
        assert ui.post(f"/ui/tokens/{tid}", {"name": "u2", "rpm": "3"}).status_code == 303
    with expect("disable", tokens=1):
        assert "disabled" in ui.http.post(f"/ui/tokens/{tid}/status", headers=hx).text
    with expect("toggle a token that does not exist"):
        assert ui.http.post("/ui/tokens/999999/status", headers=hx).status_code == 404
    with expect("delete", tokens=1):
        assert ui.http.post(f"/ui/tokens/{tid}/delete", headers=hx).text == ""
    with expect("delete again"):
        assert ui.http.post(f"/ui/tokens/{tid}/delete", headers=hx).status_code == 404
