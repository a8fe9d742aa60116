"""POST /v1/audio/speech through a channel: OpenAI's request shape, audio streamed through.

Request shape: openai/openai-openapi `openapi.yaml`, `CreateSpeechRequest` (model, input with
maxLength 4096, voice, response_format enum mp3|opus|aac|flac|wav|pcm default mp3, speed 0.25-4,
stream_format sse|audio) and the path `/audio/speech` answering `application/octet-stream` bytes.
The upstream is a real HTTP server that holds the rest of its audio until the test has read the
first chunk through the gateway: the bytes are streamed, not buffered.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from tests.support.polling import wait_for
from tests.support.servers import ServerThread

FIRST = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb" * 512  # an mp3's first bytes
REST = b"\xff\xfb\x90\x00" * 4096
RELEASE_LIMIT_S = 30.0


@dataclass
class SpeechUpstream:
    """Answers /v1/audio/speech with FIRST, then REST once `release` is set (or, if nobody
    sets it within RELEASE_LIMIT_S because the gateway buffers, anyway: `gave_up`)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    gave_up: bool = False
    abandoned: bool = False
    server: ServerThread | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url


@pytest.fixture
def upstream() -> Iterator[SpeechUpstream]:
    up = SpeechUpstream()
    app = FastAPI()

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        body = orjson.loads(await request.body())
        up.requests.append(body)
        if body["voice"] == "nobody":  # an upstream's own refusal, in OpenAI's shape
            error = {"message": "voice not found", "type": "invalid_request_error"}
            return Response(orjson.dumps({"error": {**error, "param": "voice", "code": None}}), 400)

        async def audio() -> Any:
            try:
                yield FIRST
                # held until the client has the first chunk (a buffering gateway never lets it)
                up.gave_up = not await asyncio.to_thread(up.release.wait, RELEASE_LIMIT_S)
                yield REST
            except (asyncio.CancelledError, GeneratorExit):
                up.abandoned = True  # the gateway hung up on us
                raise

        return StreamingResponse(audio(), media_type="audio/mpeg")

    @app.post("/moved/v1/audio/speech")
    async def moved(request: Request) -> Response:
        up.requests.append({"moved": True})
        return Response(status_code=302, headers={"Location": f"{up.url}/v1/audio/speech"})

    up.server = ServerThread(app).start()
    yield up
    up.release.set()
    up.server.stop()


@pytest.fixture
def ctx(make_gateway, upstream):
    gw = make_gateway()
    gw.add_channel(name="tts", base_url=upstream.url, models="tts-1,voice-x")
    return gw, gw.create_token(name="speaker")


def test_audio_is_streamed_through_with_its_content_type(ctx, upstream):
    gw, key = ctx
    client = gw.openai(key)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello there.", response_format="mp3", speed=1.25
    ) as resp:
        assert resp.headers["content-type"] == "audio/mpeg"
        chunks = resp.iter_bytes()
        got = next(chunks)
        assert got and FIRST.startswith(got[:10])  # arrived while the upstream still holds REST
        upstream.release.set()
        got += b"".join(chunks)
    assert got == FIRST + REST and not upstream.gave_up
    assert upstream.requests[-1] == {
        "model": "tts-1",
        "voice": "alloy",
        "input": "Hello there.",
        "response_format": "mp3",
        "speed": 1.25,
    }
    gw.flush_usage()
    row = gw.api("GET", "/api/log/", params={"token_name": "speaker"})[0]
    assert row["endpoint"] == "speech" and row["status"] == 200 and row["is_stream"]
    # One API bills speech by input characters (relay/controller/audio.go: len(input) x ratio)
    assert row["prompt_tokens"] == len("Hello there.") and not row["error"]


def test_the_sdk_reads_the_whole_body(ctx, upstream):
    gw, key = ctx
    upstream.release.set()
    audio = gw.openai(key).audio.speech.create(model="voice-x", voice="alloy", input="Hi.")
    assert audio.content == FIRST + REST
    assert upstream.requests[-1]["model"] == "voice-x"


