"""The Xinference model API (checked with the official `xinference-client`) and /api/runtime."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from xinference_client import RESTfulClient

from local_runtime.launch_params import launch_spec_from_xinference
from local_runtime.resolve import LaunchError
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.starter_models import MINILM_MISSING, SMOLLM2_MISSING, minilm_dir, smollm2_gguf

needs_smollm2 = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)
needs_minilm = pytest.mark.skipif(minilm_dir() is None, reason=MINILM_MISSING)


@pytest.fixture
def gw(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway(runtime_enabled=True)


def client_payload(**overrides: Any) -> dict[str, Any]:
    """What xinference-client 4.1's launch_model posts: every parameter, most of them null."""
    body: dict[str, Any] = dict.fromkeys(
        [
            "model_uid",
            "model_engine",
            "peft_model_config",
            "model_size_in_billions",
            "model_format",
            "quantization",
            "request_limits",
            "worker_ip",
            "gpu_idx",
            "replica_config",
            "model_path",
            "enable_thinking",
            "enable_virtual_env",
            "virtual_env_packages",
            "virtual_env_find_links",
            "envs",
        ]
    )
    body.update(model_name="m", model_type="LLM", replica=1, n_worker=1, n_gpu="auto")
    body.update(overrides)
    return body


def test_launch_parameters_from_the_xinference_client() -> None:
    spec = launch_spec_from_xinference(
        client_payload(
            model_uid="u",
            model_format="ggufv2",
            model_size_in_billions="0_5",
            gpu_idx=1,
            n_ctx=4096,  # launch_model(**kwargs) lands at the top level: an engine option
            envs={"X": "1"},
        )
    )
    assert spec.uid == "u" and spec.model_type == "llm"
    assert spec.model_format == "ggufv2" and spec.model_size_in_billions == "0_5"
    assert spec.gpu_idx == [1] and spec.replica == 1 and spec.n_gpu == "auto"
    assert spec.engine_options == {"n_ctx": 4096}
    assert launch_spec_from_xinference(client_payload(n_gpu=None)).n_gpu is None
    with pytest.raises(LaunchError, match="model_name is required"):
        launch_spec_from_xinference(client_payload(model_name=None))
    with pytest.raises(LaunchError, match="replica"):
        launch_spec_from_xinference(client_payload(replica=0))


def test_auth(gw: Gateway) -> None:
    # the client asks first, without a key, whether to send one
    resp = httpx.get(f"{gw.url}/v1/cluster/auth")
    assert resp.status_code == 200 and resp.json() == {"auth": True}
    assert httpx.post(f"{gw.url}/v1/models", json={"model_name": "x"}).status_code == 401
    key = gw.create_token()
    denied = httpx.delete(f"{gw.url}/v1/models/x", headers={"Authorization": f"Bearer {key}"})
    assert denied.status_code == 401  # an API token may use models, not launch or stop them
    assert httpx.get(f"{gw.url}/api/runtime/instances").json()["success"] is False


def test_runtime_disabled_mounts_only_node_launches(gateway: Gateway) -> None:
    """No runtime: launches go to GPU nodes (tests/scale/test_node_launch.py), with none
    connected a launch says so; the registrations, which need the catalog, are not there."""
    assert gateway.app.state.services.runtime is None
    assert httpx.get(f"{gateway.url}/v1/cluster/auth").json() == {"auth": True}
    auth = {"Authorization": ADMIN_TOKEN}
    r = httpx.post(f"{gateway.url}/v1/models", json={"model_name": "x"}, headers=auth)
    assert r.status_code == 400
    assert r.json() == {"detail": "no node is connected: start `modelport node` on a GPU machine"}
    r = httpx.delete(f"{gateway.url}/v1/models/x", headers=auth)
    assert r.status_code == 400
    assert r.json() == {"detail": "no model is launched under uid 'x'"}
    assert httpx.get(f"{gateway.url}/v1/model_registrations/LLM", headers=auth).status_code == 404
    assert httpx.get(f"{gateway.url}/api/runtime/instances", headers=auth).status_code == 404


