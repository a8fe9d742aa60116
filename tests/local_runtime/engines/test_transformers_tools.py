"""Tool calls and the bounded queue of the transformers engine.

Tool calls run on a tiny llama whose every answer is a fixed script (text, then two Hermes-style
calls; `tests/support/scripted_llama.py`), with a Qwen2.5-style template that renders tools: the
real tokenizer, template, scheduler, detokenizer and stream carry it, and the engine's parser has
to find the calls in it. The queue runs on the random tiny llama, which never ends an answer of
its own, so a long request holds its slot until its client leaves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_runtime.batching import Overloaded
from local_runtime.engines.base import EngineError
from local_runtime.engines.transformers import TransformersEngine
from tests.local_runtime.engines.test_transformers import collect, hf_spec
from tests.support.scripted_llama import TOOL_SCRIPT, build_scripted_llama
from tests.support.worker import WorkerProcess

SCRIPT = "".join(TOOL_SCRIPT)
ASK = [{"role": "user", "content": "What is the weather in Paris, and the time in CET?"}]


def tool(name: str, arg: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} for a {arg}",
            "parameters": {
                "type": "object",
                "properties": {arg: {"type": "string"}},
                "required": [arg],
            },
        },
    }


TOOLS = [tool("get_weather", "city"), tool("get_time", "zone")]
CALLS = [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]
HISTORY = [
    *ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
]


@pytest.fixture(scope="module")
def scripted_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_scripted_llama(tmp_path_factory.mktemp("scripted") / "model")


# A model that, left to choose, answers without a call; handed the start of a call (what a forcing
# tool_choice writes at the end of the prompt), it finishes the call.
DECLINE = "No tool is needed."
NAMED_OPENING = '<tool_call>\n{"name": "get_weather", "arguments": '
REQUIRED_OPENING = '<tool_call>\n{"name": "'
FORCEABLE = {
    "script": (DECLINE,),
    "branches": (
        (NAMED_OPENING, '{"city": "Paris"}}\n</tool_call>'),
        (REQUIRED_OPENING, 'get_time", "arguments": {"zone": "CET"}}\n</tool_call>'),
    ),
}


@pytest.fixture(scope="module")
def forceable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersEngine]:
    path = build_scripted_llama(tmp_path_factory.mktemp("forceable") / "model", **FORCEABLE)
    eng = TransformersEngine(hf_spec(path))
    eng.load()
    yield eng
    eng.unload()


@pytest.fixture(scope="module")
def scripted(scripted_path: Path) -> Iterator[TransformersEngine]:
    eng = TransformersEngine(hf_spec(scripted_path))
    eng.load()
    yield eng
    eng.unload()


def calls_of(tool_calls: list) -> list[tuple[str, dict]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in tool_calls]


def stream_calls(events: list[dict]) -> list[dict]:
    """Join `delta.tool_calls` by index, as OpenAI clients do."""
    joined: dict[int, dict] = {}
    for event in events:
        for choice in event["choices"]:
            for part in choice.get("delta", {}).get("tool_calls") or []:
                call = joined.setdefault(part["index"], {"function": {"arguments": ""}})
                call.update({k: part[k] for k in ("id", "type") if k in part})
                call["function"]["name"] = part["function"].get("name") or call["function"].get(
                    "name"
                )
                call["function"]["arguments"] += part["function"].get("arguments", "")
    return [joined[i] for i in sorted(joined)]


# --- tool calls, in process ------------------------------------------------------------------


async def test_the_scripted_model_says_its_script(scripted: TransformersEngine) -> None:
    out = await scripted.chat({"messages": ASK})  # sampled at temperature 1: still the script
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": SCRIPT,
        "refusal": None,  # openai-openapi: required, null unless refused
    }
    assert out["choices"][0]["finish_reason"] == "stop"


async def test_tool_calls_non_stream(scripted: TransformersEngine) -> None:
    out = await scripted.chat({"messages": ASK, "tools": TOOLS})
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == "Let me check."
    assert calls_of(message["tool_calls"]) == CALLS
    assert all(
        c["type"] == "function" and c["id"].startswith("call_") for c in message["tool_calls"]
    )
    assert len({c["id"] for c in message["tool_calls"]}) == 2
    assert out["usage"]["completion_tokens"] == len(TOOL_SCRIPT) + 1  # and the end-of-turn token


async def test_tool_calls_stream(scripted: TransformersEngine) -> None:
    body = {"messages": ASK, "tools": TOOLS, "stream": True, "tool_choice": "auto"}
    text, events = await collect(await scripted.chat(body))
    assert text == "Let me check."
    assert calls_of(stream_calls(events)) == CALLS
    firsts = [
        part
        for e in events
        for part in e["choices"][0]["delta"].get("tool_calls") or []
        if "id" in part
    ]
    assert [(p["index"], p["function"]["name"], p["function"]["arguments"]) for p in firsts] == [
        (0, "get_weather", ""),
        (1, "get_time", ""),
    ]
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # the text of a call never leaks into content, even though its tags came split over tokens
    assert all("<tool" not in (e["choices"][0]["delta"].get("content") or "") for e in events)


async def test_an_unknown_function_comes_back_as_text(scripted: TransformersEngine) -> None:
    body = {"messages": ASK, "tools": TOOLS[:1]}  # get_time is not offered
    out = await scripted.chat(body)
    message = out["choices"][0]["message"]
    assert calls_of(message["tool_calls"]) == CALLS[:1]
    raw = '\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
    assert message["content"] == "Let me check." + raw
    text, events = await collect(await scripted.chat({**body, "stream": True}))
    assert text == message["content"]
    assert calls_of(stream_calls(events)) == CALLS[:1]


@pytest.mark.parametrize("body", [{}, {"tools": TOOLS, "tool_choice": "none"}])
async def test_without_parsing_the_text_is_content(
    scripted: TransformersEngine, body: dict
) -> None:
    out = await scripted.chat({"messages": ASK, **body})
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": SCRIPT,
        "refusal": None,  # openai-openapi: required, null unless refused
    }
    assert out["choices"][0]["finish_reason"] == "stop"
    text, events = await collect(await scripted.chat({"messages": ASK, **body, "stream": True}))
    assert text == SCRIPT and not stream_calls(events)


async def test_a_call_cut_by_max_tokens_is_text(scripted: TransformersEngine) -> None:
    body = {"messages": ASK, "tools": TOOLS, "max_tokens": 3}
    out = await scripted.chat(body)
    assert out["choices"][0]["message"]["content"] == "".join(TOOL_SCRIPT[:3])
    assert "tool_calls" not in out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "length"
    text, events = await collect(await scripted.chat({**body, "stream": True}))
    assert text == "".join(TOOL_SCRIPT[:3])
    assert events[-1]["choices"][0]["finish_reason"] == "length"


async def test_a_model_left_to_choose_declines(forceable: TransformersEngine) -> None:
    for choice in (None, "auto"):
        out = await forceable.chat({"messages": ASK, "tools": TOOLS, "tool_choice": choice})
        assert out["choices"][0]["message"] == {
            "role": "assistant",
            "content": DECLINE,
            "refusal": None,  # openai-openapi: required, null unless refused
        }


@pytest.mark.parametrize(
    ("choice", "call"),
    [
        ({"type": "function", "function": {"name": "get_weather"}}, CALLS[0]),
        ("required", CALLS[1]),
    ],
)
async def test_a_forcing_tool_choice_gets_a_call(
    forceable: TransformersEngine, choice: object, call: tuple[str, dict]
) -> None:
    body = {"messages": ASK, "tools": TOOLS, "tool_choice": choice}
    out = await forceable.chat(body)
    message = out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None and calls_of(message["tool_calls"]) == [call]
    # the opening is prompt: billed as such, not as what the model wrote (one token + the end)
    assert out["usage"]["completion_tokens"] == 2
    text, events = await collect(await forceable.chat({**body, "stream": True}))
    assert text == "" and calls_of(stream_calls(events)) == [call]
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_template_renders_tools_choice_and_history(scripted: TransformersEngine) -> None:
    from local_runtime.engines.toolcalls import read_tools
    from local_runtime.engines.transformers_text import chat_messages

    named = {"type": "function", "function": {"name": "get_time"}}
    body = {"messages": HISTORY, "tools": TOOLS, "tool_choice": named}
    prompt = scripted._chat_prompt(chat_messages(body["messages"]), read_tools(body))
    assert json.dumps(TOOLS[1]) in prompt
    assert "\nCall get_time now." in prompt  # the template reads tool_choice: it got it
    # the history's JSON-string arguments reach the template as an object, written once
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert "<tool_response>\nsunny, 21 C\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


async def test_a_template_without_tools_refuses_them(llama_path: Path) -> None:
    eng = TransformersEngine(hf_spec(llama_path, engine_options={"max_tokens": 2}))
    eng.load()
    try:
        with pytest.raises(EngineError, match="does not render them") as err:
            await eng.chat({"messages": ASK, "tools": TOOLS})
        assert (err.value.status, err.value.code) == (400, "tools_not_supported")
        out = await eng.chat({"messages": HISTORY, "tools": TOOLS, "tool_choice": "none"})
        assert "tool_calls" not in out["choices"][0]["message"]
    finally:
        eng.unload()


# --- the bounded queue, in process -----------------------------------------------------------


def long_request(**extra: object) -> dict:
    """Greedy on the random llama: never ends by itself, so it holds its slot until cancelled."""
    return {"messages": ASK, "temperature": 0, "max_tokens": 50_000, **extra}


async def test_a_full_queue_refuses_at_once_with_429(llama_path: Path) -> None:
    spec = hf_spec(
        llama_path, context_length=100_000, engine_options={"max_batch": 1, "max_queue": 1}
    )
    eng = TransformersEngine(spec)
    eng.load()
    try:
        running = await eng.chat(long_request(stream=True))
        await anext(running)  # the role chunk: submitted
        await anext(running)  # a token: it holds the only slot
        queued = await eng.chat(long_request(stream=True))
        await anext(queued)
        assert {k: eng.status()[k] for k in ("active", "waiting", "max_queue")} == {
            "active": 1,
            "waiting": 1,
            "max_queue": 1,
        }
        for body in (long_request(), long_request(stream=True)):
            with pytest.raises(Overloaded, match="retry later, or launch another replica") as err:
                await eng.chat(body)
            assert (err.value.status, err.value.code) == (429, "rate_limit_exceeded")
        assert eng.status()["waiting"] == 1  # the refused ones left nothing behind
        await queued.aclose()
        out = await eng.chat(long_request(stream=True))  # room again
        await anext(out)
        await out.aclose()
        await running.aclose()
        assert (eng.status()["active"], eng.status()["waiting"]) == (0, 0)
    finally:
        eng.unload()


def test_max_queue_defaults_to_eight_batches(llama_path: Path) -> None:
    eng = TransformersEngine(hf_spec(llama_path, engine_options={"max_batch": 3}))
    eng.load()
    try:
        assert (eng.status()["max_batch"], eng.status()["max_queue"]) == (3, 24)
    finally:
        eng.unload()
    with pytest.raises(ValueError, match="max_queue"):
        TransformersEngine(hf_spec(llama_path, engine_options={"max_queue": 0})).load()


# --- through the real worker process, with the official openai client ------------------------


@pytest.fixture(scope="module")
def tools_worker(scripted_path: Path) -> Iterator[WorkerProcess]:
    with WorkerProcess(hf_spec(scripted_path).model_dump()) as worker:
        yield worker


def client(worker: WorkerProcess):
    from openai import OpenAI

    return OpenAI(base_url=f"{worker.base_url}/v1", api_key="unused", max_retries=0)


def test_worker_returns_tool_calls(tools_worker: WorkerProcess) -> None:
    api = client(tools_worker)
    out = api.chat.completions.create(model="tiny-llm", messages=ASK, tools=TOOLS)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert calls == CALLS
    # the conversation goes on: the call and its result render, the model answers again
    again = api.chat.completions.create(
        model="tiny-llm", messages=[*HISTORY, {"role": "user", "content": "thanks"}], tools=TOOLS
    )
    assert again.choices[0].finish_reason == "tool_calls"


def test_worker_streams_tool_calls(tools_worker: WorkerProcess) -> None:
    api = client(tools_worker)
    # the client's own accumulator joins the deltas: proof that they have OpenAI's shape
    with api.chat.completions.stream(model="tiny-llm", messages=ASK, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert calls == CALLS
    assert all(c.id.startswith("call_") and c.type == "function" for c in choice.message.tool_calls)


@pytest.fixture(scope="module")
def busy_worker(llama_path: Path) -> Iterator[WorkerProcess]:
    spec = hf_spec(
        llama_path, context_length=100_000, engine_options={"max_batch": 1, "max_queue": 1}
    )
    with WorkerProcess(spec.model_dump()) as worker:
        yield worker


def test_worker_answers_429_when_its_queue_is_full(busy_worker: WorkerProcess) -> None:
    import itertools
    import time

    import httpx
    import openai

    api = client(busy_worker)
    args = {"model": "tiny-llm", "messages": ASK, "temperature": 0, "max_tokens": 50_000}
    running = api.chat.completions.create(**args, stream=True)
    assert len(list(itertools.islice(running, 2))) == 2  # a token: it holds the only slot
    queued = api.chat.completions.create(**args, stream=True)
    assert len(list(itertools.islice(queued, 1))) == 1  # its role chunk: it waits
    health = busy_worker.health()
    assert (health["active"], health["waiting"], health["max_queue"]) == (1, 1, 1)
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as err:
            api.chat.completions.create(**args, stream=stream)
        assert err.value.status_code == 429
        body = err.value.response.json()
        assert body["error"]["type"] == "rate_limit_error"
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert "launch another replica" in body["error"]["message"]
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert err.value.response.headers["retry-after"]
    queued.close()
    running.close()
    deadline = time.monotonic() + 60  # a bound on waiting for the worker to see them go
    while (health := busy_worker.health())["active"] or health["waiting"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    with httpx.Client(timeout=60) as http:  # the slot and the queue are free again
        r = http.post(f"{busy_worker.base_url}/v1/chat/completions", json={**args, "max_tokens": 2})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
