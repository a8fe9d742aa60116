"""Chat answers carry `logprobs: null` on each choice and `message.refusal: null`, as OpenAI does.

openai/openai-openapi openapi.yaml (commit f85dbe2): CreateChatCompletionResponse's choices are
`required: [finish_reason, index, message, logprobs]` and ChatCompletionResponseMessage is
`required: [role, content, refusal]`; stream chunks' choices require `delta, finish_reason,
index` only. The fake upstream answers like llama.cpp and Ollama do, without either field.
"""

from __future__ import annotations

import httpx
import orjson

from tests.conftest import Gateway
from tests.support.fake_openai import FakeOpenAI

ASK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _gateway(gateway: Gateway, fake_upstream: FakeOpenAI) -> str:
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="m")
    return gateway.create_token()


def test_relayed_answer_gets_the_required_fields(gateway: Gateway, fake_upstream: FakeOpenAI):
    key = _gateway(gateway, fake_upstream)
    raw = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=ASK,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert raw.status_code == 200
    choice = raw.json()["choices"][0]
    assert "logprobs" in choice and choice["logprobs"] is None
    assert "refusal" in choice["message"] and choice["message"]["refusal"] is None

    reply = gateway.openai(key).chat.completions.create(**ASK)  # type: ignore[call-overload]
    message = reply.choices[0].message
    # the SDK records which fields the JSON carried: both came from the wire
    assert "refusal" in message.model_fields_set and message.refusal is None
    assert "logprobs" in reply.choices[0].model_fields_set


def test_streamed_chunks_keep_the_required_choice_fields(
    gateway: Gateway, fake_upstream: FakeOpenAI
):
    key = _gateway(gateway, fake_upstream)
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={**ASK, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as resp:
        frames = [
            orjson.loads(line[len("data: ") :])
            for line in resp.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    choices = [c for f in frames for c in f["choices"]]
    assert choices and all({"delta", "finish_reason", "index"} <= set(c) for c in choices)
