"""llama.cpp engine through a real worker process, on SmolLM2-135M (GGUF, from PyPI)."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import openai
import orjson
import pytest

from local_runtime.engines.llama_cpp import LlamaCppEngine, find_gguf
from local_runtime.spec import ResolvedSpec
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf
from tests.support.worker import WorkerProcess, spec_dict

pytestmark = pytest.mark.slow

GGUF = smollm2_gguf()
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CAPITAL = {"role": "user", "content": "What is the capital of France?"}


def smol_spec(uid: str, **options: object) -> dict:
    """SmolLM2 on llama.cpp. One thread: the suite shares 2 cores with other tests, and
    llama.cpp's threads wait for each other at every step, which collapses when a core is
    taken away."""
    if GGUF is None:
        pytest.skip(SMOLLM2_MISSING)
    return spec_dict(
        uid=uid,
        model_name="smollm2",
        engine="llama.cpp",
        model_format="ggufv2",
        model_path=str(GGUF.parent),
        context_length=2048,
        engine_options={"n_threads": 1, "n_threads_batch": 1, **options},
    )


@pytest.fixture(scope="module")
def worker():
    with WorkerProcess(smol_spec("smol", n_parallel=4)) as w:
        yield w


@pytest.fixture(scope="module")
def client(worker):
    return openai.OpenAI(base_url=f"{worker.base_url}/v1", api_key="unused", max_retries=0)


def test_chat_answers_paris_with_usage(client):
    r = client.chat.completions.create(
        model="smol", messages=[SYSTEM, CAPITAL], temperature=0, max_tokens=30
    )
    assert "Paris" in r.choices[0].message.content
    assert r.model == "smol"
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_answers_carry_the_fields_openais_schema_requires(worker):
    """openai/openai-openapi openapi.yaml: a response choice requires `logprobs` and its message
    `refusal` (both null here); a stream chunk's choice requires `delta`, `finish_reason` and
    `index`. llama.cpp's own server leaves `refusal` out."""
    body = {"model": "smol", "messages": [SYSTEM, CAPITAL], "temperature": 0, "max_tokens": 8}
    choice = httpx.post(f"{worker.base_url}/v1/chat/completions", json=body, timeout=120).json()[
        "choices"
    ][0]
    assert "logprobs" in choice and choice["logprobs"] is None
    assert "refusal" in choice["message"] and choice["message"]["refusal"] is None
    with httpx.stream(
        "POST", f"{worker.base_url}/v1/chat/completions", json={**body, "stream": True}, timeout=120
    ) as resp:
        frames = [
            orjson.loads(line[len("data: ") :])
            for line in resp.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    choices = [c for f in frames for c in f["choices"]]
    assert choices and all({"delta", "finish_reason", "index"} <= set(c) for c in choices)


def test_streaming_with_usage_chunk(client):
    stream = client.chat.completions.create(
        model="smol",
        messages=[SYSTEM, CAPITAL],
        temperature=0,
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_four_concurrent_requests_each_get_their_answer(client):
    # Each asks for a different capital, so crossed streams would show up as wrong cities.
    # (Greedy answers are not bit-identical alone and batched: llama.cpp's numerics depend on
    # the batch, and this tiny model flips on near-ties; so compare meaning, not strings.)
    questions = {
        "France": "Paris",
        "Italy": "Rom",  # the model answers in Italian ("Roma") as often as not
        "Germany": "Berlin",
        "Japan": "Tokyo",
    }

    def ask(country: str) -> str:
        r = client.chat.completions.create(
            model="smol",
            messages=[SYSTEM, {"role": "user", "content": f"What is the capital of {country}?"}],
            temperature=0,
            max_tokens=30,
        )
        return r.choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = dict(zip(questions, pool.map(ask, questions), strict=True))
    # Crossed streams would put one country's city into another's answer: never allowed.
    for country, answer in answers.items():
        others = [city for other, city in questions.items() if other != country]
        assert answer and not any(city in answer for city in others), (country, answer)
    # In a batch of four the 135M model sometimes drifts on one prompt (seen: a French
    # ramble for France), so the quality bar is three of four, not four.
    right = [country for country, city in questions.items() if city in answers[country]]
    assert len(right) >= 3, answers


def test_stop_sequence_cuts_the_answer(client):
    r = client.chat.completions.create(
        model="smol", messages=[SYSTEM, CAPITAL], temperature=0, max_tokens=30, stop=["Paris"]
    )
    assert "Paris" not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"


def test_max_tokens_gives_length(client):
    r = client.chat.completions.create(
        model="smol", messages=[SYSTEM, CAPITAL], temperature=0, max_tokens=2
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 2


def test_completions_and_stream(client):
    r = client.completions.create(
        model="smol", prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert r.choices[0].text
    assert r.usage.completion_tokens > 0
    chunks = list(
        client.completions.create(
            model="smol", prompt="One, two, three,", max_tokens=5, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices)


def test_json_schema_response_format(client):
    import json

    r = client.chat.completions.create(
        model="smol",
        messages=[SYSTEM, {"role": "user", "content": "Give me a number as JSON."}],
        temperature=0,
        max_tokens=40,
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "n",
                "schema": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}},
                    "required": ["a"],
                },
            },
        },
    )
    assert isinstance(json.loads(r.choices[0].message.content)["a"], int)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {arg: {"type": "string"}},
                "required": [arg],
            },
        },
    }
    for name, description, arg in (
        ("get_weather", "The weather in a city", "city"),
        ("get_time", "The time in a time zone", "zone"),
    )
]
REQUIRED_ARG = {"get_weather": "city", "get_time": "zone"}
WEATHER = [SYSTEM, {"role": "user", "content": "What is the weather in Paris?"}]


