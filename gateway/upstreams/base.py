"""The contract between the relay and an upstream adaptor.

The relay (gateway.relay.dispatch) picks an `Endpoint` for a request, asks the adaptor registered for
the endpoint's `kind` to `send` the request there, and forwards what comes back. Adaptors do not retry
or choose endpoints: they report failures in a way dispatch can act on:

- raise `UpstreamUnavailable` when the upstream could not be reached or gave no answer in time
  (connect error, connect/first-byte timeout): dispatch tries another endpoint;
- return an `UpstreamResponse` with the upstream's status otherwise; dispatch retries 429 and 5xx,
  passes other statuses through to the client.

A streaming `UpstreamResponse` carries an async iterator of raw SSE bytes in OpenAI's
`chat.completion.chunk` framing (adaptors for other wire formats convert to it). Dispatch reads the
first chunk before committing to an endpoint, so an upstream that dies before its first byte is
retried elsewhere; after that a failure ends the client's stream with an OpenAI-shaped error event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

# The API surfaces a request can belong to, and their paths under an OpenAI base URL (…/v1).
SURFACE_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "rerank": "/rerank",
    "transcriptions": "/audio/transcriptions",
    "translations": "/audio/translations",
    "speech": "/audio/speech",
    "images": "/images/generations",
}


@dataclass(slots=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 120.0  # until response headers (and the first stream chunk)
    stream_idle: float = 120.0  # longest gap between two stream chunks
    total: float = 900.0  # a whole non-streaming request


@dataclass(slots=True)
class Endpoint:
    """One place a model can be served from: a remote channel, or one local worker replica."""

    channel_id: int
    channel_name: str
    kind: str  # adaptor name: "openai", "litellm", "local"
    base_url: str  # for OpenAI-compatible kinds: normalised to end in /v1
    api_key: str | None
    priority: int = 0
    weight: int = 1
    model_mapping: dict[str, str] = field(default_factory=dict)
    model_types: dict[str, str] = field(default_factory=dict)  # the admin's kind per model
    config: dict[str, Any] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Awaited before sending (local workers: load an unloaded model and wait until it is ready).
    prepare: Callable[[], Awaitable[None]] | None = None

    @property
    def id(self) -> str:
        """Stable identity for health tracking and 'never the endpoint that just failed'."""
        return f"{self.channel_id}@{self.base_url}"

    def upstream_model(self, model: str) -> str:
        return self.model_mapping.get(model, model)


@dataclass(slots=True)
class UploadPart:
    field: str
    filename: str
    content_type: str
    file: BinaryIO  # seekable; adaptors seek(0) before each attempt


@dataclass(slots=True)
class UpstreamRequest:
    surface: str  # a key of SURFACE_PATHS
    model: str  # as the client asked
    stream: bool
    body: dict[str, Any] | None  # parsed JSON body (None for multipart)
    raw: bytes | None  # the client's JSON bytes, forwarded untouched when no mapping applies
    # Multipart uploads (audio): the relay parses the form (file parts spooled to disk, never held
    # whole in memory) and adaptors rebuild it, so model mapping applies and retries can replay it.
    # (name, value) in the client's order: a field may repeat (the openai SDK sends each of
    # `timestamp_granularities` as its own `timestamp_granularities[]` part).
    form: list[tuple[str, str]] | None = None
    files: list[UploadPart] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # extra headers to forward
    # A 200 answer is streamed through as raw bytes whatever its type (synthesized audio), not
    # read whole and not parsed as SSE.
    raw_stream: bool = False


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    body: bytes | None = None  # non-streaming
    stream: AsyncIterator[bytes] | None = None  # streaming: raw SSE bytes
    close: Callable[[], Awaitable[None]] | None = None  # release the connection early


class UpstreamUnavailable(Exception):
    """The upstream could not be reached or did not answer in time; try another endpoint.

    The message (logs, the admin's usage row) may name the URL; `reason` is what the caller
    reads, and names no channel, host or URL."""

    reason = "cannot reach the upstream"

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class UpstreamTimedOut(UpstreamUnavailable):
    """No answer (or no next stream chunk) within the endpoint's timeout."""

    reason = "timed out"


class Upstream(Protocol):
    """One adaptor instance per kind, shared by all requests (it owns its connection pool)."""

    kind: str

    async def send(self, request: UpstreamRequest, endpoint: Endpoint) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def redirect_refused(status: int) -> str:
    """Why a 3xx from an upstream is an error. Redirects are never followed (the request, and
    the channel's key, would go wherever the upstream says) and the target is not repeated:
    callers must not learn upstream addresses."""
    return (
        f"the upstream answered HTTP {status} (a redirect); modelport never follows upstream "
        "redirects: the channel's base URL must point at the API itself"
    )
