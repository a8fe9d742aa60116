"""Sampling fields of the transformers engine: validation, the logits arithmetic, and the engine's
answers checked against transformers' own `generate()` on the tiny random llama (fp32, CPU),
batched and one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from local_runtime.engines.base import EngineError
from local_runtime.engines.transformers import TransformersEngine
from local_runtime.engines.transformers_sampling import (
    Sampling,
    adjust_logits,
    draw_probs,
    parse_sampling,
)
from tests.local_runtime.engines.test_transformers_batch import (
    PROMPTS,
    content,
    greedy,
    loaded,
)

VOCAB = 1000
Adjust = Callable[[torch.Tensor, list[int]], None]


def sampling(**kw: object) -> Sampling:
    return parse_sampling(kw, VOCAB)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"frequency_penalty": 2.5}, "frequency_penalty must be between -2.0 and 2.0"),
        ({"presence_penalty": "1"}, "presence_penalty must be a number"),
        ({"repetition_penalty": 0}, "repetition_penalty must be above 0"),
        ({"repetition_penalty": 3}, "repetition_penalty must be between"),
        ({"top_k": -2}, "top_k must be an integer >= -1"),
        ({"top_k": 2.5}, "top_k must be an integer"),
        ({"min_p": 1.5}, "min_p must be between"),
        ({"logit_bias": {"1000": 5}}, "not a token id of this model"),
        ({"logit_bias": {"abc": 5}}, "not a token id"),
        ({"logit_bias": {"5": 101}}, "between -100 and 100"),
        ({"logit_bias": [1, 2]}, "logit_bias must be an object"),
    ],
)
def test_bad_sampling_fields_are_refused(body: dict, needle: str) -> None:
    with pytest.raises(EngineError, match=needle) as err:
        parse_sampling(body, VOCAB)
    assert err.value.status == 400


def test_adjust_logits_bias_then_penalties() -> None:
    scores = torch.tensor([1.0, -1.0, 0.5, 2.0, 0.0])
    s = sampling(
        logit_bias={"3": -100, "4": 1.5},
        repetition_penalty=2.0,
        frequency_penalty=0.5,
        presence_penalty=0.1,
    )
    adjust_logits(scores, s, prompt=[0], output=[1, 1, 2])
    # 0: seen in the prompt, positive -> halved; 1: twice in the output, negative -> doubled,
    # then 2 x 0.5 + 0.1; 2: once -> halved, then 0.5 + 0.1; 3: biased only; 4: biased only
    expected = torch.tensor([0.5, -2.0 - 1.0 - 0.1, 0.25 - 0.5 - 0.1, -98.0, 1.5])
    assert torch.allclose(scores, expected)


def test_no_adjustment_asked_means_none_made() -> None:
    assert not sampling(temperature=0.7, top_p=0.9, top_k=5, min_p=0.1).adjusts_logits
    assert sampling(presence_penalty=-0.5).adjusts_logits


def test_draw_probs_top_k_and_min_p() -> None:
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.3, 0.15, 0.05]]))
    probs = draw_probs(scores.clone(), [sampling(top_k=2), sampling(min_p=0.5)], default_top_k=0)
    assert torch.count_nonzero(probs[0]).item() == 2 and probs[0, 2:].sum() == 0
    # min_p 0.5: only tokens at least half as likely as the best (0.5, 0.3) stay
    assert torch.count_nonzero(probs[1]).item() == 2 and probs[1, 2:].sum() == 0
    # the checkpoint's top_k applies unless the request names its own; 0 and -1 turn it off
    both = [sampling(), sampling(top_k=-1)]
    probs = draw_probs(scores.clone(), both, default_top_k=1)
    assert [torch.count_nonzero(row).item() for row in probs] == [1, 4]


@pytest.fixture
def engine(llama_path: Path):
    with loaded(llama_path) as eng:
        yield eng


def hf_greedy(engine: TransformersEngine, body: dict, **generate: object) -> str:
    tok, model = engine._tokenizer, engine._model
    prompt = tok.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
    enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
    out = model.generate(
        **enc,
        max_new_tokens=body["max_tokens"],
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        **generate,
    )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def reference_greedy(engine: TransformersEngine, body: dict, adjust: Adjust) -> list[int]:
    """Greedy decoding by the book: a full forward pass per token (no KV cache, no batch), the
    logits changed by `adjust(logits, output_so_far)` before the argmax."""
    tok, model = engine._tokenizer, engine._model
    prompt = tok.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(body["max_tokens"]):
            logits = model(torch.tensor([ids + out])).logits[0, -1].float()
            adjust(logits, out)
            out.append(int(logits.argmax()))
    return out


async def test_frequency_penalty_matches_the_definition(engine: TransformersEngine) -> None:
    body = greedy(PROMPTS[0], 24)
    plain = reference_greedy(engine, body, lambda logits, out: None)
    assert len(set(plain)) < len(plain)  # random weights loop when decoding greedily

    def per_use(logits: torch.Tensor, out: list[int]) -> None:
        for token in out:  # OpenAI: minus the penalty for each earlier use in the output
            logits[token] -= 2.0

    # logits of random weights span well under 2, so a penalty of 2 per use forbids any repeat
    penalized = reference_greedy(engine, body, per_use)
    assert len(set(penalized)) == len(penalized)
    ours = content(await engine.chat({**body, "frequency_penalty": 2.0}))
    assert ours == engine._tokenizer.decode(penalized, skip_special_tokens=True)
    assert content(await engine.chat(body)) == engine._tokenizer.decode(plain)


async def test_repetition_penalty_equals_transformers_generate(engine: TransformersEngine) -> None:
    body = greedy(PROMPTS[1], 24)
    plain = content(await engine.chat(body))
    penalized = content(await engine.chat({**body, "repetition_penalty": 1.8}))
    assert penalized == hf_greedy(engine, body, repetition_penalty=1.8)
    assert penalized != plain  # the penalty changed the answer of this model


async def test_logit_bias_forces_and_forbids_tokens(engine: TransformersEngine) -> None:
    body = greedy(PROMPTS[2], 6)
    forced = engine._tokenizer.convert_tokens_to_ids("x")
    out = await engine.chat({**body, "logit_bias": {str(forced): 100}})
    assert content(out) == "x" * 6
    first = reference_greedy(engine, body, lambda logits, out: None)[0]

    def forbid(logits: torch.Tensor, out: list[int]) -> None:
        logits[first] -= 100

    expected = engine._tokenizer.decode(reference_greedy(engine, body, forbid))
    out = await engine.chat({**body, "logit_bias": {str(first): -100}})
    assert content(out) == expected


async def test_top_k_one_and_min_p_one_sample_the_greedy_answer(
    engine: TransformersEngine,
) -> None:
    body = greedy(PROMPTS[3], 16)
    reference = content(await engine.chat(body))
    hot = {**body, "temperature": 1.8}
    for extra in ({"top_k": 1}, {"min_p": 1.0}):
        for seed in (1, 2, 3):
            assert content(await engine.chat({**hot, **extra, "seed": seed})) == reference


async def test_rows_of_one_batch_keep_their_own_penalties(engine: TransformersEngine) -> None:
    bodies = [
        greedy(PROMPTS[0], 20, frequency_penalty=2.0),
        greedy(PROMPTS[1], 20),
        greedy(PROMPTS[1], 20, repetition_penalty=1.8),
        greedy(PROMPTS[4], 20, presence_penalty=-2.0),
    ]
    alone = [content(await engine.chat(b)) for b in bodies]
    together = await asyncio.gather(*(engine.chat(b) for b in bodies))
    assert engine.status()["peak_batch"] > 1
    assert [content(out) for out in together] == alone


async def test_the_one_at_a_time_path_applies_them_too(
    llama_path: Path, engine: TransformersEngine, tmp_path: Path
) -> None:
    from tests.local_runtime.engines.test_transformers_batch import sliding_copy

    with loaded(sliding_copy(llama_path, tmp_path)) as serial:
        assert serial.status()["batching"] == "serial"
        for extra in (
            {"repetition_penalty": 1.8},
            {"frequency_penalty": 2.0, "presence_penalty": 0.5},
            {"logit_bias": {"5": 100}},
        ):
            body = greedy(PROMPTS[1], 16, **extra)
            assert content(await serial.chat(body)) == content(await engine.chat(body))
