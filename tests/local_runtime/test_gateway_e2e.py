"""End to end on real weights: launch through `POST /v1/models`, use through the gateway with the
official openai client and a normal sk- token, terminate.

SmolLM2-135M (GGUF, llama.cpp), all-MiniLM-L6-v2 (sentence-transformers, two replicas) and a
CrossEncoder reranker made from the MiniLM folder (`num_labels=1`: a random head, so only the
plumbing is checked, not the ranking) are each loaded once for the module.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.servers import ServerThread
from tests.support.starter_models import MINILM_MISSING, SMOLLM2_MISSING, minilm_dir, smollm2_gguf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING),
    pytest.mark.skipif(minilm_dir() is None, reason=MINILM_MISSING),
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None, reason="xllamacpp is not installed"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("sentence_transformers") is None,
        reason="sentence-transformers is not installed",
    ),
]

# The prompt the llama.cpp engine tests use; SmolLM2 answers it with "Paris" at temperature 0.
CAPITAL = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
LAUNCHES: dict[str, dict[str, Any]] = {
    "smol": {
        "model_name": "smollm2-135m-instruct",
        "model_type": "LLM",
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_size_in_billions": "0_135",
        "quantization": "Q4_1",
    },
    "minilm": {
        "model_name": "all-MiniLM-L6-v2",
        "model_type": "embedding",
        "model_engine": "sentence_transformers",
        "replica": 2,
    },
    "rr": {
        "model_name": "bge-reranker-base",
        "model_type": "rerank",
        "model_engine": "sentence_transformers",
        "num_labels": 1,  # Xinference passes engine kwargs as top-level fields
    },
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    settings = Settings(
        home=tmp_path_factory.mktemp("home"),
        admin_token=ADMIN_TOKEN,
        runtime_enabled=True,
        usage_flush_interval_s=0.05,
    )
    app = create_app(settings)
    gateway = Gateway(ServerThread(app).start(), app)
    LAUNCHES["rr"]["model_path"] = str(minilm_dir())
    for uid, body in LAUNCHES.items():
        resp = gateway.admin.post("/v1/models", json={"model_uid": uid, **body}, timeout=600)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"model_uid": uid}
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(gw: Gateway) -> str:
    return gw.create_token(name="e2e")


@pytest.fixture(scope="module")
def client(gw: Gateway, key: str) -> openai.OpenAI:
    return gw.openai(key, timeout=120)


def test_models_lists_local_uids_with_xinference_fields(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"smol", "minilm", "rr"} <= set(models)
    smol = models["smol"].model_dump()
    assert smol["model_type"] == "LLM" and "chat" in smol["model_ability"]
    minilm = models["minilm"].model_dump()
    assert minilm["model_type"] == "embedding" and minilm["dimensions"] == 384


def test_chat(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="smol",
        messages=CAPITAL,
        max_tokens=30,
        temperature=0,
    )
    assert resp.model == "smol"
    assert "Paris" in (resp.choices[0].message.content or "")
    assert resp.usage is not None and resp.usage.completion_tokens > 0


def test_chat_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smol",
        messages=CAPITAL,
        max_tokens=30,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embeddings_share_two_replicas(gw: Gateway, client: openai.OpenAI) -> None:
    for i in range(24):
        resp = client.embeddings.create(model="minilm", input=[f"sentence number {i}", "hello"])
        assert len(resp.data) == 2 and len(resp.data[0].embedding) == 384
    replicas = gw.api("GET", "/api/runtime/instances/minilm")["replicas"]
    assert len(replicas) == 2
    served = []
    keys = {
        r.port: r.key
        for r in gw.app.state.services.runtime.supervisor._instances["minilm"].replicas
    }
    for rep in replicas:
        own = {"Authorization": f"Bearer {keys[rep['port']]}"}  # each worker has its own key
        health = httpx.get(f"http://127.0.0.1:{rep['port']}/health", headers=own, timeout=10)
        health = health.json()
        assert health["status"] == "ready" and health["pid"] == rep["pid"]
        served.append(health["batching"]["items_run"])
    assert all(n > 0 for n in served), served  # both worker processes computed embeddings
    assert sum(served) >= 48


def test_rerank(gw: Gateway, key: str) -> None:
    docs = ["Paris is in France.", "Bananas are yellow.", "The Eiffel Tower is in Paris."]
    resp = httpx.post(
        f"{gw.url}/v1/rerank",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "rr", "query": "Where is Paris?", "documents": docs, "top_n": 2},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == 2
    assert {r["index"] for r in results} <= {0, 1, 2}
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]


def test_terminate_removes_uid_from_models_and_routing(gw: Gateway, client: openai.OpenAI) -> None:
    body = {"model_uid": "smol2", **LAUNCHES["smol"]}
    assert gw.admin.post("/v1/models", json=body, timeout=300).status_code == 200
    pid = gw.api("GET", "/api/runtime/instances/smol2")["replicas"][0]["pid"]
    assert gw.admin.delete("/v1/models/smol2").status_code == 200
    assert "smol2" not in {m.id for m in client.models.list()}
    assert "smol2" not in gw.app.state.services.routes.local_uids()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="smol2", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
