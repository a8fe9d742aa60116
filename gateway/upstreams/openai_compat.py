"""Pass-through adaptor for OpenAI-compatible upstreams (OpenAI, vLLM, Xinference, Ollama /v1,
DeepSeek, ... and modelport's own workers).

The client's JSON is forwarded as the same bytes unless the model name is mapped or usage must be
requested for a stream, through the lean HTTP/1.1 client of gateway.upstreams.http1 (multipart
uploads through aiohttp); responses come back as bytes, and streams chunk by chunk. Nothing here
parses a response: the relay reads usage and errors. Redirects are never followed: a 3xx is an
endpoint failure (UpstreamUnavailable), so a hostile upstream cannot make the relay fetch, or send
the channel's key to, another address. Nor is a channel's URL ever used if it points at a cloud
metadata service (gateway.security.upstream_urls), checked before the first request to each base
URL and by the client's resolver on every connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from gateway.security.ssrf import Allow
from gateway.security.upstream_urls import UpstreamResolver, UpstreamURLRefused, check_upstream_url
from gateway.upstreams import http1
from gateway.upstreams.base import (
    SURFACE_PATHS,
    Endpoint,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimedOut,
    UpstreamUnavailable,
    redirect_refused,
)

# Cap on a non-streaming upstream body; a larger one is cut off and reported as an error.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
HOP_HEADERS = {
    "content-length",
    "transfer-encoding",
    "connection",
    "content-encoding",
    "keep-alive",
}


class OpenAICompatUpstream:
    kind = "openai"

    def __init__(self, *, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.max_response_bytes = max_response_bytes
        self.allow = Allow.of(())  # MODELPORT_UPSTREAM_ALLOW, set by create_app
        self._checked: set[str] = set()
        self._timeouts: dict[tuple[float | None, float], aiohttp.ClientTimeout] = {}
        self._http1: http1.Pool | None = None
        self._http1_loop: asyncio.AbstractEventLoop | None = None
        self._targets: dict[str, http1.Target | None] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,
                ttl_dns_cache=60,
                keepalive_timeout=30,
                resolver=UpstreamResolver(self.allow),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def _pool(self) -> http1.Pool:
        loop = asyncio.get_running_loop()
        if self._http1 is None or self._http1_loop is not loop:
            self._http1 = http1.Pool(UpstreamResolver(self.allow))
            self._http1_loop = loop
        return self._http1

    def _target(self, url: str) -> http1.Target | None:
        try:
            return self._targets[url]
        except KeyError:
            found = self._targets[url] = http1.target_of(url)
            return found

    async def aclose(self) -> None:
        if self._http1 is not None:
            self._http1.close()
        if self._session is not None:
            await self._session.close()

    def _payload(self, request: UpstreamRequest, endpoint: Endpoint) -> tuple[Any, dict[str, str]]:
        headers = {"Accept-Encoding": "identity", **request.headers}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        upstream_model = endpoint.upstream_model(request.model)
        if request.body is None:  # multipart
            form = aiohttp.FormData()
            for name, value in request.form or []:
                form.add_field(name, upstream_model if name == "model" else value)
            for part in request.files:
                part.file.seek(0)
                form.add_field(
                    part.field, part.file, filename=part.filename, content_type=part.content_type
                )
            return form, headers
        headers["Content-Type"] = "application/json"
        inject_usage = (
            request.stream
            and request.surface in ("chat", "completions")
            and endpoint.config.get("stream_usage", False)
            and not (request.body.get("stream_options") or {}).get("include_usage")
        )
        if upstream_model == request.model and not inject_usage and request.raw is not None:
            return request.raw, headers
        body = dict(request.body)
        body["model"] = upstream_model
        if inject_usage:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(body), headers

    async def send(self, request: UpstreamRequest, endpoint: Endpoint) -> UpstreamResponse:
        if endpoint.base_url not in self._checked:
            try:
                check_upstream_url(endpoint.base_url, self.allow)
            except UpstreamURLRefused as exc:
                raise UpstreamUnavailable(
                    exc.message, reason="the channel's URL is refused (a cloud metadata address)"
                ) from exc
            self._checked.add(endpoint.base_url)
        data, headers = self._payload(request, endpoint)
        url = endpoint.base_url + SURFACE_PATHS[request.surface]
        t = endpoint.timeouts
        target = self._target(url) if isinstance(data, bytes) else None
        resp: aiohttp.ClientResponse | http1.Response
        try:
            async with asyncio.timeout(t.first_byte):
                if target is not None:
                    resp = await self._pool().post(target, headers, data, t.connect)
                else:
                    timeout = self._timeout(None if request.stream else t.total, t.connect)
                    resp = await self._client().post(
                        url, data=data, headers=headers, timeout=timeout, allow_redirects=False
                    )
        except TimeoutError as exc:
            raise UpstreamTimedOut(f"no response within {t.first_byte:g}s from {url}") from exc
        except (aiohttp.ClientError, OSError, http1.ConnectionBroken) as exc:
            raise UpstreamUnavailable(f"cannot reach {url}: {exc}") from exc
        if 300 <= resp.status < 400:
            resp.release()
            raise UpstreamUnavailable(
                redirect_refused(resp.status),
                reason="the upstream answered with a redirect, which is never followed",
            )
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
        is_sse = resp.headers.get("Content-Type", "").startswith("text/event-stream")
        if resp.status == 200 and request.stream and (is_sse or request.raw_stream):
            return UpstreamResponse(
                status=resp.status,
                headers=out_headers,
                stream=self._iterate(resp, t.stream_idle),
                close=_closer(resp),
            )
        try:
            body = await self._read_body(resp, t.total)
        finally:
            resp.release()
        return UpstreamResponse(status=resp.status, headers=out_headers, body=body)

    def _timeout(self, total: float | None, connect: float) -> aiohttp.ClientTimeout:
        """ClientTimeout is immutable: one per distinct setting, not one per request."""
        key = (total, connect)
        found = self._timeouts.get(key)
        if found is None:
            found = self._timeouts[key] = aiohttp.ClientTimeout(
                total=total, sock_connect=connect, connect=connect
            )
        return found

    async def _read_body(
        self, resp: aiohttp.ClientResponse | http1.Response, total: float
    ) -> bytes:
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + total
        try:
            while chunk := await _next_chunk(resp.content, lambda: asyncio.timeout_at(deadline)):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise UpstreamUnavailable(
                        f"upstream response exceeds {self.max_response_bytes} bytes",
                        reason=f"the upstream's answer exceeds {self.max_response_bytes} bytes",
                    )
                chunks.append(chunk)
        except TimeoutError as exc:
            raise UpstreamTimedOut(f"response not complete within {total:g}s") from exc
        except (aiohttp.ClientError, http1.ConnectionBroken) as exc:
            raise UpstreamUnavailable(f"upstream closed the connection: {exc}") from exc
        return b"".join(chunks)

    @staticmethod
    async def _iterate(
        resp: aiohttp.ClientResponse | http1.Response, idle: float
    ) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    chunk = await _next_chunk(resp.content, lambda: asyncio.timeout(idle))
                except TimeoutError as exc:
                    raise UpstreamTimedOut(
                        f"stream idle for more than {idle:g}s",
                        reason=f"the stream was idle for more than {idle:g}s",
                    ) from exc
                except (aiohttp.ClientError, http1.ConnectionBroken) as exc:
                    raise UpstreamUnavailable(f"upstream stream broke: {exc}") from exc
                if not chunk:
                    return
                yield chunk
        finally:
            resp.release()


async def _next_chunk(
    content: aiohttp.StreamReader | http1.Response, timer: Callable[[], asyncio.Timeout]
) -> bytes:
    """The next chunk of a response, b"" at its end. The timer is armed only when there is
    nothing buffered to take: a timer per read was a tenth of a relayed request's CPU, and bytes
    already received cannot time out."""
    chunk = content.read_nowait()
    if chunk or content.at_eof():
        return chunk
    async with timer():
        return await content.readany()


def _closer(resp: aiohttp.ClientResponse | http1.Response) -> Any:
    async def close() -> None:
        resp.close()

    return close