def assert_call(call, names=frozenset(REQUIRED_ARG)) -> None:
    """A call to an offered function whose arguments follow its schema."""
    import json

    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in names
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments[REQUIRED_ARG[call.function.name]], str)


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        ({"type": "function", "function": {"name": "get_time"}}, {"get_time"}),
        ("required", set(REQUIRED_ARG)),
    ],
)
def test_a_forcing_tool_choice_gets_a_call(client, choice, names):
    """llama.cpp itself ignores these choices (SmolLM2 answers in prose); the engine constrains
    the answer to the call's JSON schema."""
    args = {"model": "smol", "messages": WEATHER, "tools": TOOLS, "tool_choice": choice}
    r = client.chat.completions.create(**args, temperature=0, max_tokens=60)
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.content is None
    [call] = r.choices[0].message.tool_calls
    assert_call(call, names)
    assert r.usage.completion_tokens > 0
    # streamed: the client's own accumulator joins the deltas into the same call
    with client.chat.completions.stream(**args, temperature=0, max_tokens=60) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    [streamed] = final.choices[0].message.tool_calls
    assert_call(streamed, names)
    assert (streamed.function.name, streamed.function.arguments) == (
        call.function.name,
        call.function.arguments,
    )


def test_a_forced_call_cut_by_max_tokens_comes_back_as_text(client):
    args = {"model": "smol", "messages": WEATHER, "tools": TOOLS, "tool_choice": "required"}
    r = client.chat.completions.create(**args, temperature=0, max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content and not r.choices[0].message.tool_calls
    chunks = list(client.chat.completions.create(**args, temperature=0, max_tokens=3, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"


def test_tools_the_template_cannot_render_are_refused(worker, client):
    """SmolLM2's template has no tools: llama.cpp would drop them without a word."""
    assert worker.health()["supports_tools"] is False
    for choice in (None, "auto"):
        extra = {"tool_choice": choice} if choice else {}
        with pytest.raises(openai.BadRequestError, match="does not render them") as info:
            client.chat.completions.create(model="smol", messages=WEATHER, tools=TOOLS, **extra)
        assert info.value.code == "tools_not_supported"
    # "none" asks for no call: the tools may go unseen
    r = client.chat.completions.create(
        model="smol", messages=WEATHER, tools=TOOLS, tool_choice="none", max_tokens=2
    )
    assert r.choices[0].message.content


def test_a_template_that_renders_tools_takes_them():
    from tests.support.scripted_llama import TOOLS_TEMPLATE

    with WorkerProcess(smol_spec("smol-tools", n_parallel=1, chat_template=TOOLS_TEMPLATE)) as w:
        assert w.health()["supports_tools"] is True
        api = openai.OpenAI(base_url=f"{w.base_url}/v1", api_key="unused", max_retries=0)
        r = api.chat.completions.create(
            model="smol-tools", messages=WEATHER, tools=TOOLS, temperature=0, max_tokens=40
        )
        assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
        # the tools are in the prompt: the template rendered them
        assert r.usage.prompt_tokens > 100


def test_a_forced_call_with_a_response_format_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="response_format cannot be combined"):
        client.chat.completions.create(
            model="smol",
            messages=WEATHER,
            tools=TOOLS,
            tool_choice="required",
            response_format={"type": "json_object"},
        )


def test_prompt_beyond_context_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "hello " * 3000}], max_tokens=5
        )
    assert "context" in str(info.value)


def test_bad_messages_is_a_400(worker):
    import httpx

    r = httpx.post(f"{worker.base_url}/v1/chat/completions", json={"messages": "hi"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_embeddings_are_refused_clearly(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="smol", input="x")
    assert "does not serve embeddings" in str(info.value)


def test_client_disconnect_mid_stream_frees_the_slot(worker, client):
    import httpx

    with httpx.stream(
        "POST",
        f"{worker.base_url}/v1/chat/completions",
        json={"messages": [CAPITAL], "max_tokens": 2000, "stream": True},
        timeout=120,
    ) as r:
        for _ in r.iter_lines():
            break  # hang up after the first event
    # The worker stays usable and its in-flight count returns to zero.
    deadline = time.monotonic() + 60
    while worker.health()["requests_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.health()["requests_in_flight"] == 0
    r = client.chat.completions.create(
        model="smol", messages=[SYSTEM, CAPITAL], temperature=0, max_tokens=5
    )
    assert r.choices[0].message.content


def test_match_refuses_non_gguf():
    spec = ResolvedSpec(
        uid="x",
        model_name="x",
        model_type="llm",
        engine="llama.cpp",
        model_format="pytorch",
        model_path="/tmp",
    )
    ok, reason = LlamaCppEngine.match(spec)
    assert not ok and "GGUF" in reason


def test_find_gguf_picks_first_shard_and_skips_mmproj(tmp_path):
    for name in ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf", "mmproj-f16.gguf"]:
        (tmp_path / name).write_bytes(b"")
    assert find_gguf(str(tmp_path)).name == "m-00001-of-00002.gguf"
    (tmp_path / "other-Q4_K_M.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="several"):
        find_gguf(str(tmp_path))
    assert find_gguf(str(tmp_path), quantization="q4_k_m").name == "other-Q4_K_M.gguf"
