"""Probing a channel: one small request to the API that fits the model's type.

One API tests every channel with a chat request, so embedding and rerank channels fail their
tests and get disabled; here an embedding model gets an embeddings request, a reranker a rerank.
"""

from __future__ import annotations

import io
import math
import struct
import time
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.db.models import split_csv
from gateway.db.tables import Channel
from gateway.model_info import ModelKind
from gateway.model_kinds import channel_kind
from gateway.upstreams.base import (
    Endpoint,
    UploadPart,
    Upstream,
    UpstreamRequest,
    UpstreamUnavailable,
)

# The probe each kind gets (`probe_request`).
_TEST_TYPES: dict[ModelKind, str] = {
    "chat": "llm",
    "embedding": "embedding",
    "rerank": "rerank",
    "audio_transcription": "audio",
    "audio_speech": "speech",
    "image_generation": "image",
}


def probe_type(model: str, declared: Mapping[str, str] | None = None) -> str:
    """The probe for `model`, by its kind: the channel's `model_types` (`declared`), else litellm's
    model table, else its name (gateway.model_kinds)."""
    return _TEST_TYPES[channel_kind(model, model, declared or {})]


def probe_model(ch: Channel) -> str:
    """The model a channel is probed with unless one is named: its config's `test_model`, else
    its first model ("" when it lists none)."""
    models = split_csv(ch.models)
    return str(orjson.loads(ch.config or "{}").get("test_model") or (models[0] if models else ""))


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


def probe_request(model: str, type_: str) -> UpstreamRequest:
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
            form=[("model", model)],
            files=[part],
        )
    elif type_ == "image":
        body = {"model": model, "prompt": "a red circle", "n": 1, "size": "256x256"}
        surface = "images"
    elif type_ == "speech":  # OpenAI's voice names; a server with its own voices may refuse it
        body = {"model": model, "input": "channel test", "voice": "alloy", "response_format": "wav"}
        surface = "speech"
    else:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        surface = "chat"
    return UpstreamRequest(
        surface=surface, model=model, stream=False, body=body, raw=orjson.dumps(body)
    )


@dataclass(slots=True)
class ProbeResult:
    success: bool
    message: str
    seconds: float
    model: str
    status: int = 0


async def run_probe(upstream: Upstream, endpoint: Endpoint, model: str, type_: str) -> ProbeResult:
    req = probe_request(model, type_)
    started = time.perf_counter()
    try:
        if endpoint.prepare is not None:
            await endpoint.prepare()
        resp = await upstream.send(req, endpoint)
    except UpstreamUnavailable as exc:
        return ProbeResult(False, str(exc), time.perf_counter() - started, model)
    elapsed = time.perf_counter() - started
    if resp.status >= 400:
        detail = (resp.body or b"")[:300].decode("utf-8", "replace")
        return ProbeResult(False, f"HTTP {resp.status}: {detail}", elapsed, model, resp.status)
    return ProbeResult(True, "", elapsed, model, resp.status)
