"""The adaptor for providers that do not speak OpenAI (Anthropic, Gemini, Azure, Bedrock, ...).

litellm translates the OpenAI request to the provider's wire format and back; this module adds
what the relay needs on top (base.py has the contract):

- litellm's own retries are off (`num_retries=0`, `max_retries=0`): dispatch retries and fails
  over, and it can only do so if a failure comes back at once;
- a stream's first chunk is pulled inside `send()`, so a provider that fails before streaming is
  reported from `send()` and dispatch can still try another endpoint;
- failures become what dispatch acts on: connection errors and connect/first-byte timeouts raise
  `UpstreamUnavailable`; provider errors return their status (401, 404, 429, 5xx; Anthropic's 529
  'overloaded' as 503) with an OpenAI error body carrying the provider's message, never the key;
- after the first chunk, a failure raises `StreamInterrupted` (an `UpstreamUnavailable`) from the
  stream iterator, and a gap longer than `stream_idle` raises `UpstreamTimedOut`; dispatch ends
  the client's stream with an error event.

litellm takes seconds to import, so it is imported on the first request, not with this module.

Redirects are not followed, as on the pass-through path: litellm's own HTTP clients follow them
by default (AsyncHTTPHandler(follow_redirects=True)), so the providers that call through that
handler (OWN_CLIENT: anthropic, gemini) get one of ours that does not, and Azure, which litellm
calls through the OpenAI SDK (whose client follows them too), an AsyncAzureOpenAI of ours per
base URL, key and API version, on an httpx client that does not.

Endpoint.config keys read here: `provider` (litellm's provider prefix; set by the registry from
the One API channel type: 14 → anthropic, 24 → gemini, 3 → azure, ...), `api_version` (azure; for
gemini the API version path, default v1beta), `litellm_params` (a dict of extra litellm kwargs an
admin configures for the channel, e.g. aws_region_name for bedrock; trusted, unlike the body).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from gateway.upstreams import litellm_convert as convert
from gateway.upstreams.base import (
    Endpoint,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimedOut,
    UpstreamUnavailable,
)
from modelport_wire import openai as wire

if TYPE_CHECKING:
    from types import ModuleType

JSON_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {"content-type": wire.MEDIA_TYPE, "cache-control": "no-cache"}

# Providers litellm has no embeddings route for; others are tried and their error mapped.
NO_EMBEDDINGS = frozenset({"anthropic"})
# Providers litellm calls through its AsyncHTTPHandler, which take our handler as `client`.
OWN_CLIENT = frozenset({"anthropic", "gemini"})


class StreamInterrupted(UpstreamUnavailable):
    """The provider's stream failed after its first chunk; the message is safe to show clients.

    A subclass of UpstreamUnavailable so the relay handles it like the pass-through adaptor's
    mid-stream failures (an idle stream raises UpstreamTimedOut instead, as there).
    """


class LitellmUpstream:
    kind = "litellm"

    def __init__(self) -> None:
        self._litellm: ModuleType | None = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._transport_errors: tuple[type[BaseException], ...] = ()
        self._litellm_params: frozenset[str] = frozenset()
        self._http: Any = None  # litellm AsyncHTTPHandler that never follows redirects
        self._azure: dict[tuple[str, str, str], Any] = {}  # AsyncAzureOpenAI clients, the same

    # -- litellm, loaded once per adaptor ------------------------------------------------------

    def _lib(self) -> ModuleType:
        if self._litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import aiohttp
            import httpx
            import litellm
            import openai
            from litellm.types.utils import all_litellm_params

            # No "Give Feedback" banners, no request bodies or keys in litellm's logs.
            litellm.suppress_debug_info = True
            litellm.set_verbose = False
            litellm.turn_off_message_logging = True
            litellm.redact_messages_in_exceptions = True
            from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

            self._http = AsyncHTTPHandler(follow_redirects=False)
            self._transport_errors = (
                httpx.TransportError,
                aiohttp.ClientConnectionError,
                aiohttp.ServerTimeoutError,
                ConnectionError,
                TimeoutError,
            )
            # What a provider call can raise that we know how to report.
            self._errors = (
                openai.OpenAIError,
                httpx.HTTPError,
                aiohttp.ClientError,
                OSError,
                TimeoutError,
            )
            self._litellm_params = frozenset(all_litellm_params)
            self._litellm = litellm
        return self._litellm

    # -- the Upstream protocol -----------------------------------------------------------------

    async def warm_up(self) -> None:
        """Import litellm now (off the event loop) rather than inside the first request."""
        if self._litellm is None:
            await asyncio.to_thread(self._lib)

    async def send(self, request: UpstreamRequest, endpoint: Endpoint) -> UpstreamResponse:
        provider = str(endpoint.config.get("provider") or "").strip()
        if not provider:
            return _unsupported(f"channel {endpoint.channel_name!r} has no litellm provider set")
        # The import takes seconds: never on the event loop, never inside the request's deadline.
        await self.warm_up()
        if request.surface == "chat":
            return await self._chat(request, endpoint, provider)
        if request.surface == "embeddings" and provider not in NO_EMBEDDINGS:
            return await self._embeddings(request, endpoint, provider)
        return _unsupported(
            f"channel {endpoint.channel_name!r} ({provider}) does not support the "
            f"{request.surface} API; use a channel that serves it"
        )

    def _azure_client(self, api_base: str, key: str, version: str) -> Any:
        cache_key = (api_base, key, version)
        client = self._azure.get(cache_key)
        if client is None:
            import httpx
            import openai

            options: dict[str, Any] = {
                "api_key": key,
                "azure_endpoint": api_base,
                "api_version": version,
                "max_retries": 0,
                "http_client": httpx.AsyncClient(follow_redirects=False),
            }
            client = openai.AsyncAzureOpenAI(**options)
            self._azure[cache_key] = client
        return client

    async def aclose(self) -> None:
        """Close our HTTP clients and the ones litellm caches (those live in litellm)."""
        if self._http is not None:
            await self._http.close()
        for client in self._azure.values():
            await client.close()
        if self._litellm is not None:
            closer = getattr(self._litellm, "close_litellm_async_clients", None)
            if closer is not None:
                await closer()

    # -- surfaces ------------------------------------------------------------------------------

    def _common_kwargs(
        self, body: dict[str, Any], model: str, endpoint: Endpoint, provider: str
    ) -> dict[str, Any]:
        self._lib()  # loads the list of litellm's own kwargs
        kwargs: dict[str, Any] = convert.passthrough_params(body, self._litellm_params)
        extra = endpoint.config.get("litellm_params")
        if isinstance(extra, dict):
            kwargs.update(extra)
        kwargs.update(
            model=f"{provider}/{endpoint.upstream_model(model)}",
            api_key=endpoint.api_key or None,
            api_base=convert.api_base_for(provider, endpoint.base_url, endpoint.config),
            num_retries=0,
            max_retries=0,
            drop_params=True,
            timeout=_httpx_timeout(endpoint),
            # litellm treats some client tools as MCP servers it should call itself (a URL in the
            # tool): never from a gateway, and its MCP code needs the `mcp` package besides.
            _skip_mcp_handler=True,
        )
        if provider in OWN_CLIENT:
            kwargs["client"] = self._http
        elif provider == "azure" and endpoint.config.get("api_version"):
            kwargs["client"] = self._azure_client(
                kwargs["api_base"], endpoint.api_key or "", str(endpoint.config["api_version"])
            )
        if endpoint.config.get("api_version") and provider != "gemini":
            kwargs["api_version"] = endpoint.config["api_version"]
        return kwargs

    async def _chat(
        self, request: UpstreamRequest, endpoint: Endpoint, provider: str
    ) -> UpstreamResponse:
        lib = self._lib()
        body = request.body or {}
        if not isinstance(body.get("messages"), list):
            return _bad_request("'messages' must be a list of chat messages")
        kwargs = self._common_kwargs(body, request.model, endpoint, provider)
        kwargs["messages"] = body["messages"]
        kwargs["stream"] = request.stream
        if request.stream:
            # Always ask for usage: the relay bills from the final usage chunk.
            kwargs["stream_options"] = {"include_usage": True}
        t = endpoint.timeouts
        if not request.stream:
            try:
                async with asyncio.timeout(t.total):
                    result = await lib.acompletion(**kwargs)
            except self._errors as exc:
                return self._error_response(exc, endpoint, provider)
            payload = convert.completion_dict(result.model_dump(), request.model)
            return UpstreamResponse(200, dict(JSON_HEADERS), body=orjson.dumps(payload))
        stream: Any = None
        try:
            async with asyncio.timeout(t.first_byte):
                stream = await lib.acompletion(**kwargs)
                first = await _next_or_none(stream)
        except self._errors as exc:
            if stream is not None:
                await _closer(stream)()
            return self._error_response(exc, endpoint, provider)
        return UpstreamResponse(
            200,
            dict(SSE_HEADERS),
            stream=self._frames(stream, first, request.model, endpoint, provider),
            close=_closer(stream),
        )

    async def _embeddings(
        self, request: UpstreamRequest, endpoint: Endpoint, provider: str
    ) -> UpstreamResponse:
        lib = self._lib()
        body = dict(request.body or {})
        if "input" not in body:
            return _bad_request("'input' is required")
        encoding_format = body.pop("encoding_format", None)
        kwargs = self._common_kwargs(body, request.model, endpoint, provider)
        kwargs["input"] = body["input"]
        try:
            async with asyncio.timeout(endpoint.timeouts.total):
                result = await lib.aembedding(**kwargs)
        except self._errors as exc:
            return self._error_response(exc, endpoint, provider)
        payload = convert.embeddings_dict(result.model_dump(), request.model, encoding_format)
        return UpstreamResponse(200, dict(JSON_HEADERS), body=orjson.dumps(payload))

    # -- streams and errors --------------------------------------------------------------------

    async def _frames(
        self, stream: Any, first: Any, model: str, endpoint: Endpoint, provider: str
    ) -> AsyncIterator[bytes]:
        """OpenAI SSE frames: the chunk pulled in send(), the rest, one usage chunk, [DONE]."""
        usage: dict[str, Any] | None = None
        head: dict[str, Any] = {"object": "chat.completion.chunk", "model": model}
        chunk = first
        idle = endpoint.timeouts.stream_idle
        try:
            while chunk is not None:
                frame, chunk_usage = convert.split_chunk(chunk.model_dump(), model)
                usage = chunk_usage or usage
                if frame is not None:
                    head = frame
                    yield wire.frame_json(frame)
                try:
                    async with asyncio.timeout(idle):
                        chunk = await _next_or_none(stream)
                except TimeoutError as exc:
                    raise UpstreamTimedOut(
                        f"{provider} stream idle for more than {idle:g}s"
                    ) from exc
        except self._errors as exc:
            message = convert.provider_message(_exc_text(exc), endpoint.api_key)
            raise StreamInterrupted(f"{provider} stream failed: {message}") from exc
        finally:
            await _closer(stream)()
        if usage is not None:
            yield wire.frame_json(convert.usage_chunk(head, usage))
        yield wire.DONE

    def _error_response(
        self, exc: BaseException, endpoint: Endpoint, provider: str
    ) -> UpstreamResponse:
        """Raise UpstreamUnavailable for transport failures; otherwise the provider's error."""
        text = _exc_text(exc)
        message = convert.provider_message(text, endpoint.api_key)
        if isinstance(exc, (TimeoutError, self._lib().Timeout)):
            raise UpstreamTimedOut(f"{provider} at {endpoint.base_url}: no answer in time") from exc
        if self._is_transport_failure(exc):
            raise UpstreamUnavailable(f"{provider} at {endpoint.base_url}: {message}") from exc
        status = convert.error_status(getattr(exc, "status_code", None), text)
        headers = dict(JSON_HEADERS)
        retry_after = _retry_after(exc)
        if retry_after:
            headers["retry-after"] = retry_after
        return UpstreamResponse(status, headers, body=convert.error_json(status, message, provider))

    def _is_transport_failure(self, exc: BaseException) -> bool:
        """litellm wraps a refused connection in InternalServerError(500); look at the causes."""
        lib = self._lib()
        seen: BaseException | None = exc
        for _ in range(8):
            if seen is None:
                return False
            if isinstance(seen, (lib.Timeout, lib.APIConnectionError, *self._transport_errors)):
                return True
            seen = seen.__cause__ or seen.__context__
        return False


def _httpx_timeout(endpoint: Endpoint) -> Any:
    import httpx

    t = endpoint.timeouts
    return httpx.Timeout(
        t.total, connect=t.connect, read=max(t.first_byte, t.stream_idle), pool=t.connect
    )


async def _next_or_none(stream: Any) -> Any:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


def _closer(stream: Any) -> Any:
    async def close() -> None:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()

    return close


def _exc_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else str(exc)


def _retry_after(exc: BaseException) -> str | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
    except AttributeError:
        return None
    return str(value) if value else None


def _unsupported(message: str) -> UpstreamResponse:
    body = wire.error_bytes(message, code="unsupported_surface")
    return UpstreamResponse(400, dict(JSON_HEADERS), body=body)


def _bad_request(message: str) -> UpstreamResponse:
    body = wire.error_bytes(message, code="invalid_request")
    return UpstreamResponse(400, dict(JSON_HEADERS), body=body)
