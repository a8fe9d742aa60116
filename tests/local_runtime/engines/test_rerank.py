"""CrossEncoder rerank engine through a real worker.

No package on PyPI ships cross-encoder weights, so the model is MiniLM with a classification head
that is random: built once here with a fixed seed and saved, so the worker and the in-process
reference load the same head. The scores mean nothing; the tests check shape, completeness,
ordering and agreement with in-process `CrossEncoder.predict`, not relevance.
"""

from __future__ import annotations

import concurrent.futures

import httpx
import numpy as np
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


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if minilm_dir() is None:
        pytest.skip(MINILM_MISSING)
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder(str(minilm_dir()), num_labels=1, device="cpu")
    folder = tmp_path_factory.mktemp("cross-encoder")
    model.save_pretrained(str(folder))
    return folder, CrossEncoder(str(folder), device="cpu")


@pytest.fixture(scope="module")
def worker(reference):
    folder, _ = reference
    spec = spec_dict(
        uid="rr",
        model_name="minilm-cross",
        model_type="rerank",
        engine="sentence_transformers",
        model_format="pytorch",
        model_path=str(folder),
        engine_options={"max_batch_size": 8, "torch_threads": 1},
    )
    with WorkerProcess(spec) as w:
        yield w


def rerank(worker, **body):
    return httpx.post(f"{worker.base_url}/v1/rerank", json={"model": "rr", **body}, timeout=120)


def test_all_documents_scored_best_first_when_top_n_absent(worker, reference):
    _, model = reference
    r = rerank(worker, query=QUERY, documents=DOCS)
    assert r.status_code == 200
    body = r.json()
    results = body["results"]
    assert sorted(item["index"] for item in results) == list(range(len(DOCS)))
    scores = [item["relevance_score"] for item in results]
    assert scores == sorted(scores, reverse=True)
    expected = model.predict([(QUERY, d) for d in DOCS])
    for item in results:
        assert np.isclose(item["relevance_score"], expected[item["index"]], atol=1e-5)
    # Xinference's DocumentObj: `document` is null unless asked (xinference/types.py; its
    # sentence_transformers rerank sets document=None)
    assert all(item["document"] is None for item in results)
    tokens = body["meta"]["tokens"]["input_tokens"]
    assert tokens > 0 and body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert body["model"] == "rr" and body["id"]


def test_top_n_and_return_documents(worker):
    full = rerank(worker, query=QUERY, documents=DOCS).json()["results"]
    r = rerank(worker, query=QUERY, documents=DOCS, top_n=2, return_documents=True)
    results = r.json()["results"]
    assert [i["index"] for i in results] == [i["index"] for i in full[:2]]
    assert all(i["document"]["text"] == DOCS[i["index"]] for i in results)


def test_document_objects_are_accepted(worker):
    r = rerank(worker, query=QUERY, documents=[{"text": d} for d in DOCS[:2]])
    assert r.status_code == 200 and len(r.json()["results"]) == 2


def test_concurrent_requests_agree_with_single_ones(worker):
    queries = [f"question {i} about {w}" for i, w in enumerate(["Paris", "fruit", "Berlin"] * 3)]
    alone = {q: rerank(worker, query=q, documents=DOCS).json()["results"] for q in queries[:3]}
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        together = list(pool.map(lambda q: rerank(worker, query=q, documents=DOCS), queries))
    for q, r in zip(queries, together, strict=True):
        if q in alone:
            got = {i["index"]: i["relevance_score"] for i in r.json()["results"]}
            want = {i["index"]: i["relevance_score"] for i in alone[q]}
            assert got.keys() == want.keys()
            assert all(np.isclose(got[k], want[k], atol=1e-5) for k in got)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"documents": DOCS}, "query"),
        ({"query": QUERY, "documents": "one doc"}, "documents"),
        ({"query": QUERY, "documents": [1, 2]}, "each document"),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n"),
    ],
)
def test_bad_requests_are_clear_400s(worker, body, words):
    r = rerank(worker, **body)
    assert r.status_code == 400
    assert words in r.json()["error"]["message"]


def test_empty_documents_give_empty_results(worker):
    r = rerank(worker, query=QUERY, documents=[])
    assert r.status_code == 200 and r.json()["results"] == []
