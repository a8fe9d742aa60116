"""`uvicorn --workers N`: two gateway apps on one home and one Redis; only the one holding
<home>/runtime.lock runs workers, and the other launches, routes and terminates through it."""

from __future__ import annotations

import secrets

import openai
import pytest

from tests.conftest import REDIS_URL
from tests.scale.procs import wait_for
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)

MODEL = "smollm2-135m-instruct"


def owner_and_proxy(make_gateway, tmp_path, pg_url):
    shared = {
        "home": tmp_path / "home",
        "database_url": pg_url,
        "redis_url": REDIS_URL,
        "redis_prefix": f"mphost-{secrets.token_hex(4)}",
        "runtime_enabled": True,
    }
    a = make_gateway(**shared)
    b = make_gateway(**shared)
    hosts = [a.app.state.services.runtime.host, b.app.state.services.runtime.host]
    assert sorted(h.owner for h in hosts) == [False, True]
    return (a, b) if hosts[0].owner else (b, a)


def test_one_runtime_per_home_and_the_others_proxy_to_it(pg_url, make_gateway, tmp_path):
    owner, proxy = owner_and_proxy(make_gateway, tmp_path, pg_url)

    body = {"model_name": MODEL, "model_uid": "w", "model_engine": "fake"}
    r = proxy.admin.post("/v1/models", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert [i["uid"] for i in owner.app.state.services.runtime.instances()] == ["w"]
    # nothing was started in the proxy
    assert proxy.app.state.services.runtime.supervisor._instances == {}

    key = owner.create_token(name="t")
    for gw in (proxy, owner):
        out = gw.openai(key).chat.completions.create(
            model="w", messages=[{"role": "user", "content": "ping"}]
        )
        assert out.choices[0].message.content
    assert [i["uid"] for i in proxy.api("GET", "/api/runtime/instances")] == ["w"]

    assert proxy.admin.delete("/v1/models/w", timeout=120).status_code == 200
    wait_for(lambda: not owner.app.state.services.runtime.instances(), "w stopped on the owner", 30)


def test_every_process_answers_503_while_the_owner_loads(pg_url, make_gateway, tmp_path):
    """A loading UID is known to the proxies through the owner's registry record: 503, not 404."""
    owner, proxy = owner_and_proxy(make_gateway, tmp_path, pg_url)
    gate = tmp_path / "gate"  # the fake engine's load waits for this file
    body = {"model_name": MODEL, "model_uid": "later", "model_engine": "fake"}
    body["engine_options"] = {"load_gate": str(gate)}
    r = proxy.admin.post("/v1/models", params={"wait_ready": "false"}, json=body, timeout=120)
    assert r.status_code == 200, r.text

    key = owner.create_token(name="t")

    def ask(gw):
        return gw.openai(key).chat.completions.create(
            model="later", messages=[{"role": "user", "content": "ping"}]
        )

    for gw in (proxy, owner):
        with pytest.raises(openai.APIStatusError) as caught:
            ask(gw)
        assert caught.value.status_code == 503 and caught.value.code == "model_loading"
        assert "model 'later' is loading" in caught.value.message
        assert caught.value.response.headers["Retry-After"]

    gate.touch()
    wait_for(
        lambda: owner.app.state.services.runtime.instance("later")["status"] == "ready", "ready", 60
    )

    def served_by_proxy():
        try:
            return ask(proxy).choices[0].message.content
        except openai.APIStatusError as exc:  # until the proxy's next registry sync
            assert exc.status_code == 503 and exc.code == "model_loading"
            return None

    assert wait_for(served_by_proxy, "the proxy to route to the ready model", 30)
    assert proxy.admin.delete("/v1/models/later", timeout=120).status_code == 200
