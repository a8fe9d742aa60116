"""Rerank through a worker with HTTP front processes, against the single-process worker.

The cross-encoder is MiniLM with a random classification head (no package ships cross-encoder
weights; see tests/local_runtime/engines/test_rerank.py), saved once so both workers load the
same weights: the scores mean nothing, the plumbing is what is checked.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.starter_models import MINILM_MISSING, minilm_dir
from tests.support.worker import WorkerProcess, spec_dict

pytestmark = pytest.mark.slow

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital of France.",
    "Bananas are yellow.",
    "Berlin is the capital of Germany.",
    "France borders Spain.",
    "The Eiffel Tower is in Paris.",
]
MAX_QUEUE = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    if minilm_dir() is None:
        pytest.skip(MINILM_MISSING)
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cross-encoder")
    CrossEncoder(str(minilm_dir()), num_labels=1, device="cpu").save_pretrained(str(path))
    return path


def rerank_spec(folder, **options: Any) -> dict[str, Any]:
    return spec_dict(
        uid="rr",
        model_name="minilm-cross",
        model_type="rerank",
        engine="sentence_transformers",
        model_format="pytorch",
        model_path=str(folder),
        engine_options={"max_batch_size": 8, "max_queue": MAX_QUEUE, "torch_threads": 1, **options},
    )


@pytest.fixture(scope="module")
def single(folder):
    with WorkerProcess(rerank_spec(folder)) as w:
        yield w


@pytest.fixture(scope="module")
def fronted(folder):
    with WorkerProcess(rerank_spec(folder, http_fronts=2)) as w:
        yield w


def rerank(worker: WorkerProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{worker.base_url}/v1/rerank", json=body, timeout=60)


@pytest.mark.parametrize(
    "body",
    [
        {"query": QUERY, "documents": DOCS},
        {"query": QUERY, "documents": DOCS, "top_n": 2, "return_documents": True},
        {"query": QUERY, "documents": [{"text": d} for d in DOCS[:3]]},
        {"query": QUERY, "documents": []},
    ],
)
def test_answers_match_the_single_process_worker(single, fronted, body):
    want = rerank(single, body)
    got = rerank(fronted, body)
    assert want.status_code == got.status_code == 200
    assert "x-modelport-front" in got.headers
    want_body, got_body = want.json(), got.json()
    assert got_body.pop("id") != want_body.pop("id")  # a fresh id per answer
    assert got_body == want_body


@pytest.mark.parametrize(
    "body",
    [
        {"documents": DOCS},
        {"query": QUERY, "documents": "one"},
        {"query": QUERY, "documents": [3]},
        {"query": QUERY, "documents": DOCS, "top_n": 0},
    ],
)
def test_bad_requests_get_the_same_400(single, fronted, body):
    want = rerank(single, body)
    got = rerank(fronted, body)
    assert got.status_code == want.status_code == 400
    assert got.json() == want.json()


def test_a_full_queue_answers_429_in_the_openai_shape(single, fronted):
    body = {"query": QUERY, "documents": DOCS + DOCS}  # more pairs than the queue holds
    want = rerank(single, body)
    got = rerank(fronted, body)
    assert got.status_code == want.status_code == 429
    assert got.headers["retry-after"] == "1"
    assert got.json() == want.json()
    assert got.json()["error"]["code"] == "rate_limit_exceeded"


def test_embeddings_are_refused_as_before(single, fronted):
    want = httpx.post(f"{single.base_url}/v1/embeddings", json={"input": "x"})
    got = httpx.post(f"{fronted.base_url}/v1/embeddings", json={"input": "x"})
    assert got.status_code == want.status_code == 400
    assert got.json() == want.json()
