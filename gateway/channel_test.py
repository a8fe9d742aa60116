"""Channel tests that call the API matching the model's type (One API tests everything with chat,
so embedding and rerank channels fail their tests and get disabled)."""

from __future__ import annotations

import io
import math
import struct
import time
import wave
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.upstreams.base import (
    Endpoint,
    UploadPart,
    Upstream,
    UpstreamRequest,
    UpstreamUnavailable,
)

_HINTS: list[tuple[str, tuple[str, ...]]] = [
    ("rerank", ("rerank",)),
    ("embedding", ("embed", "bge-", "e5-", "gte-", "minilm", "m3e", "text2vec", "jina-emb")),
    ("audio", ("whisper", "transcri", "paraformer", "sensevoice")),
    ("image", ("dall-e", "stable-diffusion", "sd-", "sdxl", "flux", "kolors", "cogview")),
]


def guess_type(model: str, declared: dict[str, str] | None = None) -> str:
    """The model's type: declared in the channel's config (`model_types`), else from its name."""
    if declared and model in declared:
        return declared[model]
    name = model.lower()
    for type_, needles in _HINTS:
        if any(n in name for n in needles):
            return type_
    return "llm"


def _silence_wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = int(seconds * rate)
        w.writeframes(
            b"".join(struct.pack("<h", int(300 * math.sin(i / 8))) for i in range(frames))
        )
    return buf.getvalue()


def test_request(model: str, type_: str) -> UpstreamRequest:
    body: dict[str, Any]
    if type_ == "embedding":
        body = {"model": model, "input": "modelport channel test"}
        surface = "embeddings"
    elif type_ == "rerank":
        body = {"model": model, "query": "test", "documents": ["a test", "something else"]}
        surface = "rerank"
    elif type_ == "audio":
        part = UploadPart("file", "test.wav", "audio/wav", io.BytesIO(_silence_wav()))
        return UpstreamRequest(
            surface="transcriptions",
            model=model,
            stream=False,
            body=None,
            raw=None,
            form={"model": model},
            files=[part],
        )
    elif type_ == "image":
        body = {"model": model, "prompt": "a red circle", "n": 1, "size": "256x256"}
        surface = "images"
    else:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        surface = "chat"
    return UpstreamRequest(
        surface=surface, model=model, stream=False, body=body, raw=orjson.dumps(body)
    )


@dataclass(slots=True)
class TestResult:
    success: bool
    message: str
    seconds: float
    model: str
    status: int = 0


async def run_test(upstream: Upstream, endpoint: Endpoint, model: str, type_: str) -> TestResult:
    req = test_request(model, type_)
    started = time.perf_counter()
    try:
        if endpoint.prepare is not None:
            await endpoint.prepare()
        resp = await upstream.send(req, endpoint)
    except UpstreamUnavailable as exc:
        return TestResult(False, str(exc), time.perf_counter() - started, model)
    elapsed = time.perf_counter() - started
    if resp.status >= 400:
        detail = (resp.body or b"")[:300].decode("utf-8", "replace")
        return TestResult(False, f"HTTP {resp.status}: {detail}", elapsed, model, resp.status)
    return TestResult(True, "", elapsed, model, resp.status)
