"""A deterministic engine with no weights, for routing, supervisor and gateway tests.

A test double, so it is not in the product's engine table: tests/conftest.py registers it as the
`fake` engine through `$MODELPORT_ENGINE_PLUGINS`, which worker, CLI and server subprocesses
inherit.

It answers every operation in the real response shapes, fast and reproducibly: chat and
completions echo the prompt, embeddings are hash-derived unit vectors, rerank scores word
overlap, audio "transcribes" the upload's size, images are a tiny valid PNG. What it serves
follows the spec's model type (an "llm" serves chat + completions, ...), so a worker running it
behaves like one running a real engine of that type.

`engine_options` that tests use to provoke behaviour:
- `load_delay_s`: sleep this long in load() (to observe "loading");
- `load_gate`: a file path; load() waits until that file exists (a test decides when it ends);
- `fail_load`: a message; load() raises RuntimeError with it;
- `token_delay_s`: sleep between streamed chunks;
- `dimensions`: embedding size (default: spec.dimensions or 8);
- `capabilities`: a list overriding what this instance serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from local_runtime.engines import base
from local_runtime.engines.base import Engine, EngineError
from modelport_wire import openai as wire

_BY_TYPE = {
    "llm": frozenset({base.CHAT, base.COMPLETIONS}),
    "embedding": frozenset({base.EMBEDDINGS}),
    "rerank": frozenset({base.RERANK}),
    "audio": frozenset({base.TRANSCRIPTIONS, base.TRANSLATIONS}),
    "image": frozenset({base.IMAGES}),
}


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from sha256(text): equal texts, equal vectors."""
    raw = b""
    counter = 0
    while len(raw) < dimensions * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    ints = struct.unpack(f"<{dimensions}i", raw[: dimensions * 4])
    values = [i / 2**31 for i in ints]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def tiny_png(seed: str) -> bytes:
    """A valid 1x1 RGB PNG whose colour depends on `seed`."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, r, g, b]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _words(text: str) -> list[str]:
    return text.split()


class FakeEngine(Engine):
    name: ClassVar[str] = "fake"
    model_types: ClassVar[frozenset[str]] = frozenset(_BY_TYPE)
    capabilities: ClassVar[frozenset[str]] = frozenset().union(*_BY_TYPE.values())
    requires: ClassVar[str] = "json"  # always importable

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        options = spec.engine_options
        wanted = options.get("capabilities")
        self.capabilities = frozenset(wanted) if wanted else _BY_TYPE[spec.model_type]  # type: ignore[misc]
        self.dimensions = int(options.get("dimensions") or spec.dimensions or 8)
        self.token_delay_s = float(options.get("token_delay_s", 0.0))
        self.loaded = False

    @classmethod
    def extra(cls) -> str:
        return "none"

    def load(self) -> None:
        options = self.spec.engine_options
        if options.get("load_delay_s"):
            time.sleep(float(options["load_delay_s"]))
        if options.get("load_gate"):
            while not os.path.exists(str(options["load_gate"])):
                time.sleep(0.05)
        if options.get("fail_load"):
            raise RuntimeError(str(options["fail_load"]))
        self.loaded = True

    def unload(self) -> None:
        self.loaded = False

    def status(self) -> dict[str, Any]:
        return {"fake": True}

    # --- text generation -------------------------------------------------------------------
    def _reply(self, prompt: str, body: dict[str, Any]) -> tuple[list[str], str]:
        words = ["echo:", *_words(prompt)]
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and len(words) > max_tokens:
            words, finish = words[:max_tokens], "length"
        stops = body.get("stop") or []
        text = " ".join(words)
        for stop in [stops] if isinstance(stops, str) else stops:
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        return _words(text), finish

    async def chat(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise EngineError("'messages' must be a non-empty list", code="messages")
        last = messages[-1].get("content") if isinstance(messages[-1], dict) else None
        prompt = last if isinstance(last, str) else ""
        prompt_tokens = sum(
            len(_words(m.get("content") or "")) for m in messages if isinstance(m, dict)
        )
        words, finish = self._reply(prompt, body)
        return self._respond(body, words, finish, prompt_tokens, chat=True)

    async def completions(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise EngineError("'prompt' must be a string", code="prompt")
        words, finish = self._reply(prompt, body)
        return self._respond(body, words, finish, len(_words(prompt)), chat=False)

    def _respond(
        self, body: dict[str, Any], words: list[str], finish: str, prompt_tokens: int, *, chat: bool
    ) -> dict[str, Any] | AsyncIterator[bytes]:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._stream(ident, created, words, finish, usage, chat, include_usage)
        text = " ".join(words)
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": ident,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": self.spec.uid,
            "choices": [choice],
            "usage": usage,
        }

    async def _stream(
        self,
        ident: str,
        created: int,
        words: list[str],
        finish: str,
        usage: dict[str, int],
        chat: bool,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        head = {
            "id": ident,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": self.spec.uid,
        }

        def choice(piece: str | None, reason: str | None) -> dict[str, Any]:
            if chat:
                delta = {} if piece is None else {"content": piece}
                return {"index": 0, "delta": delta, "finish_reason": reason}
            return {"index": 0, "text": piece or "", "finish_reason": reason}

        if chat:
            yield wire.frame_json(
                {**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
            )
        for i, word in enumerate(words):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            yield wire.frame_json(
                {**head, "choices": [choice(word if i == 0 else " " + word, None)]}
            )
        yield wire.frame_json({**head, "choices": [choice(None, finish)]})
        if include_usage:
            yield wire.frame_json({**head, "choices": [], "usage": usage})
        yield wire.DONE

    # --- encoders --------------------------------------------------------------------------
    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise EngineError(
                "'input' must be a string or a non-empty list of strings", code="input"
            )
        dims = body.get("dimensions") or self.dimensions
        tokens = sum(len(_words(t)) for t in texts)
        return {
            "object": "list",
            "model": self.spec.uid,
            "data": [
                {"object": "embedding", "index": i, "embedding": fake_vector(t, dims)}
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list):
            raise EngineError("rerank needs 'query' (string) and 'documents' (list)", code="query")
        docs = [d.get("text", "") if isinstance(d, dict) else str(d) for d in documents]
        q = {w.lower() for w in _words(query)}
        scores = [len(q & {w.lower() for w in _words(d)}) / (len(q) or 1) for d in docs]
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
        top_n = body.get("top_n") or len(docs)
        results: list[dict[str, Any]] = []
        for i in order[:top_n]:
            item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if body.get("return_documents"):
                item["document"] = {"text": docs[i]}
            results.append(item)
        tokens = len(_words(query)) * len(docs) + sum(len(_words(d)) for d in docs)
        return {
            "id": str(uuid.uuid4()),
            "model": self.spec.uid,
            "results": results,
            "meta": {"tokens": {"input_tokens": tokens, "output_tokens": 0}},
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    # --- media -----------------------------------------------------------------------------
    async def transcriptions(
        self, audio_path: str, params: dict[str, Any], *, translate: bool = False
    ) -> tuple[str | dict[str, Any], str]:
        size = await asyncio.to_thread(os.path.getsize, audio_path)
        text = f"fake {'translation' if translate else 'transcript'} of {size} bytes"
        fmt = params.get("response_format") or "json"
        if fmt in ("text", "srt", "vtt"):
            return text, "text/plain; charset=utf-8"
        return {"text": text}, "application/json"

    async def images(self, body: dict[str, Any]) -> list[bytes]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise EngineError("'prompt' must be a non-empty string", code="prompt")
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 10:
            raise EngineError("'n' must be between 1 and 10", code="n")
        return [tiny_png(f"{prompt}:{i}") for i in range(n)]
