"""Every channel write, from the admin API and the UI, announces a route change exactly once
(ChannelService does it; no surface reloads routes itself), and a write that changed nothing
announces nothing."""

from __future__ import annotations

from tests.admin_ui.helpers import UIClient
from tests.support.announcements import count_announcements, expecting


def test_admin_api_channel_writes_announce_once(gateway, fake_upstream):
    expect = expecting(count_announcements(gateway.app))
    base = {"type": 50, "base_url": fake_upstream.url, "key": "k", "models": "m"}
    with expect("add two channels in one batch (two key lines)", routes=1):
        made = gateway.api("POST", "/api/channel/", json={**base, "name": "a", "key": "k1\nk2"})
    first, second = (c["id"] for c in made)
    with expect("edit", routes=1):
        gateway.api("PUT", "/api/channel/", json={"id": first, "priority": 3})
    with expect("edit a channel that does not exist"):
        missing = gateway.admin.put("/api/channel/", json={"id": 999_999, "priority": 1}).json()
        assert missing["success"] is False
    with expect("refused: unknown type"):
        assert (
            gateway.admin.post("/api/channel/", json={**base, "type": 999}).json()["success"]
            is False
        )
    with expect("probe one channel: records the result, routes are unchanged"):
        assert gateway.admin.get(f"/api/channel/test/{first}").json()["success"] is True
    with expect("mark auto-disabled", routes=1):
        gateway.api("PUT", "/api/channel/", json={"id": first, "status": 3})
    with expect("a test round that revives it", routes=1):
        assert all(c["success"] for c in gateway.api("GET", "/api/channel/test"))
    assert gateway.api("GET", f"/api/channel/{first}")["status"] == 1
    with expect("a test round that revives nothing"):
        gateway.api("GET", "/api/channel/test")
    with expect("disable by hand", routes=1):
        gateway.api("PUT", "/api/channel/", json={"id": second, "status": 2})
    with expect("delete the disabled ones", routes=1):
        assert gateway.api("DELETE", "/api/channel/disabled") == 1
    with expect("delete the disabled ones, none left"):
        assert gateway.api("DELETE", "/api/channel/disabled") == 0
    with expect("delete", routes=1):
        gateway.api("DELETE", f"/api/channel/{first}")
    with expect("delete again"):
        assert gateway.admin.delete(f"/api/channel/{first}").json()["success"] is False


def test_ui_channel_writes_announce_once(gateway, fake_upstream):
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get("/ui")
    hx = {"X-CSRF-Token": ui.csrf, "HX-Request": "true"}
    expect = expecting(count_announcements(gateway.app))
    form = {"type": "50", "name": "u", "base_url": fake_upstream.url, "key": "k", "models": "m"}
    with expect("add", routes=1):
        made = ui.post("/ui/channels/new", form)
    assert made.status_code == 303
    cid = int(made.headers["location"].rsplit("/", 1)[1])
    with expect("refused: unknown type"):
        assert ui.post("/ui/channels/new", {**form, "type": "999"}).status_code == 400
    with expect("edit", routes=1):
        assert ui.post(f"/ui/channels/{cid}", {**form, "priority": "2"}).status_code == 303
    with expect("disable", routes=1):
        assert "disabled" in ui.http.post(f"/ui/channels/{cid}/status", headers=hx).text
    with expect("enable", routes=1):
        ui.http.post(f"/ui/channels/{cid}/status", headers=hx)
    with expect("toggle a channel that does not exist"):
        assert ui.http.post("/ui/channels/999999/status", headers=hx).status_code == 404
    with expect("probe: records the result only"):
        assert "answered" in ui.http.post(f"/ui/channels/{cid}/test?model=m", headers=hx).text
    with expect("delete", routes=1):
        assert ui.http.post(f"/ui/channels/{cid}/delete", headers=hx).text == ""
    with expect("delete again"):
        assert ui.http.post(f"/ui/channels/{cid}/delete", headers=hx).status_code == 404
