"""The UI's Content-Security-Policy fits its pages: headless chromium visits every page in the
navigation (and the login and setup pages) and reports no CSP violation in the console."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.admin_ui.conftest import browser, page  # noqa: F401  (the chromium fixtures)
from tests.admin_ui.test_browser import setup_admin

pytestmark = pytest.mark.browser


def test_no_page_violates_the_csp(gateway, fake_upstream, page):  # noqa: F811
    violations: list[str] = []

    def watch(msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Refused to" in msg.text:
            violations.append(f"{page.url}: {msg.text}")

    page.on("console", watch)
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="m")
    setup_admin(page, gateway.url)
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert len(hrefs) >= 6, hrefs
    for href in hrefs:
        page.goto(f"{gateway.url}{href}")
        page.wait_for_load_state("networkidle")
    page.goto(f"{gateway.url}/ui/channels/new")
    page.wait_for_load_state("networkidle")
    assert re.search(r"/ui/channels/new$", page.url)
    assert violations == []
