"""Continuous batching in the transformers engine, on the tiny random llama (fp32, CPU).

Batching is proved by what cannot happen when requests are served one after another: fewer decode
passes than the requests' tokens add up to, and a peak batch above one. Greedy answers given in a
batch are checked against the same prompts alone and against transformers' own `generate()`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from local_runtime.engines.transformers import TransformersEngine
from local_runtime.engines.transformers_text import TextDelta
from tests.local_runtime.engines.test_transformers import collect, hf_spec

PROMPTS = [
    "hello world",
    "The capital of France is",
    "a",
    "what is the answer? The answer is forty-two! Embeddings turn sentences into vectors",
    "quick brown fox",
]


def greedy(text: str, max_tokens: int, **extra: object) -> dict:
    return {
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }


def content(out: dict) -> str:
    return out["choices"][0]["message"]["content"]


@contextmanager
def loaded(path: Path, **options: object) -> Iterator[TransformersEngine]:
    eng = TransformersEngine(hf_spec(path, engine_options=options))
    eng.load()
    try:
        yield eng
    finally:
        eng.unload()


@pytest.fixture
def engine(llama_path: Path) -> Iterator[TransformersEngine]:
    """A fresh engine per test, so its counters (steps, peak batch) start at zero."""
    with loaded(llama_path) as eng:
        yield eng


def test_text_delta_joins_split_characters_and_never_stalls(llama_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_path)
    ids = tok("naïve café 你好 👍 ok", add_special_tokens=False)["input_ids"]
    delta = TextDelta(tok)
    pieces = [delta.push(i) for i in ids]
    assert "".join(pieces) + delta.flush() == tok.decode(ids) == "naïve café 你好 👍 ok"
    assert "" in pieces  # a character split over byte tokens waited for its last byte
    # Lead bytes that never complete a character: held a character's worth, then let through.
    lone = [tok.convert_tokens_to_ids("ð")] * 8  # byte 0xF0 in the byte-level alphabet
    delta = TextDelta(tok)
    assert any(delta.push(i) for i in lone)


async def test_greedy_answer_equals_transformers_generate(engine: TransformersEngine) -> None:
    body = greedy(PROMPTS[0], 16)
    ours = content(await engine.chat(body))
    tok, model = engine._tokenizer, engine._model
    prompt = tok.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
    enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    assert ours == tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


async def test_concurrent_requests_share_decode_passes(engine: TransformersEngine) -> None:
    lengths = [24, 9, 17, 30, 12]
    bodies = [greedy(p, n) for p, n in zip(PROMPTS, lengths, strict=True)]
    alone = [await engine.chat(b) for b in bodies]
    assert engine.status()["peak_batch"] == 1
    steps = engine.status()["steps"]

    async def streamed(body: dict) -> tuple[str, list[dict]]:
        opts = {"stream": True, "stream_options": {"include_usage": True}}
        return await collect(await engine.chat({**body, **opts}))

    together = await asyncio.gather(
        *(streamed(b) if i % 2 else engine.chat(b) for i, b in enumerate(bodies))
    )
    for i, (solo, n) in enumerate(zip(alone, lengths, strict=True)):
        if i % 2:
            text, events = together[i]
            assert text == content(solo)
            assert events[-2]["choices"][0]["finish_reason"] == "length"
            assert events[-1]["usage"] == solo["usage"]
        else:
            assert content(together[i]) == content(solo)
            assert together[i]["usage"] == solo["usage"]
        assert solo["usage"]["completion_tokens"] == n
    # Alone, a request of n tokens takes n - 1 decode passes after its prefill; served one after
    # another these would take sum(n - 1) passes. Shared, they take about max(n).
    assert engine.status()["steps"] - steps < sum(n - 1 for n in lengths)
    assert engine.status()["peak_batch"] > 1
    assert (engine.status()["active"], engine.status()["waiting"]) == (0, 0)


async def test_limits_and_stop_strings_differ_within_one_batch(engine: TransformersEngine) -> None:
    reference = content(await engine.chat(greedy(PROMPTS[3], 30)))
    stop = reference[len(reference) // 2 : len(reference) // 2 + 3]
    cut = reference[: reference.index(stop)]
    sampled = {**greedy(PROMPTS[1], 13), "temperature": 1.0, "seed": 7}
    short, long_, stopped, stopped_stream, drawn = await asyncio.gather(
        engine.chat(greedy(PROMPTS[0], 5)),
        engine.chat(greedy(PROMPTS[2], 21)),
        engine.chat(greedy(PROMPTS[3], 30, stop=[stop, "@@never@@"])),
        engine.chat(greedy(PROMPTS[3], 30, stop=stop, stream=True)),
        engine.chat(sampled),
    )
    assert short["usage"]["completion_tokens"] == 5
    assert short["choices"][0]["finish_reason"] == "length"
    assert long_["usage"]["completion_tokens"] == 21
    assert content(stopped) == cut
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["usage"]["completion_tokens"] < 30
    text, events = await collect(stopped_stream)
    assert text == cut and events[-1]["choices"][0]["finish_reason"] == "stop"
    assert drawn["usage"]["completion_tokens"] == 13
    assert content(drawn) == content(await engine.chat(sampled))  # its seed, its own generator
    assert engine.status()["peak_batch"] > 1


async def test_a_client_that_leaves_frees_its_slot_at_once(llama_path: Path) -> None:
    with loaded(llama_path, max_batch=2) as engine:
        # Greedy: the tiny model never says <|im_end|>, so these run to 400 tokens unless cut.
        first = await engine.chat(greedy(PROMPTS[0], 400, stream=True))
        second = await engine.chat(greedy(PROMPTS[1], 400, stream=True))
        for stream in (first, second):
            await anext(stream)  # the role chunk: submitted
            await anext(stream)  # a token: running
        queued = await engine.chat(greedy(PROMPTS[3], 5, stream=True))
        await anext(queued)  # submitted; no slot for it
        waiting = asyncio.create_task(engine.chat(greedy(PROMPTS[2], 5)))
        await asyncio.sleep(0)  # let it queue too
        assert (engine.status()["active"], engine.status()["waiting"]) == (2, 2)
        await queued.aclose()  # a waiting client leaves the queue at once, no slot needed
        assert (engine.status()["waiting"], engine.status()["cancelled"]) == (1, 1)
        await first.aclose()  # returns once its row has left the batch
        assert engine.status()["cancelled"] == 2
        out = await waiting  # took the freed slot while `second` still runs
        assert out["usage"]["completion_tokens"] == 5
        assert engine.status()["active"] == 1
        await second.aclose()
        status = engine.status()
        assert (status["active"], status["waiting"], status["cancelled"]) == (0, 0, 3)


def sliding_copy(llama_path: Path, parent: Path) -> Path:
    """The tiny llama's weights as a Mistral with sliding-window attention (same math here)."""
    folder = parent / "tiny-mistral"
    shutil.copytree(llama_path, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=4096)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def sliding_path(llama_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sliding_copy(llama_path, tmp_path_factory.mktemp("sliding"))


async def test_unbatchable_model_is_served_one_at_a_time(
    sliding_path: Path, engine: TransformersEngine
) -> None:
    with loaded(sliding_path) as serial:
        status = serial.status()
        assert status["batching"] == "serial" and status["max_batch"] == 1
        assert "DynamicSlidingWindowLayer" in status["serial_reason"]
        reference = content(await engine.chat(greedy(PROMPTS[0], 20)))  # batched, same weights
        stop = reference[10:13]
        plain, streamed, stopped = await asyncio.gather(
            serial.chat(greedy(PROMPTS[0], 20)),
            collect(await serial.chat(greedy(PROMPTS[0], 20, stream=True))),
            serial.chat(greedy(PROMPTS[0], 20, stop=stop)),
        )
        assert content(plain) == streamed[0] == reference
        assert plain["usage"]["completion_tokens"] == 20
        assert content(stopped) == reference[: reference.index(stop)]
        assert serial.status()["peak_batch"] == 1
        left = await serial.chat(greedy(PROMPTS[1], 400, stream=True))
        await anext(left)
        await anext(left)
        await left.aclose()
        assert (serial.status()["active"], serial.status()["cancelled"]) == (0, 1)
        assert (await serial.chat(greedy(PROMPTS[2], 3)))["usage"]["completion_tokens"] == 3
