"""Embeddings engine through a real worker, on all-MiniLM-L6-v2 (from PyPI), with the openai client."""

from __future__ import annotations

import base64
import concurrent.futures

import httpx
import numpy as np
import openai
import pytest

from tests.support.starter_models import MINILM_MISSING, minilm_dir
from tests.support.worker import WorkerProcess, spec_dict

pytestmark = pytest.mark.slow

MODEL_DIR = minilm_dir()
SENTENCES = [f"Sentence number {i} talks about {topic}." for i, topic in enumerate(
    ["cats", "the stock market", "rain in Paris", "quantum physics", "a red bicycle", "tea",
     "football", "the moon"] * 2
)]  # fmt: skip


@pytest.fixture(scope="module")
def reference():
    """The same model in-process: what the worker must reproduce."""
    if MODEL_DIR is None:
        pytest.skip(MINILM_MISSING)
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MODEL_DIR), device="cpu")


@pytest.fixture(scope="module")
def worker(reference):
    spec = spec_dict(
        uid="minilm",
        model_name="all-MiniLM-L6-v2",
        model_type="embedding",
        engine="sentence_transformers",
        model_format="pytorch",
        model_path=str(MODEL_DIR),
        engine_options={"max_batch_size": 16, "max_wait_ms": 5, "torch_threads": 1},
    )
    with WorkerProcess(spec) as w:
        yield w


@pytest.fixture(scope="module")
def client(worker):
    return openai.OpenAI(base_url=f"{worker.base_url}/v1", api_key="unused", max_retries=0)


def close(a, b) -> bool:
    return np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b), atol=1e-5)


def test_single_string(client, reference):
    r = client.embeddings.create(model="minilm", input="hello world", encoding_format="float")
    assert r.model == "minilm"
    assert len(r.data) == 1 and len(r.data[0].embedding) == 384
    assert close(r.data[0].embedding, reference.encode("hello world"))
    # [CLS] hello world [SEP]
    assert r.usage.prompt_tokens == r.usage.total_tokens == 4


def test_list_keeps_order(client, reference):
    r = client.embeddings.create(model="minilm", input=SENTENCES[:5], encoding_format="float")
    assert [d.index for d in r.data] == list(range(5))
    expected = reference.encode(SENTENCES[:5])
    for item, vector in zip(r.data, expected, strict=True):
        assert close(item.embedding, vector)


def test_base64(worker, reference):
    r = httpx.post(
        f"{worker.base_url}/v1/embeddings",
        json={"input": ["a b c", "d e"], "encoding_format": "base64"},
    )
    assert r.status_code == 200
    data = r.json()["data"]
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data]
    assert close(decoded[0], reference.encode("a b c"))
    assert close(decoded[1], reference.encode("d e"))


def test_openai_client_default_base64_path(client, reference):
    # Without encoding_format the client asks for base64 and decodes it itself.
    r = client.embeddings.create(model="minilm", input="tea time")
    assert close(r.data[0].embedding, reference.encode("tea time"))


def test_sixteen_concurrent_requests_get_their_own_vectors(worker, client, reference):
    before = worker.health()["batching"]["batches_run"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(
            pool.map(
                lambda s: (
                    client.embeddings.create(model="minilm", input=s, encoding_format="float")
                    .data[0]
                    .embedding
                ),
                SENTENCES,
            )
        )
    expected = reference.encode(SENTENCES)
    for vector, want in zip(got, expected, strict=True):
        assert close(vector, want)
    batches = worker.health()["batching"]["batches_run"] - before
    assert 1 <= batches <= len(SENTENCES)


def test_dimensions_equal_to_native_is_accepted(client):
    r = client.embeddings.create(model="minilm", input="x", dimensions=384, encoding_format="float")
    assert len(r.data[0].embedding) == 384


def test_smaller_dimensions_refused_for_non_matryoshka_model(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="minilm", input="x", dimensions=128)
    assert "dimensions" in str(info.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"input": [1, 2, 3]}, "token arrays"),
        ({"input": [[1, 2], [3]]}, "token arrays"),
        ({"input": []}, "non-empty"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 4096}, "dimensions"),
    ],
)
def test_bad_requests_are_clear_400s(worker, body, words):
    r = httpx.post(f"{worker.base_url}/v1/embeddings", json=body)
    assert r.status_code == 400
    assert words in r.json()["error"]["message"]


def test_chat_is_refused(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "x"}])


def test_matryoshka_truncates_and_renormalises(reference):
    """In-process (the worker path is the same code): truncation + unit norm."""
    import asyncio

    from local_runtime.engines.sentence_transformers import SentenceTransformersEngine
    from local_runtime.spec import ResolvedSpec

    spec = ResolvedSpec(
        uid="m",
        model_name="m",
        model_type="embedding",
        engine="sentence_transformers",
        model_format="pytorch",
        model_path=str(MODEL_DIR),
        engine_options={"matryoshka": True},
    )
    engine = SentenceTransformersEngine(spec)
    engine.load()

    async def go():
        try:
            return await engine.embeddings({"input": "hello", "dimensions": 64})
        finally:
            engine.unload()

    vector = np.asarray(asyncio.run(go())["data"][0]["embedding"])
    full = reference.encode("hello")
    assert vector.shape == (64,)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    assert close(vector, full[:64] / np.linalg.norm(full[:64]))
