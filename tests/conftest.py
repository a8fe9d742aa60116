"""Shared fixtures: a real gateway server on 127.0.0.1 with a temporary home, fake upstreams that
are real HTTP servers, admin and OpenAI clients."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The weightless `fake` engine is a test double: the product registry does not ship it; tests add it
# as a plugin, and every worker, CLI and server subprocess inherits it (and the path to import it).
os.environ.setdefault("MODELPORT_ENGINE_PLUGINS", "fake=tests.support.fake_engine:FakeEngine")
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")))
)

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import ServerThread

ADMIN_TOKEN = "admin-test-token-0123456789"
PG_URL = os.environ.get("MODELPORT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS", "redis://127.0.0.1:6379/0")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


class Gateway:
    """A running modelport server and clients for it."""

    def __init__(self, server: ServerThread, app: Any) -> None:
        self.server = server
        self.app = app
        self.url = server.url
        self.admin = httpx.Client(
            base_url=self.url, headers={"Authorization": ADMIN_TOKEN}, timeout=60
        )

    def api(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.admin.request(method, path, **kw)
        body = resp.json()
        assert body.get("success"), body
        return body["data"]

    def add_channel(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("type", 50)
        fields.setdefault("name", "ch")
        return self.api("POST", "/api/channel/", json=fields)  # type: ignore[no-any-return]

    def create_token(self, **fields: Any) -> str:
        fields.setdefault("name", "t")
        fields.setdefault("unlimited_quota", True)
        return self.api("POST", "/api/token/", json=fields)["key"]  # type: ignore[no-any-return]

    def openai(self, key: str, **kw: Any) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, **kw)

    def flush_usage(self) -> None:
        """Write pending usage rows now (they are batched off the hot path)."""
        import asyncio

        loop = self.server.server_loop
        asyncio.run_coroutine_threadsafe(self.app.state.services.usage.flush(), loop).result(30)

    def stop(self) -> None:
        self.admin.close()
        self.server.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def make_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(**overrides: Any) -> Gateway:
        overrides.setdefault("home", tmp_path_factory.mktemp("home"))
        overrides.setdefault("admin_token", ADMIN_TOKEN)
        overrides.setdefault("runtime_enabled", False)
        overrides.setdefault("usage_flush_interval_s", 0.05)
        settings = Settings(**overrides)
        app = create_app(settings)
        gw = Gateway(ServerThread(app).start(), app)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@pytest.fixture
def fake_upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("up1").start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_upstreams() -> Iterator[Callable[[str], FakeOpenAI]]:
    started: list[FakeOpenAI] = []

    def make(name: str) -> FakeOpenAI:
        f = FakeOpenAI(name).start()
        started.append(f)
        return f

    yield make
    for f in started:
        f.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards.

    Name it before `make_gateway` in a test's arguments: fixtures are torn down in reverse, so
    the gateways stop (and write their last usage rows) before the database goes. Named after,
    a gateway's shutdown retries its flush for 30 s against a dropped database."""
    import secrets

    import psycopg

    name = f"mp_test_{secrets.token_hex(4)}"
    admin_url = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_configure(config: pytest.Config) -> None:
    from tests import skips

    skips.register(config)
