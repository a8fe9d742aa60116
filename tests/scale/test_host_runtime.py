"""`uvicorn --workers N`: two gateway apps on one home and one Redis; only the one holding
<home>/runtime.lock runs workers, and the other launches, routes and terminates through it."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import REDIS_URL
from tests.scale.procs import wait_for
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)

MODEL = "smollm2-135m-instruct"


def test_one_runtime_per_home_and_the_others_proxy_to_it(make_gateway, tmp_path, pg_url):
    shared = {
        "home": tmp_path / "home",
        "database_url": pg_url,
        "redis_url": REDIS_URL,
        "redis_prefix": f"mphost-{secrets.token_hex(4)}",
        "runtime_enabled": True,
    }
    a = make_gateway(**shared)
    b = make_gateway(**shared)
    hosts = [a.app.state.host_runtime, b.app.state.host_runtime]
    assert sorted(h.owner for h in hosts) == [False, True]
    owner, proxy = (a, b) if hosts[0].owner else (b, a)

    body = {"model_name": MODEL, "model_uid": "w", "model_engine": "fake"}
    r = proxy.admin.post("/v1/models", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert [i["uid"] for i in owner.app.state.runtime.instances()] == ["w"]
    assert proxy.app.state.runtime._instances == {}  # nothing was started in the proxy

    key = owner.create_token(name="t")
    for gw in (proxy, owner):
        out = gw.openai(key).chat.completions.create(
            model="w", messages=[{"role": "user", "content": "ping"}]
        )
        assert out.choices[0].message.content
    assert [i["uid"] for i in proxy.api("GET", "/api/runtime/instances")] == ["w"]

    assert proxy.admin.delete("/v1/models/w", timeout=120).status_code == 200
    wait_for(lambda: not owner.app.state.runtime.instances(), "w stopped on the owner", 30)
