"""A worker with HTTP front processes (`engine_options.http_fronts`), against the single-process
worker, both real processes on all-MiniLM-L6-v2 (from PyPI)."""

from __future__ import annotations

import base64
import concurrent.futures
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.local_runtime.worker.minilm import SENTENCES, minilm_spec
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single():
    with WorkerProcess(minilm_spec()) as w:
        yield w


@pytest.fixture(scope="module")
def fronted():
    with WorkerProcess(minilm_spec(http_fronts=2)) as w:
        yield w


def link_requests(worker: WorkerProcess) -> int:
    """Requests the fronts have sent over their links (not proxied)."""
    health = worker.health()
    assert health is not None
    return sum(front["requests"] for front in health["fronts"])


def post(worker: WorkerProcess, path: str, **kw: Any) -> httpx.Response:
    return httpx.post(f"{worker.base_url}{path}", timeout=60, **kw)


@pytest.mark.parametrize(
    "body",
    [
        {"input": "hello world"},
        {"input": SENTENCES[:5], "encoding_format": "float"},
        {"input": SENTENCES[5:9], "encoding_format": "base64"},
        {"input": "tea time", "dimensions": 384, "encoding_format": "base64"},
    ],
)
def test_answers_are_identical_to_the_single_process_worker(single, fronted, body):
    served = link_requests(fronted)
    want = post(single, "/v1/embeddings", json=body)
    got = post(fronted, "/v1/embeddings", json=body)
    assert want.status_code == got.status_code == 200
    assert got.json() == want.json()
    assert link_requests(fronted) == served + 1  # answered by a front, not proxied


def test_the_openai_client_gets_the_same_vectors(single, fronted):
    def embed(worker: WorkerProcess) -> list[float]:
        client = openai.OpenAI(base_url=f"{worker.base_url}/v1", api_key="-", max_retries=0)
        return client.embeddings.create(model="minilm", input="a red bicycle").data[0].embedding

    assert embed(fronted) == embed(single)


def test_many_clients_each_get_their_own_vector_through_both_fronts(single, fronted):
    """One connection per client, so the kernel spreads them over both fronts' sockets."""
    want = {
        s: np.asarray(
            post(single, "/v1/embeddings", json={"input": s}).json()["data"][0]["embedding"]
        )
        for s in SENTENCES
    }
    health = fronted.health()
    assert health is not None
    before = {f["index"]: f["requests"] for f in health["fronts"]}

    def one(sentence: str) -> tuple[str, str, list[float]]:
        with httpx.Client(base_url=fronted.base_url, timeout=60) as client:
            r = client.post("/v1/embeddings", json={"input": sentence, "encoding_format": "float"})
            assert r.status_code == 200, r.text
            return sentence, r.headers["x-modelport-front"], r.json()["data"][0]["embedding"]

    with concurrent.futures.ThreadPoolExecutor(len(SENTENCES)) as pool:
        answers = list(pool.map(one, SENTENCES))

    for sentence, _, vector in answers:
        # other requests share its batch (padding differs), hence close rather than equal
        assert np.allclose(vector, want[sentence], atol=1e-5), sentence
    assert {front for _, front, _ in answers} == {"0", "1"}
    after = {f["index"]: f["requests"] for f in fronted.health()["fronts"]}
    assert sum(after.values()) - sum(before.values()) == len(SENTENCES)
    assert all(after[i] > before[i] for i in (0, 1))


def test_health_says_where_the_model_threads_time_went(fronted):
    """The batcher's counters that bench/runtime/embeddings.py reads for its profile columns."""
    post(fronted, "/v1/embeddings", json={"input": SENTENCES[:3]})
    health = fronted.health()
    assert health is not None
    batching = health["batching"]
    assert batching["items_run"] >= 3 and batching["batches_run"] >= 1
    assert batching["busy_s"] > 0 and batching["busy_cpu_s"] > 0
    assert batching["held_s"] >= 0
    assert batching["batches_in_model"] == 0 and batching["queue_depth"] == 0  # idle now


def test_health_and_other_routes_come_from_the_model_process(single, fronted):
    r = httpx.get(f"{fronted.base_url}/health")
    assert r.status_code == 200 and "x-modelport-front" in r.headers
    health = r.json()
    assert health["status"] == "ready" and health["pid"] == fronted.proc.pid
    assert health["inflight"] == 0 and health["batching"]["batches_run"] >= 1
    fronts = health["fronts"]
    assert [f["index"] for f in fronts] == [0, 1]
    assert len({f["pid"] for f in fronts} | {fronted.proc.pid}) == 3
    assert "fronts" not in single.health()

    models = [httpx.get(f"{w.base_url}/v1/models").json()["data"][0] for w in (single, fronted)]
    for card in models:
        card.pop("created")
    assert models[0] == models[1]

    for method, path, body in [
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/v1/rerank", {"query": "q", "documents": ["d"]}),
        ("GET", "/v1/nothing", None),
    ]:
        want = httpx.request(method, f"{single.base_url}{path}", json=body)
        got = httpx.request(method, f"{fronted.base_url}{path}", json=body)
        assert (got.status_code, got.json()) == (want.status_code, want.json()), path
        assert got.status_code in (400, 404) and set(got.json()["error"]) == {
            "message", "type", "param", "code"
        }  # fmt: skip


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'["a list"]',
        b'{"input": []}',
        b'{"input": [1, 2, 3]}',
        b'{"input": "x", "encoding_format": "int8"}',
        b'{"input": "x", "dimensions": 4096}',
        b'{"input": "x", "dimensions": 128}',
    ],
)
def test_bad_bodies_get_the_same_openai_error(single, fronted, content):
    want = post(single, "/v1/embeddings", content=content)
    got = post(fronted, "/v1/embeddings", content=content)
    assert got.status_code == want.status_code == 400
    assert got.json() == want.json()
    assert got.json()["error"]["type"] == "invalid_request_error"


def test_a_batch_of_many_texts_still_answers_in_order(single, fronted):
    """More texts than max_batch_size: the request spans batches on the model's side."""
    body = {"input": SENTENCES, "encoding_format": "base64"}
    got = post(fronted, "/v1/embeddings", json=body).json()
    want = post(single, "/v1/embeddings", json=body).json()
    assert [d["index"] for d in got["data"]] == list(range(len(SENTENCES)))
    assert got == want
    first = np.frombuffer(base64.b64decode(got["data"][0]["embedding"]), dtype="<f4")
    assert first.shape == (384,)