@needs_smollm2
@pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="xllamacpp missing")
def test_xinference_client_round_trip(gw: Gateway) -> None:
    client = RESTfulClient(gw.url, api_key=ADMIN_TOKEN)
    uid = client.launch_model(
        model_name="smollm2-135m-instruct",
        model_type="LLM",
        model_engine="llama.cpp",
        model_uid="xsmol",
        model_format="ggufv2",
        model_size_in_billions=0.135,
        quantization="Q4_1",
    )
    assert uid == "xsmol"
    listed = client.list_models()
    assert listed["xsmol"]["model_type"] == "LLM"
    desc = client.describe_model("xsmol")
    assert desc["model_name"] == "smollm2-135m-instruct" and "chat" in desc["model_ability"]
    # the launch's spec, as Xinference's LLMDescription.to_dict gives it (xinference/model/llm/
    # core.py: model_format, model_size_in_billions, model_family or the name, quantization)
    assert desc["model_format"] == "ggufv2" and desc["quantization"] == "Q4_1"
    assert desc["model_size_in_billions"] == 0.135
    assert desc["model_family"] == "smollm2-135m-instruct"
    model = client.get_model("xsmol")
    reply = model.chat(
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        generate_config={"max_tokens": 30, "temperature": 0},
    )
    assert "Paris" in reply["choices"][0]["message"]["content"]
    with pytest.raises(RuntimeError, match="already launched"):
        client.launch_model(model_name="smollm2-135m-instruct", model_uid="xsmol")
    client.terminate_model("xsmol")
    assert "xsmol" not in client.list_models()
    with pytest.raises(RuntimeError, match="no model is launched under uid 'xsmol'"):
        client.terminate_model("xsmol")
    with pytest.raises(RuntimeError, match="unknown model 'no-such-model'"):
        client.launch_model(model_name="no-such-model")


@needs_minilm
def test_custom_model_registration(gw: Gateway) -> None:
    client = RESTfulClient(gw.url, api_key=ADMIN_TOKEN)
    model = {"model_name": "my-minilm", "model_uri": f"file://{minilm_dir()}"}
    client.register_model(model_type="embedding", model=json.dumps(model), persist=True)
    names = {r["model_name"]: r for r in client.list_model_registrations("embedding")}
    assert names["my-minilm"]["is_builtin"] is False
    assert names["all-MiniLM-L6-v2"]["is_builtin"] is True
    saved = gw.app.state.services.settings.home / "custom_models" / "embedding" / "my-minilm.json"
    assert saved.is_file()  # survives a restart

    uid = client.launch_model(model_name="my-minilm", model_type="embedding", model_engine="fake")
    desc = client.describe_model(uid)
    assert desc["model_type"] == "embedding" and desc["dimensions"] == 384
    out = client.get_model(uid).create_embedding("hello")
    assert len(out["data"][0]["embedding"]) == 384
    client.terminate_model(uid)
    client.unregister_model(model_type="embedding", model_name="my-minilm")
    assert "my-minilm" not in {
        r["model_name"] for r in client.list_model_registrations("embedding")
    }

    with pytest.raises(RuntimeError, match="built-in"):
        client.register_model(
            model_type="embedding",
            model=json.dumps({"model_name": "all-MiniLM-L6-v2", "model_uri": str(minilm_dir())}),
            persist=False,
        )
    with pytest.raises(RuntimeError, match="does not exist"):
        client.register_model(
            model_type="embedding",
            model=json.dumps({"model_name": "ghost", "model_uri": "file:///nonexistent"}),
            persist=False,
        )


@needs_smollm2
def test_runtime_admin_api(gw: Gateway) -> None:
    engines = {e["name"]: e for e in gw.api("GET", "/api/runtime/engines")}
    assert engines["fake"]["available"] is True and "llama.cpp" in engines
    found = gw.api("GET", "/api/runtime/catalog", params={"type": "embedding", "search": "minilm"})
    assert [f["name"] for f in found] == ["all-MiniLM-L6-v2"]
    assert gw.api("GET", "/api/runtime/catalog", params={"ability": "rerank"})

    body = {"model_name": "smollm2-135m-instruct", "model_uid": "adm", "model_engine": "fake"}
    launched = gw.api("POST", "/api/runtime/instances", json=body)
    assert launched["status"] == "ready" and launched["replicas"][0]["pid"]
    conflict = gw.admin.post("/api/runtime/instances", json=body).json()
    assert conflict["success"] is False and "already launched" in conflict["message"]

    listed = gw.api("GET", "/api/runtime/instances")
    assert [i["uid"] for i in listed] == ["adm"]
    item = listed[0]
    assert item["spec"]["model_engine"] == "fake" and item["keep_alive_s"] == 0
    assert item["replicas"][0]["rss_bytes"] > 0 and item["replicas"][0]["restarts"] == 0
    logs = gw.api("GET", "/api/runtime/instances/adm/logs", params={"lines": 3})["logs"]
    assert list(logs) == ["0"] and len(logs["0"]) <= 3
    assert any("ready" in line for line in logs["0"])

    unloaded = gw.api("POST", "/api/runtime/instances/adm/unload")
    assert unloaded["status"] == "unloaded" and unloaded["replicas"][0]["pid"] is None
    assert gw.api("POST", "/api/runtime/instances/adm/load")["status"] == "ready"

    missing = gw.admin.get("/api/runtime/instances/nope/logs").json()
    assert missing["success"] is False and "nope" in missing["message"]
    gw.api("DELETE", "/api/runtime/instances/adm")
    assert gw.api("GET", "/api/runtime/instances") == []
