"""Logging in to the admin UI over plain HTTP (no browser): the CSRF token comes from the page."""

from __future__ import annotations

import re
import weakref
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN

PASSWORD = "correct-horse-battery"
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


class UIClient:
    """An httpx client holding a UI session, and its CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)
        self.csrf = ""
        # tests drop their clients without closing them: close the sockets before they are
        # collected (a ResourceWarning otherwise, reported in whatever test runs then)
        weakref.finalize(self, self.http.close)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        resp = self.http.get(path, **kw)
        if (
            resp.headers.get("content-type", "").startswith("text/html")
            and 'name="csrf-token"' in resp.text
        ):
            self.csrf = csrf_of(resp.text)
        return resp

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any
    ) -> httpx.Response:
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf)
        return self.http.post(path, data=data, **kw)

    def setup(self, password: str = PASSWORD, admin_token: str = ADMIN_TOKEN) -> httpx.Response:
        """First-start setup, proving possession of the admin token as the form requires."""
        self.get("/ui/setup")
        return self.post(
            "/ui/setup",
            {
                "username": "admin",
                "password": password,
                "confirm": password,
                "admin_token": admin_token,
            },
        )

    def login(self, password: str = PASSWORD, username: str = "admin") -> httpx.Response:
        self.get("/ui/login")
        resp = self.post("/ui/login", {"username": username, "password": password})
        self.get("/ui")
        return resp

    def close(self) -> None:
        self.http.close()
