"""A fake OpenAI-compatible upstream: a real HTTP server whose behaviour tests can script.

`behaviour` is read on every request: status to return, a delay before answering (hang), cutting a
stream after N chunks, whether to send usage. Every request is recorded (path, headers, JSON body,
form fields) so tests can assert what the gateway forwarded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from tests.support.servers import ServerThread


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0  # before the response starts
    chunk_delay: float = 0.0  # between stream chunks
    cut_after: int | None = None  # close the stream after this many chunks
    send_usage: bool = True
    error_message: str = "fake upstream error"
    error_type: str = "x"
    error_code: str | None = None  # None: the status as a string
    reply: str = "Hello from the fake upstream."
    fail_times: int | None = None  # `status` for the first N requests only, then 200
    # every answer waits until the test sets this (a barrier that forces an interleaving)
    hold: threading.Event | None = None


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    form: dict[str, str] | None = None
    file_bytes: int = 0
    form_items: list[tuple[str, str]] | None = None  # every text part in order (fields repeat)


@dataclass
class FakeOpenAI:
    name: str = "fake"
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[Recorded] = field(default_factory=list)
    server: ServerThread | None = None
    failed: int = 0  # answers given with an error status (for fail_times)
    abandoned: int = 0  # streams whose reader went away before the end

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def reset(self, **kw: Any) -> None:
        self.behaviour = Behaviour(**kw)
        self.requests.clear()
        self.failed = 0
        self.abandoned = 0

    def start(self) -> FakeOpenAI:
        self.server = ServerThread(build_app(self)).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p if i == len(parts) - 1 else p + " " for i, p in enumerate(parts)]


def build_app(fake: FakeOpenAI) -> FastAPI:
    app = FastAPI()

    async def gate(request: Request) -> Response | None:
        b = fake.behaviour
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.hold is not None:
            deadline = time.monotonic() + 120  # bounded: a failing test still ends
            while not b.hold.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        if b.status != 200 and (b.fail_times is None or fake.failed < b.fail_times):
            fake.failed += 1
            return Response(
                orjson.dumps(
                    {
                        "error": {
                            "message": b.error_message,
                            "type": b.error_type,
                            "param": None,
                            "code": b.error_code or str(b.status),
                        }
                    }
                ),
                status_code=b.status,
                media_type="application/json",
            )
        return None

    async def record(request: Request) -> dict[str, Any]:
        body = orjson.loads(await request.body())
        fake.requests.append(Recorded(request.url.path, dict(request.headers), body))
        return body

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await record(request)
        if (r := await gate(request)) is not None:
            return r
        b = fake.behaviour
        created = int(time.time())
        reply = f"{b.reply} [{fake.name}]"
        usage = {
            "prompt_tokens": 11,
            "completion_tokens": len(_words(reply)),
            "total_tokens": 11 + len(_words(reply)),
        }
        if not body.get("stream"):
            return Response(
                orjson.dumps(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": created,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    }
                ),
                media_type="application/json",
            )

        include_usage = (body.get("stream_options") or {}).get("include_usage")

        async def events() -> Any:
            finished = False
            try:
                async for chunk in frames():
                    yield chunk
                finished = True
            finally:
                if not finished:
                    fake.abandoned += 1

        async def frames() -> Any:
            def frame(obj: dict[str, Any]) -> bytes:
                return b"data: " + orjson.dumps(obj) + b"\n\n"

            base = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
            }
            sent = 0
            for word in _words(reply):
                if b.cut_after is not None and sent >= b.cut_after:
                    return  # connection closes without [DONE]
                yield frame(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {"content": word}, "finish_reason": None}
                        ],
                    }
                )
                sent += 1
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
            yield frame({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if include_usage and b.send_usage:
                yield frame({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await record(request)
        if (r := await gate(request)) is not None:
            return r
        return Response(
            orjson.dumps(
                {
                    "id": "cmpl-fake",
                    "object": "text_completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "text": " Paris.", "finish_reason": "stop", "logprobs": None}
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                }
            ),
            media_type="application/json",
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await record(request)
        if (r := await gate(request)) is not None:
            return r
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(t))), 0.5, -0.25]}
            for i, t in enumerate(inputs)
        ]
        return Response(
            orjson.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
                }
            ),
            media_type="application/json",
        )

    @app.post("/v1/rerank")
    async def rerank(request: Request) -> Response:
        body = await record(request)
        if (r := await gate(request)) is not None:
            return r
        q = set(body["query"].lower().split())
        scored = [
            (i, len(q & set(str(d).lower().split())) / (1 + len(q)))
            for i, d in enumerate(body["documents"])
        ]
        scored.sort(key=lambda x: -x[1])
        top = scored[: body.get("top_n") or len(scored)]
        results = [{"index": i, "relevance_score": s} for i, s in top]
        if body.get("return_documents"):
            for r_ in results:
                r_["document"] = {"text": body["documents"][r_["index"]]}
        return Response(
            orjson.dumps(
                {
                    "id": "rerank-fake",
                    "results": results,
                    "usage": {"prompt_tokens": 20, "total_tokens": 20},
                }
            ),
            media_type="application/json",
        )

    @app.post("/v1/audio/translations")
    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        async with request.form() as form:  # closes the upload's spool
            upload = form["file"]
            data = await upload.read()  # type: ignore[union-attr]
            items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        fields = dict(items)
        fake.requests.append(
            Recorded(request.url.path, dict(request.headers), None, fields, len(data), items)
        )
        if (r := await gate(request)) is not None:
            return r
        text = f"transcribed {len(data)} bytes"
        if fields.get("response_format") == "text":
            return Response(text, media_type="text/plain")
        return Response(orjson.dumps({"text": text}), media_type="application/json")

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        """OpenAI's createSpeech: audio bytes (a short silent WAV) under the format's type."""
        await record(request)
        if (r := await gate(request)) is not None:
            return r
        silence = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
        silence += b"\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
        return Response(silence, media_type="audio/wav")

    @app.post("/v1/images/generations")
    async def images(request: Request) -> Response:
        body = await record(request)
        if (r := await gate(request)) is not None:
            return r
        n = body.get("n", 1)
        return Response(
            orjson.dumps(
                {
                    "created": int(time.time()),
                    "data": [{"b64_json": "iVBORw0KGgo="} for _ in range(n)],
                }
            ),
            media_type="application/json",
        )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "fake"}],
        }

    return app
