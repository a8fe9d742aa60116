"""Server-sent events: pass upstream frames through, reading only what billing needs.

Frames are forwarded as the upstream wrote them, event by event (an event is only held until its
closing blank line arrives). Only events mentioning "usage" are parsed. When the gateway itself
asked for usage (`stream_options.include_usage` injected) the usage-only event is removed, so the
client sees exactly the stream it asked for.

`RelayStream` owns the end of a stream whatever ends it: normal end, upstream failure, the
upstream going silent (idle timeout), or the client going away (its watcher then cancels the send
and nothing closes the generator itself). Its cleanup is synchronous -- awaiting inside a cancelled
scope would raise again -- and closing the upstream runs as a task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.billing.tokenizer import count_text
from gateway.limits.base import await_release
from gateway.relay.bounds import reported_tokens
from gateway.upstreams.base import UpstreamUnavailable
from modelport_wire.openai import error_frame

DONE = b"[DONE]"


@dataclass(slots=True)
class StreamResult:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    done: bool = False
    error: str = ""
    bytes_sent: int = 0
    texts: list[bytes] = field(default_factory=list)  # payloads kept to count tokens locally

    def local_completion_tokens(self) -> int:
        total = 0
        for payload in self.texts:
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            for choice in obj.get("choices") or ():
                delta = choice.get("delta") or {}
                total += count_text((delta.get("content") or "") + (choice.get("text") or ""))
                total += count_text(delta.get("reasoning_content") or "")
        return total


class EventScanner:
    def __init__(self, *, strip_usage_only: bool, result: StreamResult) -> None:
        self.strip = strip_usage_only
        self.r = result

    def scan(self, events: bytes) -> bytes:
        """Read complete events; return what to forward."""
        if b'"usage"' not in events and DONE not in events:
            if not self.r.done:
                self.r.texts.extend(_payloads(events))
            return events
        kept: list[bytes] = []
        for event in events.split(b"\n\n"):
            if not event:
                continue
            payload = _payload(event)
            if payload == DONE:
                self.r.done = True
            elif payload is not None and b'"usage"' in payload:
                try:
                    obj = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    obj = {}
                usage = obj.get("usage") if isinstance(obj, dict) else None
                if usage and isinstance(usage, dict):
                    self.r.prompt_tokens = reported_tokens(
                        usage.get("prompt_tokens", usage.get("input_tokens"))
                    )
                    self.r.completion_tokens = reported_tokens(
                        usage.get("completion_tokens", usage.get("output_tokens"))
                    )
                    if self.strip and not obj.get("choices"):
                        continue
                self.r.texts.append(payload)
            elif payload is not None:
                self.r.texts.append(payload)
            kept.append(event)
        return b"\n\n".join(kept) + b"\n\n" if kept else b""


def _payload(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def _payloads(events: bytes) -> list[bytes]:
    return [p for p in (_payload(e) for e in events.split(b"\n\n")) if p]


async def relay_events(
    first: bytes,
    rest: AsyncIterator[bytes],
    *,
    strip_usage_only: bool,
    on_done: Callable[[StreamResult], Awaitable[None] | None],
    result: StreamResult | None = None,
    max_bytes: int = 0,
) -> AsyncIterator[bytes]:
    result = result if result is not None else StreamResult()
    scanner = EventScanner(strip_usage_only=strip_usage_only, result=result)
    reported = False
    buf = b""
    try:
        chunk: bytes | None = first
        while True:
            if chunk is None:
                try:
                    chunk = await rest.__anext__()
                except StopAsyncIteration:
                    break
            buf += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
            chunk = None
            cut = buf.rfind(b"\n\n")
            if cut < 0:
                continue
            events, buf = buf[: cut + 2], buf[cut + 2 :]
            out = scanner.scan(events)
            if result.done and not reported:
                # settle and free the concurrency slot before the client sees [DONE]: a client
                # that stops reading there and asks for its usage, or sends its next request,
                # at once finds the row and the slot
                reported = True
                await await_release(on_done(result))
            if out:
                result.bytes_sent += len(out)
                yield out
            if max_bytes and result.bytes_sent > max_bytes:
                result.error = f"upstream stream exceeded {max_bytes} bytes"
                yield error_frame(
                    f"the upstream sent more than {max_bytes} bytes (the gateway's response "
                    "limit, MODELPORT_MAX_RESPONSE_BYTES); the stream was cut",
                    type="upstream_error",
                    code="response_too_large",
                )
                return
        if buf.strip():
            out = scanner.scan(buf + b"\n\n")
            result.bytes_sent += len(out)
            yield out
        if not result.done:
            result.error = "upstream stream ended before [DONE]"
            yield error_frame(
                "the upstream ended the stream early; the answer is incomplete, retry the request",
                type="upstream_error",
                code="stream_interrupted",
            )
    except UpstreamUnavailable as exc:
        result.error = f"stream interrupted: {exc}"
        yield error_frame(
            f"the upstream failed mid-stream ({exc.reason}); the answer is incomplete, retry "
            "the request",
            type="upstream_error",
            code="stream_interrupted",
        )
    finally:
        if not reported:
            on_done(result)


async def relay_bytes(
    first: bytes,
    rest: AsyncIterator[bytes],
    *,
    on_done: Callable[[StreamResult], Awaitable[None] | None],
    result: StreamResult,
    max_bytes: int = 0,
) -> AsyncIterator[bytes]:
    """A raw byte stream (synthesized audio) forwarded chunk by chunk, nothing in it parsed.

    Audio has no error frame: a failure mid-stream can only end it early; the usage row says why.
    """
    reported = False
    try:
        chunk = first
        while True:
            result.bytes_sent += len(chunk)
            yield chunk
            if max_bytes and result.bytes_sent > max_bytes:
                result.error = f"upstream stream exceeded {max_bytes} bytes (cut)"
                return
            try:
                chunk = await rest.__anext__()
            except StopAsyncIteration:
                break
        result.done = True
        reported = True
        await await_release(on_done(result))
    except UpstreamUnavailable as exc:
        result.error = f"stream interrupted: {exc}"
    finally:
        if not reported:
            on_done(result)


class RelayStream(StreamingResponse):
    """A streaming response that always reports its end once and frees the upstream."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        result: StreamResult,
        on_closed: Callable[[StreamResult], None],
        upstream_close: Callable[[], Awaitable[None]] | None,
        tasks: set[asyncio.Task[None]],
        **kw: Any,
    ) -> None:
        super().__init__(content, **kw)
        self._tasks = tasks  # the owner keeps cleanup tasks referenced until they finish
        self._result = result
        self._on_closed = on_closed
        self._upstream_close = upstream_close
        self._gen = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._send_watching_disconnect(receive, send)
        finally:
            self._on_closed(self._result)
            task = asyncio.get_running_loop().create_task(self._cleanup())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_watching_disconnect(self, receive: Receive, send: Send) -> None:
        """Stream in the request's own task; a watcher task cancels it if the client leaves.

        Starlette does the same with an anyio task group that runs the stream in a second task
        (uvicorn declares ASGI 2.3); sending from this task instead saves a scheduling hop before
        the first byte and the task group's setup on every stream.
        """
        streamer = asyncio.current_task()
        assert streamer is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            streamer.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not gone:
                raise
            streamer.uncancel()  # the client left: the stream ends here, quietly
        finally:
            watcher.cancel()

    async def _cleanup(self) -> None:
        # Close the generator (its own finally is a no-op by now) and the upstream connection,
        # so an abandoned stream does not keep the upstream generating for nobody.
        aclose = getattr(self._gen, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError, UpstreamUnavailable):
                await aclose()
        if self._upstream_close is not None:
            with contextlib.suppress(OSError):
                await self._upstream_close()
