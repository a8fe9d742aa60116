"""Fixtures for the attacks in issue 14: a gateway that sits behind a (trusted) proxy on 127.0.0.1,
so one test can speak from several client addresses through X-Forwarded-For."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.servers import ServerThread


@pytest.fixture
def proxied_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Gateway]]:
    """A gateway whose server trusts X-Forwarded-For from 127.0.0.1 (uvicorn's proxy headers, as
    behind a reverse proxy): request.client is then the forwarded address."""
    started: list[Gateway] = []

    def make(**overrides: Any) -> Gateway:
        overrides.setdefault("home", tmp_path_factory.mktemp("home"))
        overrides.setdefault("admin_token", ADMIN_TOKEN)
        overrides.setdefault("runtime_enabled", False)
        app = create_app(Settings(**overrides))
        server = ServerThread(app, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
        gw = Gateway(server.start(), app)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


def from_address(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}
