"""A minimal, fast OpenAI-shaped SSE upstream on raw asyncio (no framework), so the soak test
measures the gateway, not the fake. Answers POST */chat/completions with `--chunks` content
events `--gap` seconds apart, a usage event and [DONE]; HTTP/1.1 keep-alive, chunked encoding.
127.0.0.1 only."""

from __future__ import annotations

import argparse
import asyncio

import orjson

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def serve(port: int, chunks: int, gap: float) -> None:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    words = [
        _chunk(_event({**base, "choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}))
        for i in range(chunks)
    ]
    tail = (
        _chunk(
            _event(
                {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": chunks}}
            )
        )
        + _chunk(b"data: [DONE]\n\n")
        + b"0\r\n\r\n"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(HEAD)
                for w in words:
                    writer.write(w)
                    await writer.drain()
                    if gap:
                        await asyncio.sleep(gap)
                writer.write(tail)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--gap", type=float, default=0.05)
    a = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(a.port, a.chunks, a.gap))
