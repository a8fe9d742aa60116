"""A launched model that is not serving yet is "loading", never "not found".

FastGPT and the SDKs give up on a 404 but retry a 503 with Retry-After, so a UID that is being
launched in the background or restored after a restart answers 503 `model_loading` until its worker
is ready, and one whose launch failed answers 503 `model_failed` with the reason. Real gateway,
real worker processes with the fake engine; its `load_gate` option holds the load until the test
creates the gate file, so "still loading" is a state the test controls rather than a race.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Gateway
from tests.local_runtime.test_supervisor import MODEL, chat, fast, instance, wait_for
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)


def launch_in_background(gw: Gateway, uid: str, **options: Any) -> None:
    body = {"model_name": MODEL, "model_uid": uid, "model_engine": "fake"}
    resp = gw.admin.post(
        "/v1/models", params={"wait_ready": "false"}, json={**body, "engine_options": options}
    )
    assert resp.status_code == 200, resp.text


def refused(client: openai.OpenAI, uid: str) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client, uid)
    return caught.value


def assert_loading(resp: httpx.Response, uid: str) -> None:
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["Retry-After"]) > 0
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "model_loading" and error["param"] == "model"
    assert f"model '{uid}' is loading (started " in error["message"]
    assert "retry" in error["message"]


def ready_chat(client: openai.OpenAI, gw: Gateway, uid: str) -> str:
    wait_for(lambda: instance(gw, uid)["status"] == "ready", f"{uid} ready", 120)
    return chat(client, uid, "now")


@pytest.fixture
def gw(make_gateway: Callable[..., Gateway]) -> Gateway:
    gateway = make_gateway(runtime_enabled=True)
    fast(gateway)
    return gateway


def test_a_model_launched_in_the_background_answers_503_until_ready(
    gw: Gateway, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    gate = tmp_path / "gate"
    launch_in_background(gw, "slow", load_gate=str(gate))
    assert instance(gw, "slow")["status"] == "loading"
    key = gw.create_token()
    client = gw.openai(key)

    err = refused(client, "slow")
    assert err.status_code == 503
    assert_loading(err.response, "slow")
    http = httpx.Client(base_url=f"{gw.url}/v1", headers={"Authorization": f"Bearer {key}"})
    request.addfinalizer(http.close)
    for resp in (
        http.post("/embeddings", json={"model": "slow", "input": "x"}),
        http.get("/models/slow"),
    ):
        assert_loading(resp, "slow")
    unknown = http.post("/embeddings", json={"model": "nobody-launched-this", "input": "x"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"

    gate.touch()
    assert ready_chat(client, gw, "slow") == "echo: now"
    assert http.get("/models/slow").json()["id"] == "slow"


def test_a_failed_background_launch_answers_503_with_its_reason(gw: Gateway) -> None:
    launch_in_background(gw, "broken", fail_load="the weights are corrupt")
    wait_for(lambda: instance(gw, "broken")["status"] == "error", "the failed launch", 120)
    err = refused(gw.openai(gw.create_token()), "broken")
    assert err.status_code == 503
    error = err.response.json()["error"]
    assert error["code"] == "model_failed"
    assert "model 'broken' failed" in error["message"]
    assert "the weights are corrupt" in error["message"]


def test_a_restored_model_answers_503_until_ready(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    home, gate = tmp_path / "home", tmp_path / "gate"
    gate.touch()
    gw = make_gateway(runtime_enabled=True, home=home)
    launch_in_background(gw, "kept", load_gate=str(gate))
    client = gw.openai(gw.create_token())
    assert ready_chat(client, gw, "kept") == "echo: now"
    gw.stop()

    gate.unlink()  # the restored worker's load now waits for the test
    gw2 = make_gateway(runtime_enabled=True, home=home)
    client = gw2.openai(gw2.create_token())
    # the very first request after the restart: the UID is known before the server serves
    err = refused(client, "kept")
    assert err.status_code == 503
    assert_loading(err.response, "kept")

    gate.touch()
    assert ready_chat(client, gw2, "kept") == "echo: now"
