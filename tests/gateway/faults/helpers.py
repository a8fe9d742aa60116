"""Real misbehaving servers for fault tests: an SSE upstream that dies mid-stream (TCP reset in
the middle of a chunked body) and a TCP proxy in front of PostgreSQL that can cut the database
off and bring it back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import orjson

from tests.support.servers import free_port


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_forever()
        finally:  # a loop left open is a ResourceWarning when collected
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def chunk_frame(word: str) -> bytes:
    obj = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class DyingSSE:
    """Answers a streaming chat request with `chunks` content events, then resets the TCP
    connection in the middle of the chunked body (what a killed upstream process looks like)."""

    def __init__(self, chunks: int = 2) -> None:
        self.chunks = chunks
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = 0
        self._lt = _LoopThread()
        self._server = self._lt.call(asyncio.start_server(self._handle, "127.0.0.1", self.port))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        self.requests += 1
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for i in range(self.chunks):
            data = chunk_frame(f"w{i} ")
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b'40\r\ndata: {"partial')  # half a chunk, then the process "dies"
        await writer.drain()
        writer.transport.abort()

    def stop(self) -> None:
        self._server.close()
        self._lt.stop()


class TcpProxy:
    """127.0.0.1:port -> target. `cut()` drops every connection and refuses new ones (accepts
    and closes at once) until `restore()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.down = False
        self._pairs: set[asyncio.StreamWriter] = set()
        self._lt = _LoopThread()
        self._server = self._lt.call(asyncio.start_server(self._handle, "127.0.0.1", self.port))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pairs.update((writer, uw))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
        self._pairs.discard(writer)
        self._pairs.discard(uw)

    async def _cut(self) -> None:
        self.down = True
        for w in list(self._pairs):
            w.transport.abort()
        self._pairs.clear()

    def cut(self) -> None:
        self._lt.call(self._cut())

    def restore(self) -> None:
        self.down = False

    def stop(self) -> None:
        self.cut()
        self._server.close()
        self._lt.stop()
