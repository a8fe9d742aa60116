"""The admin UI's prices page: lists what each model is billed at and where that comes from,
sets and clears an admin price behind the session's CSRF token; the logs page shows each
request's cost."""

from __future__ import annotations

import html

from tests.admin_ui.helpers import UIClient


def test_ui_edits_a_price_with_csrf(gateway, fake_upstream):
    gateway.add_channel(name="openai", type=1, base_url=fake_upstream.url, models="gpt-4o")
    ui = UIClient(gateway.url)
    ui.setup()
    page = ui.get("/ui/prices")
    assert page.status_code == 200
    assert "gpt-4o" in page.text and "litellm" in page.text

    forged = ui.post("/ui/prices", {"model": "gpt-4o", "input": "1", "output": "1"}, csrf=False)
    assert forged.status_code == 403
    assert gateway.api("GET", "/api/price/gpt-4o")["source"] == "litellm"

    bad = ui.post("/ui/prices", {"model": "gpt-4o", "input": "-3", "output": "1"})
    assert bad.status_code == 303
    assert "price not saved" in html.unescape(ui.get("/ui/prices").text)

    saved = ui.post("/ui/prices", {"model": "gpt-4o", "input": "4", "output": "12"})
    assert saved.status_code == 303 and saved.headers["location"] == "/ui/prices"
    price = gateway.api("GET", "/api/price/gpt-4o")
    assert (price["source"], price["input"], price["output"]) == ("admin", 4, 12)
    assert "admin" in ui.get("/ui/prices").text

    key = gateway.create_token(name="ui")
    gateway.openai(key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    gateway.flush_usage()
    quota = gateway.api("GET", "/api/log/", params={"token_name": "ui"})[0]["quota"]
    assert quota > 0
    assert f"${quota / 500000:.6f}" in ui.get("/ui/logs").text

    assert ui.post("/ui/prices/delete", {"model": "gpt-4o"}).status_code == 303
    assert gateway.api("GET", "/api/price/gpt-4o")["source"] == "litellm"
    ui.close()
