"""The admin UI in headless chromium: first start, a channel to the fake upstream tested from the
UI, a token whose shown key works with the openai client, playground chat, logs, FastGPT export.
Screenshots of every page go to the artifacts folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.admin_ui.helpers import PASSWORD
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.browser


def shot(page: Any, artifacts: Path, name: str, *, full: bool = True) -> None:
    page.screenshot(path=str(artifacts / f"ui-{name}.png"), full_page=full)


def nav(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def setup_admin(page: Any, url: str, artifacts: Path | None = None) -> None:
    page.goto(f"{url}/ui")
    page.wait_for_url(re.compile(r"/ui/setup$"))
    if artifacts:
        shot(page, artifacts, "setup")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create admin and log in").click()
    page.wait_for_url(re.compile(r"/ui$"))


def test_admin_ui_end_to_end(gateway, fake_upstream, page, artifacts):
    url = gateway.url
    setup_admin(page, url, artifacts)
    assert page.get_by_role("heading", name="Dashboard").is_visible()

    # Log out and back in through the login form.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/ui/login$"))
    shot(page, artifacts, "login")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "wrong username or password"
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/ui$"))

    # A channel pointing at the fake upstream; models fetched from its /v1/models.
    nav(page, "Channels")
    page.get_by_role("link", name="Add channel").click()
    page.get_by_label("Type", exact=True).select_option("50")
    assert "base URL with /v1" in page.locator("#type-hint").inner_text()
    page.get_by_label("Name", exact=True).fill("fake-upstream")
    page.get_by_label("Base URL", exact=True).fill(f"{fake_upstream.url}/v1")
    page.locator("#key").fill("sk-upstream-secret")
    page.get_by_role("button", name="Fetch models from the upstream").click()
    page.get_by_text("found 1 model(s) upstream").wait_for()
    assert page.locator("#models").input_value() == "gpt-4o-mini"
    shot(page, artifacts, "channel-form")
    page.get_by_role("button", name="Add channel").click()
    page.wait_for_url(re.compile(r"/ui/channels/\d+$"))
    page.get_by_role("button", name="Test gpt-4o-mini").click()
    page.get_by_text(re.compile(r"gpt-4o-mini answered in")).wait_for()
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer sk-upstream-secret"
    nav(page, "Channels")
    row = page.locator("tr", has_text="fake-upstream")
    assert "enabled" in row.inner_text() and " ms" in row.inner_text()
    shot(page, artifacts, "channels")

    # A token: the key is shown once and works with the openai client.
    nav(page, "Tokens")
    page.get_by_label("Name").fill("browser")
    page.get_by_role("button", name="Create token").click()
    key = page.get_by_label("New API key").input_value()
    assert key.startswith("sk-")
    shot(page, artifacts, "tokens")
    reply = gateway.openai(key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content.startswith("Hello from the fake upstream.")
    page.reload()
    assert page.get_by_label("New API key").count() == 0  # shown once only

    # Playground chat, streamed through the relay as the admin caller.
    nav(page, "Playground")
    page.locator("#chat-model").select_option("gpt-4o-mini")
    page.get_by_label("Message").fill("Say hello")
    page.get_by_role("button", name="Send").click()
    page.locator(".msg.assistant[data-done]").wait_for()
    assert (
        page.locator(".msg.assistant")
        .inner_text()
        .startswith("assistant: Hello from the fake upstream.")
    )
    assert fake_upstream.requests[-1].body["stream"] is True
    page.locator("#emb-model").select_option("gpt-4o-mini")
    page.get_by_role("button", name="Compare").click()
    page.locator("#similarity").wait_for()
    shot(page, artifacts, "playground")

    # Both requests show up in the logs, with their detail.
    gateway.flush_usage()
    nav(page, "Logs")
    rows = page.locator("table.logs tbody tr:not(.detail)")
    text = rows.all_inner_texts()
    assert any("browser" in r and "gpt-4o-mini" in r for r in text), text
    assert any("admin" in r and "stream" in r for r in text), text
    page.get_by_label("Token name").fill("browser")
    page.get_by_role("button", name="Filter").click()
    assert len(page.locator("table.logs tbody tr:not(.detail)").all()) == 1
    page.get_by_role("link", name=re.compile("Details of request")).first.click()
    page.locator("dl.kv").wait_for()
    assert "fake-upstream" in page.locator("dl.kv").inner_text()
    shot(page, artifacts, "logs")

    # FastGPT export: preview and download.
    nav(page, "FastGPT")
    assert "gpt-4o-mini" in page.get_by_label("config.json (≤ 4.8.19) preview").inner_text()
    with page.expect_download() as dl:
        page.locator("#download-config").click()
    config = json.loads(Path(dl.value.path()).read_text())
    assert [m["model"] for m in config["llmModels"]] == ["gpt-4o-mini"]
    with page.expect_download() as dl2:
        page.locator("#download-models").click()
    models = json.loads(Path(dl2.value.path()).read_text())
    assert any(m["model"] == "gpt-4o-mini" for m in models)
    shot(page, artifacts, "fastgpt")

    nav(page, "Models")
    shot(page, artifacts, "models")
    nav(page, "Dashboard")
    assert "gpt-4o-mini" in page.locator("section", has_text="Per model").inner_text()
    shot(page, artifacts, "dashboard")

    # Phone width: the navigation wraps, nothing scrolls sideways outside tables.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    shot(page, artifacts, "dashboard-phone")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    nav(page, "Channels")
    shot(page, artifacts, "channels-phone")