def test_an_upstream_refusal_reaches_the_client_as_it_was(ctx, upstream):
    gw, key = ctx
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai(key).audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    assert caught.value.body["param"] == "voice"


def test_a_redirecting_upstream_is_not_followed(make_gateway, upstream):
    gw = make_gateway()
    gw.add_channel(name="moved", base_url=f"{upstream.url}/moved", models="tts-1")
    key = gw.create_token()
    r = httpx.post(
        f"{gw.url}/v1/audio/speech",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "tts-1", "voice": "alloy", "input": "Hi."},
    )
    assert r.status_code == 502
    assert upstream.requests == [{"moved": True}]  # the Location was never requested
    gw.flush_usage()
    (row,) = gw.api("GET", "/api/log/")
    assert "redirect" in row["error"]  # the admin learns why; the caller gets no address


@pytest.mark.parametrize(
    "change,param,words",
    [
        ({"input": ""}, "input", "empty"),
        ({"input": "   "}, "input", "empty"),
        ({"input": "a" * 4097}, "input", "4096"),
        ({"speed": 4.5}, "speed", "4"),
        ({"speed": 0.1}, "speed", "0.25"),
        ({"response_format": "ogg"}, "response_format", "opus"),
        ({"voice": ""}, "voice", "voice"),
        ({"voice": None}, "voice", "voice"),
        ({"stream_format": "chunks"}, "stream_format", "sse"),
    ],
)
def test_bad_requests_get_a_400_naming_the_field(ctx, upstream, change, param, words):
    gw, key = ctx
    body = {"model": "tts-1", "voice": "alloy", "input": "Hi.", **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = httpx.post(
        f"{gw.url}/v1/audio/speech", headers={"Authorization": f"Bearer {key}"}, json=body
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and words in error["message"]
    assert not upstream.requests  # refused before any upstream was asked


def test_input_of_exactly_4096_characters_is_accepted(ctx, upstream):
    gw, key = ctx
    upstream.release.set()
    audio = gw.openai(key).audio.speech.create(model="tts-1", voice="alloy", input="a" * 4096)
    assert audio.content == FIRST + REST


def test_a_speech_body_is_held_to_the_json_limit_not_the_upload_limit(make_gateway, upstream):
    """/v1/audio/speech is JSON: MODELPORT_MAX_BODY_BYTES applies, as on chat, although it sits
    beside the multipart /v1/audio/ routes that take MODELPORT_MAX_UPLOAD_BYTES."""
    gw = make_gateway(max_body_bytes=10_000, max_upload_bytes=1_000_000)
    gw.add_channel(name="tts", base_url=upstream.url, models="tts-1")
    key = gw.create_token()
    body = {"model": "tts-1", "voice": "alloy", "input": "Hi.", "kwargs": "x" * 20_000}
    r = httpx.post(
        f"{gw.url}/v1/audio/speech", headers={"Authorization": f"Bearer {key}"}, json=body
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert not upstream.requests


def test_a_listener_leaving_mid_audio_is_logged_once(ctx, upstream):
    gw, key = ctx
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/audio/speech",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "tts-1", "voice": "alloy", "input": "Hello there."},
        timeout=60,
    ) as resp:
        assert resp.status_code == 200
        assert next(resp.iter_bytes())  # then hang up while the upstream still holds the rest
    # the gateway notices, closes its upstream connection and logs the cut stream
    wait_for(lambda: upstream.abandoned, "the gateway to hang up on the upstream")

    def logged():
        gw.flush_usage()
        return gw.api("GET", "/api/log/", params={"token_name": "speaker"})

    rows = wait_for(logged, "the usage row of the abandoned stream")
    assert len(rows) == 1 and "disconnected" in rows[0]["error"]
    assert rows[0]["prompt_tokens"] == len("Hello there.")
