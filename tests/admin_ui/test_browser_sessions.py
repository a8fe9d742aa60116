"""In headless chromium: a session made on one gateway carries over to another gateway on the same
database, and "End all sessions" logs out the other browser too."""

from __future__ import annotations

import re

import pytest

from tests.admin_ui.helpers import PASSWORD
from tests.admin_ui.test_browser import setup_admin

pytestmark = pytest.mark.browser


def test_end_all_sessions_logs_out_the_other_browser(make_gateway, browser, tmp_path):
    a = make_gateway(home=tmp_path)
    b = make_gateway(home=tmp_path)
    first, second = browser.new_context(), browser.new_context()
    mine, other = first.new_page(), second.new_page()
    setup_admin(mine, a.url)
    other.goto(f"{b.url}/ui/login")
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Log in").click()
    other.wait_for_url(re.compile(r"/ui$"))

    # The cookie from gateway a is a login on gateway b too (both on 127.0.0.1).
    mine.goto(f"{b.url}/ui/tokens")
    assert mine.get_by_role("heading", name="Tokens").first.is_visible()

    mine.get_by_role("button", name="End all sessions").click()
    mine.wait_for_url(re.compile(r"/ui/login$"))
    other.goto(f"{a.url}/ui/tokens")
    other.wait_for_url(re.compile(r"/ui/login\?next=/ui/tokens$"))
    first.close()
    second.close()
