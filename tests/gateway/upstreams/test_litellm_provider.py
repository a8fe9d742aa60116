"""LitellmUpstream against fake Anthropic and Gemini servers speaking the real wire formats.

What the fakes record is what litellm actually put on the wire, so these tests check the
translation (model mapping, system placement, max_tokens) as well as what the relay gets back.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.upstreams.base import (
    Endpoint,
    Timeouts,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimedOut,
    UpstreamUnavailable,
)
from gateway.upstreams.litellm_convert import api_base_for, provider_message
from gateway.upstreams.litellm_provider import LitellmUpstream, StreamInterrupted
from tests.support.fake_anthropic import RETRY_AFTER, FakeAnthropic, start_fake_anthropic
from tests.support.fake_gemini import FakeGemini, start_fake_gemini
from tests.support.provider_server import fake_vector

ROOT = Path(__file__).resolve().parents[3]
HAIKU = "claude-3-5-haiku-20241022"
GEMINI = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[FakeAnthropic]:
    fake = start_fake_anthropic()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[FakeGemini]:
    fake = start_fake_gemini()
    yield fake
    fake.stop()


@pytest.fixture
def anthropic(anthropic_server: FakeAnthropic) -> FakeAnthropic:
    anthropic_server.reset()
    return anthropic_server


@pytest.fixture
def gemini(gemini_server: FakeGemini) -> FakeGemini:
    gemini_server.reset()
    return gemini_server


@pytest.fixture(scope="module")
def upstream() -> LitellmUpstream:
    return LitellmUpstream()


def endpoint(
    url: str, key: str | None, provider: str, mapping: dict[str, str] | None = None
) -> Endpoint:
    return Endpoint(
        channel_id=7,
        channel_name=f"{provider}-test",
        kind="litellm",
        base_url=url,
        api_key=key,
        model_mapping=mapping or {},
        config={"provider": provider},
    )


def chat(model: str, *, stream: bool = False, **params: Any) -> UpstreamRequest:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi there"},
        ],
        "stream": stream,
        **params,
    }
    return UpstreamRequest("chat", model, stream, body, orjson.dumps(body))


def error_of(resp: UpstreamResponse) -> dict[str, Any]:
    assert resp.stream is None and resp.body is not None
    err = orjson.loads(resp.body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


async def read_frames(resp: UpstreamResponse) -> list[bytes]:
    assert resp.status == 200 and resp.stream is not None
    return [frame async for frame in resp.stream]


def chunks_of(frames: list[bytes]) -> list[dict[str, Any]]:
    assert frames[-1] == b"data: [DONE]\n\n"
    for frame in frames:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    return [orjson.loads(f[len(b"data: ") :]) for f in frames[:-1]]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_importing_the_adaptor_does_not_import_litellm() -> None:
    code = "import sys, gateway.upstreams.litellm_provider; print('litellm' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "False"


# -- Anthropic -----------------------------------------------------------------------------------


async def test_anthropic_chat_maps_model_and_places_system(
    upstream: LitellmUpstream, anthropic: FakeAnthropic
) -> None:
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic", {"claude-x": HAIKU})
    resp = await upstream.send(chat("claude-x", max_tokens=64, temperature=0.2), ep)

    assert resp.status == 200 and resp.headers["content-type"] == "application/json"
    data = orjson.loads(resp.body or b"")
    assert data["object"] == "chat.completion"
    # refusal and logprobs: required by OpenAI's schema (openai/openai-openapi openapi.yaml,
    # ChatCompletionResponseMessage and CreateChatCompletionResponse's choices), null here
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello from the fake.",
        "refusal": None,
    }
    assert data["choices"][0]["finish_reason"] == "stop" and data["choices"][0]["logprobs"] is None
    assert data["usage"]["prompt_tokens"] == 11
    assert data["usage"]["completion_tokens"] == 7
    assert data["usage"]["total_tokens"] == 18

    (sent,) = anthropic.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == anthropic.api_key
    assert sent.headers["anthropic-version"]
    assert sent.body["model"] == HAIKU
    assert sent.body["max_tokens"] == 64
    assert sent.body["temperature"] == 0.2
    system = sent.body["system"]
    system_text = system if isinstance(system, str) else "".join(p["text"] for p in system)
    assert system_text == "be brief"
    assert [m["role"] for m in sent.body["messages"]] == ["user"]


async def test_anthropic_stream_assembles_text_and_ends_with_usage(
    upstream: LitellmUpstream, anthropic: FakeAnthropic
) -> None:
    anthropic.set_behaviour(chunks=["One", ", two", ", three"], input_tokens=21, output_tokens=5)
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic", {"claude-x": HAIKU})
    resp = await upstream.send(chat("claude-x", stream=True, max_tokens=32), ep)

    assert resp.headers["content-type"] == "text/event-stream"
    chunks = chunks_of(await read_frames(resp))
    assert text_of(chunks) == "One, two, three"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    last = chunks[-1]
    assert last["choices"] == []
    assert (last["usage"]["prompt_tokens"], last["usage"]["completion_tokens"]) == (21, 5)
    assert sum(1 for c in chunks if "usage" in c) == 1

    (sent,) = anthropic.requests
    assert sent.body["stream"] is True and sent.body["model"] == HAIKU


async def test_anthropic_params_reach_provider_but_control_kwargs_do_not(
    upstream: LitellmUpstream, anthropic: FakeAnthropic
) -> None:
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic")
    request = chat(
        HAIKU,
        max_tokens=10,
        top_k=3,  # Anthropic-specific: passed through
        logit_bias={"1": 2},  # OpenAI-only: dropped by litellm (drop_params)
        api_base=f"http://127.0.0.1:{closed_port()}",  # must not redirect our key
        extra_headers={"x-injected": "1"},
        num_retries=5,
    )
    resp = await upstream.send(request, ep)

    assert resp.status == 200
    (sent,) = anthropic.requests
    assert sent.body["top_k"] == 3
    assert "logit_bias" not in sent.body
    assert "x-injected" not in sent.headers


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_wrong_key_is_401_without_the_key(
    upstream: LitellmUpstream, anthropic: FakeAnthropic, stream: bool
) -> None:
    wrong = "sk-ant-wrong-secret-key"
    resp = await upstream.send(
        chat(HAIKU, stream=stream, max_tokens=8), endpoint(anthropic.url, wrong, "anthropic")
    )
    assert resp.status == 401
    err = error_of(resp)
    assert "invalid x-api-key" in err["message"]
    assert err["type"] == "authentication_error"
    assert wrong not in (resp.body or b"").decode()


@pytest.mark.parametrize(
    ("provider_status", "expected"),
    [(429, 429), (500, 500), (529, 503), (404, 404), (400, 400)],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_errors_map_to_statuses_the_relay_acts_on(
    upstream: LitellmUpstream,
    anthropic: FakeAnthropic,
    provider_status: int,
    expected: int,
    stream: bool,
) -> None:
    anthropic.set_behaviour(
        status=provider_status, error_message=f"provider says {provider_status}"
    )
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic")
    resp = await upstream.send(chat(HAIKU, stream=stream, max_tokens=8), ep)

    assert resp.status == expected
    assert f"provider says {provider_status}" in error_of(resp)["message"]
    assert len(anthropic.requests) == 1  # litellm did not retry on its own
    if expected == 429:
        assert resp.headers.get("retry-after") == RETRY_AFTER


async def test_provider_message_echoing_the_key_is_redacted(
    upstream: LitellmUpstream, anthropic: FakeAnthropic
) -> None:
    anthropic.set_behaviour(status=500, error_message=f"boom for key {anthropic.api_key}")
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic")
    resp = await upstream.send(chat(HAIKU, max_tokens=8), ep)
    assert resp.status == 500
    assert anthropic.api_key not in (resp.body or b"").decode()
    assert "boom for key" in error_of(resp)["message"]  # litellm or we redact the key


async def test_fake_fails_first_n_times_then_answers(
    upstream: LitellmUpstream, anthropic: FakeAnthropic
) -> None:
    anthropic.set_behaviour(status=529, fail_times=1)
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic")
    first = await upstream.send(chat(HAIKU, max_tokens=8), ep)
    second = await upstream.send(chat(HAIKU, max_tokens=8), ep)
    assert (first.status, second.status) == (503, 200)


@pytest.mark.parametrize("stream", [False, True])
async def test_closed_port_raises_upstream_unavailable(
    upstream: LitellmUpstream, stream: bool
) -> None:
    ep = endpoint(f"http://127.0.0.1:{closed_port()}", "k", "anthropic")
    with pytest.raises(UpstreamUnavailable):
        await upstream.send(chat(HAIKU, stream=stream, max_tokens=8), ep)


@pytest.mark.parametrize("how", ["cut_after", "error_event_after"])
async def test_anthropic_stream_failing_midway_raises_from_iterator(
    upstream: LitellmUpstream, anthropic: FakeAnthropic, how: str
) -> None:
    anthropic.set_behaviour(chunks=["a", "b", "c", "d"], **{how: 2})
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic")
    resp = await upstream.send(chat(HAIKU, stream=True, max_tokens=8), ep)
    assert resp.status == 200 and resp.stream is not None

    received: list[bytes] = []
    with pytest.raises(StreamInterrupted):
        async for frame in resp.stream:
            received.append(frame)
    assert text_of([orjson.loads(f[6:]) for f in received]) == "ab"
    assert b"data: [DONE]\n\n" not in received


async def test_no_first_chunk_in_time_raises_from_send(
    upstream: LitellmUpstream, anthropic: FakeAnthropic
) -> None:
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic")
    ep.timeouts = Timeouts(connect=5, first_byte=2, stream_idle=30, total=60)
    # A normal stream first, so the deadline below is spent on the stall, not on warm-up.
    await read_frames(await upstream.send(chat(HAIKU, stream=True, max_tokens=8), ep))
    anthropic.set_behaviour(stall_after=0)
    with pytest.raises(UpstreamTimedOut):
        await upstream.send(chat(HAIKU, stream=True, max_tokens=8), ep)


async def test_idle_stream_raises_timed_out_from_iterator(
    upstream: LitellmUpstream, gemini: FakeGemini
) -> None:
    gemini.set_behaviour(chunks=["p", "q", "r"], stall_after=2)
    ep = endpoint(gemini.url, gemini.api_key, "gemini")
    ep.timeouts = Timeouts(connect=5, first_byte=30, stream_idle=2, total=60)
    resp = await upstream.send(chat(GEMINI, stream=True), ep)
    assert resp.stream is not None
    received: list[bytes] = []
    with pytest.raises(UpstreamTimedOut):
        async for frame in resp.stream:
            received.append(frame)
    assert text_of([orjson.loads(f[6:]) for f in received]) == "pq"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_tool_calls(
    upstream: LitellmUpstream, anthropic: FakeAnthropic, stream: bool
) -> None:
    anthropic.set_behaviour(chunks=["Checking."], tool_call=("get_weather", {"city": "Paris"}))
    ep = endpoint(anthropic.url, anthropic.api_key, "anthropic")
    request = chat(HAIKU, stream=stream, max_tokens=64, tools=[WEATHER_TOOL], tool_choice="auto")
    resp = await upstream.send(request, ep)

    if stream:
        chunks = chunks_of(await read_frames(resp))
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        calls = [tc for d in deltas for tc in d.get("tool_calls") or []]
        name = next(tc["function"]["name"] for tc in calls if tc["function"].get("name"))
        arguments = "".join(tc["function"].get("arguments") or "" for tc in calls)
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1]
    else:
        choice = orjson.loads(resp.body or b"")["choices"][0]
        (call,) = choice["message"]["tool_calls"]
        assert call["type"] == "function" and call["id"]
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        finish = choice["finish_reason"]
    assert name == "get_weather"
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"

    (sent,) = anthropic.requests
    (tool,) = sent.body["tools"]
    assert tool["name"] == "get_weather"
    assert tool["input_schema"]["properties"] == {"city": {"type": "string"}}


# -- Gemini --------------------------------------------------------------------------------------


async def test_gemini_chat(upstream: LitellmUpstream, gemini: FakeGemini) -> None:
    ep = endpoint(gemini.url, gemini.api_key, "gemini", {"gem": GEMINI})
    resp = await upstream.send(chat("gem", max_tokens=50), ep)

    assert resp.status == 200
    data = orjson.loads(resp.body or b"")
    assert data["choices"][0]["message"]["content"] == "Hello from the fake."
    assert (data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"]) == (11, 7)

    (sent,) = gemini.requests
    assert sent.path == f"/v1beta/models/{GEMINI}:generateContent"
    assert sent.headers.get("x-goog-api-key") == gemini.api_key or sent.query.get("key")
    assert sent.body["system_instruction"] == {"parts": [{"text": "be brief"}]}
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "hi there"}]}]
    assert sent.body["generationConfig"]["max_output_tokens"] == 50


async def test_gemini_stream(upstream: LitellmUpstream, gemini: FakeGemini) -> None:
    gemini.set_behaviour(chunks=["Ga", "bc", "de"], input_tokens=4, output_tokens=3)
    ep = endpoint(gemini.url, gemini.api_key, "gemini")
    resp = await upstream.send(chat(GEMINI, stream=True), ep)

    chunks = chunks_of(await read_frames(resp))
    assert text_of(chunks) == "Gabcde"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (4, 3)
    (sent,) = gemini.requests
    assert sent.path == f"/v1beta/models/{GEMINI}:streamGenerateContent"
    assert sent.query["alt"] == "sse"


async def test_gemini_invalid_key_is_401(upstream: LitellmUpstream, gemini: FakeGemini) -> None:
    resp = await upstream.send(chat(GEMINI), endpoint(gemini.url, "AIza-wrong", "gemini"))
    assert resp.status == 401
    assert "API key not valid" in error_of(resp)["message"]


@pytest.mark.parametrize(("provider_status", "expected"), [(429, 429), (500, 500), (503, 503)])
async def test_gemini_errors(
    upstream: LitellmUpstream, gemini: FakeGemini, provider_status: int, expected: int
) -> None:
    gemini.set_behaviour(status=provider_status)
    resp = await upstream.send(
        chat(GEMINI, stream=True), endpoint(gemini.url, gemini.api_key, "gemini")
    )
    assert resp.status == expected
    error_of(resp)


async def test_gemini_stream_cut_midway_raises(
    upstream: LitellmUpstream, gemini: FakeGemini
) -> None:
    gemini.set_behaviour(chunks=["x", "y", "z"], cut_after=1)
    resp = await upstream.send(
        chat(GEMINI, stream=True), endpoint(gemini.url, gemini.api_key, "gemini")
    )
    assert resp.stream is not None
    with pytest.raises(StreamInterrupted):
        async for _ in resp.stream:
            pass


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
async def test_gemini_embeddings(
    upstream: LitellmUpstream, gemini: FakeGemini, encoding_format: str | None
) -> None:
    gemini.set_behaviour(embedding_dimensions=4)
    body: dict[str, Any] = {"model": "emb", "input": ["alpha", "beta"]}
    if encoding_format:
        body["encoding_format"] = encoding_format
    ep = endpoint(gemini.url, gemini.api_key, "gemini", {"emb": "text-embedding-004"})
    resp = await upstream.send(UpstreamRequest("embeddings", "emb", False, body, None), ep)

    assert resp.status == 200
    data = orjson.loads(resp.body or b"")
    vectors = [item["embedding"] for item in data["data"]]
    if encoding_format == "base64":
        vectors = [list(struct.unpack("<4f", base64.b64decode(v))) for v in vectors]
    for got, text in zip(vectors, ["alpha", "beta"], strict=True):
        assert got == pytest.approx(fake_vector(text, 4), abs=1e-6)
    assert [item["index"] for item in data["data"]] == [0, 1]
    assert "text-embedding-004" in gemini.requests[-1].path


# -- surfaces and configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "surface"), [("anthropic", "embeddings"), ("gemini", "rerank")]
)
async def test_unsupported_surface_is_400(
    upstream: LitellmUpstream, provider: str, surface: str
) -> None:
    body = {"model": "m", "input": "x", "query": "q", "documents": ["d"]}
    ep = endpoint("http://127.0.0.1:1", "k", provider)
    resp = await upstream.send(UpstreamRequest(surface, "m", False, body, None), ep)
    assert resp.status == 400
    err = error_of(resp)
    assert surface in err["message"] and provider in err["message"]


@pytest.mark.parametrize(
    ("provider", "base", "expected"),
    [
        ("anthropic", "https://api.anthropic.com", "https://api.anthropic.com"),
        ("anthropic", "https://api.anthropic.com/v1/", "https://api.anthropic.com"),
        (
            "gemini",
            "https://generativelanguage.googleapis.com",
            "https://generativelanguage.googleapis.com/v1beta",
        ),
        ("gemini", "https://proxy.example/gemini/v1", "https://proxy.example/gemini/v1"),
        ("azure", "https://r.openai.azure.com/", "https://r.openai.azure.com"),
        ("bedrock", "", None),
    ],
)
def test_api_base_for(provider: str, base: str, expected: str | None) -> None:
    assert api_base_for(provider, base, {}) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            'litellm.RateLimitError: AnthropicException - {"type":"error","error":'
            '{"type":"rate_limit_error","message":"slow down"}}',
            "slow down",
        ),
        (
            "litellm.APIConnectionError: No module named 'x'\nTraceback (most recent call last):\n"
            "  File ...\nThis looks like a bug in LiteLLM rather than in your request.",
            "No module named 'x'",
        ),
        ("litellm.InternalServerError: bad key sk-secret. Handle with `litellm.X`", "bad key ***"),
    ],
)
def test_provider_message(raw: str, expected: str) -> None:
    assert provider_message(raw, "sk-secret") == expected
