"""A near-zero-cost OpenAI-compatible upstream: raw asyncio + httptools, canned bytes.

Any POST gets a fixed `chat.completion`; a body asking for `"stream": true` gets a short SSE stream
(role chunk, N content chunks, a usage chunk, [DONE]) written in one go. Nothing is parsed beyond
the HTTP framing, so the server costs a few microseconds a request and the gateway's own cost
is what the benchmark sees.

    python bench/gateway/upstream.py PORT [--chunks N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re

import httptools
import uvloop

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The capital of France is Paris."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    },
    separators=(",", ":"),
).encode()
STREAM_RE = re.compile(rb'"stream"\s*:\s*true')


def sse_body(chunks: int) -> bytes:
    def chunk(delta: dict[str, object], finish: str | None = None, usage: object = None) -> bytes:
        obj: dict[str, object] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": f" tok{i}"}) for i in range(chunks)]
    events.append(chunk({}, "stop"))
    events.append(
        chunk(
            {},
            usage={"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks},
        )
    )
    events.append(b"data: [DONE]\n\n")
    out = b""
    for e in events:  # one HTTP chunk per event, as real servers send them
        out += f"{len(e):x}\r\n".encode() + e + b"\r\n"
    return out + b"0\r\n\r\n"


def responses(chunks: int) -> tuple[bytes, bytes]:
    plain = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(COMPLETION)).encode()
        + b"\r\n\r\n"
        + COMPLETION
    )
    stream = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + sse_body(chunks)
    )
    return plain, stream


class Upstream(asyncio.Protocol):
    def __init__(self, plain: bytes, stream: bytes) -> None:
        self.plain, self.stream = plain, stream
        self.parser = httptools.HttpRequestParser(self)
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()  # type: ignore[attr-defined]

    def on_message_begin(self) -> None:
        self.body.clear()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        out = self.stream if STREAM_RE.search(self.body) else self.plain
        self.transport.write(out)  # type: ignore[attr-defined]


async def main(port: int, chunks: int) -> None:
    plain, stream = responses(chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Upstream(plain, stream), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--chunks", type=int, default=8)
    a = ap.parse_args()
    uvloop.run(main(a.port, a.chunks))
