"""A real HTTP server in a background thread, shared by the fake provider servers.

The fakes (fake_anthropic, fake_gemini) are FastAPI apps served by uvicorn on 127.0.0.1 at a port
the OS picks, so the code under test talks real HTTP through its real client stack (litellm's
httpx clients included). Each fake records what it received and reads its behaviour from a
`ProviderState` the test controls; both are guarded by one lock because the server runs in
another thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


@dataclass(slots=True)
class Behaviour:
    """What a fake answers. `set_behaviour(...)` replaces fields; `reset()` restores defaults.

    status: answer every request with this error status (401, 429, 500, 529, ...) in the provider's
        error shape; `fail_times` limits that to the first N requests (then it answers normally).
    chunks: the reply text, as the pieces a stream sends (non-stream replies join them).
    cut_after: in a stream, close the connection abruptly after this many text pieces.
    error_event_after: in a stream, send the provider's error event after this many pieces.
    tool_call: (name, arguments dict): after the text, the model calls this tool (Anthropic
        tool_use block, stop_reason tool_use).
    stall_after: in a stream, stop sending after this many pieces (0: before any event, i.e. no
        first byte) and hold the connection until the client gives up; for timeout tests.
    """

    status: int | None = None
    error_message: str | None = None
    fail_times: int | None = None
    chunks: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake."])
    input_tokens: int = 11
    output_tokens: int = 7
    cut_after: int | None = None
    error_event_after: int | None = None
    stall_after: int | None = None
    tool_call: tuple[str, dict[str, Any]] | None = None
    finish_reason: str | None = None  # provider's stop reason; None: the provider's normal stop
    embedding_dimensions: int = 8

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class ProviderState:
    """Behaviour and recorded requests, shared between the test thread and the server thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._behaviour = Behaviour()
        self._requests: list[RecordedRequest] = []
        self._failures = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return replace(self._behaviour, chunks=list(self._behaviour.chunks))

    def set_behaviour(self, **changes: Any) -> None:
        known = {f.name for f in fields(Behaviour)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown behaviour fields: {sorted(unknown)}")
        with self._lock:
            self._behaviour = replace(self._behaviour, **changes)
            self._failures = 0

    def reset(self) -> None:
        with self._lock:
            self._behaviour = Behaviour()
            self._requests.clear()
            self._failures = 0

    def record(self, request: RecordedRequest) -> tuple[Behaviour, int | None]:
        """Store the request; return the behaviour and the error status to answer with, if any."""
        with self._lock:
            self._requests.append(request)
            b = self._behaviour
            status = b.status
            if status is not None and b.fail_times is not None:
                if self._failures >= b.fail_times:
                    status = None
                else:
                    self._failures += 1
            return replace(b, chunks=list(b.chunks)), status


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test runner owns signals
        pass


class ServedApp:
    """Runs `app` on 127.0.0.1 at a free port until `stop()`."""

    def __init__(self, app: FastAPI) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
        )
        self._server = _ThreadServer(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake provider server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


async def record_request(state: ProviderState, request: Any) -> tuple[Any, Behaviour, int | None]:
    """Parse and record a Starlette request; return (body, behaviour, error status or None)."""
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else None
    except ValueError:
        body = None
    recorded = RecordedRequest(
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )
    behaviour, status = state.record(recorded)
    return body, behaviour, status


async def stall(request: Any, limit: float = 60.0) -> None:
    """Hold a response open until the client disconnects (or `limit` seconds pass)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic embedding, so tests can compare what came back with what was sent."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(text))
    return [((seed * (k + 3)) % 1000) / 1000.0 for k in range(dimensions)]


class FakeProvider:
    """Handle on a running fake provider: `url`, `api_key`, recorded `requests`, scripted
    `behaviour`. Subclasses set `build_app(state, api_key) -> app`."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.state = ProviderState()
        self._served = ServedApp(self.build_app(self.state, api_key))
        self.url = self._served.url
        self.port = self._served.port

    @staticmethod
    def build_app(state: ProviderState, api_key: str) -> Any:
        raise NotImplementedError

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.state.requests

    @property
    def behaviour(self) -> Behaviour:
        return self.state.behaviour

    def set_behaviour(self, **changes: Any) -> None:
        self.state.set_behaviour(**changes)

    def reset(self) -> None:
        self.state.reset()

    def stop(self) -> None:
        self._served.stop()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
