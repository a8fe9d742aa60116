"""The request path shared by every surface: allow-list, quota reservation, dispatch, response,
settlement and the usage row.

Surfaces only parse their request and say how to estimate its cost (`RelayCall`); everything else
happens here once.

Whatever happens -- success, upstream error, a stream cut by either side -- every request ends in
exactly one `_record` (usage row, quota settlement, TPM correction, metrics) and gives its limiter
slots back exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from gateway.auth.tokens import Caller
from gateway.billing.prices import PriceBook
from gateway.billing.reservations import reserve
from gateway.billing.usage import UsageRecord, UsageWriter
from gateway.errors import (
    ModelportError,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    Unavailable,
    UpstreamFailed,
)
from gateway.limits.base import Ask, Lease, Limiter, ask_for, await_release
from gateway.logging import note
from gateway.metrics import Metrics
from gateway.relay.bounds import reported_tokens
from gateway.relay.dispatch import Dispatcher, Outcome
from gateway.relay.streaming import RelayStream, StreamResult, relay_bytes, relay_events
from gateway.upstreams.base import UpstreamRequest
from modelport_wire import openai as wire

log = logging.getLogger("modelport.relay")


@dataclass(slots=True)
class RelayCall:
    caller: Caller
    request: UpstreamRequest
    request_id: str
    # Local prompt-token count, computed only when needed (reservation, or usage missing).
    estimate_prompt: Callable[[], int] | None = None
    max_output_tokens: int = 0  # reservation bound for the completion
    count_usage: Callable[[dict[str, Any]], tuple[int, int]] | None = None  # surface-specific
    content: str = ""  # prompt text, kept only when the token asks for request logging
    reservation_id: int = 0  # its QuotaReservation row (0: nothing reserved)
    # Work done for the request once it is admitted and reserved (fetching a caller's media
    # URLs): never for a caller a limit or the quota turns away. A ModelportError it raises is
    # the answer, with the reservation refunded.
    prepare: Callable[[], Awaitable[None]] | None = None
    # Fills in, in place, what a non-streamed 200 answer lacks (fields clients index); True when
    # it changed something, and the answer is then re-encoded. It is handed the object usage was
    # read from, so the answer is decoded once.
    reshape: Callable[[dict[str, Any]], bool] | None = None
    _prompt: int | None = None

    @property
    def prompt_tokens(self) -> int:
        if self._prompt is None:
            self._prompt = self.estimate_prompt() if self.estimate_prompt else 0
        return self._prompt


def usage_of(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = obj.get("usage") or (obj.get("meta") or {}).get("tokens") or {}
    if not isinstance(usage, dict):
        return None, None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    return reported_tokens(prompt), reported_tokens(completion)


def _header(headers: dict[str, str], name: str, default: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), default)


def _storable(text: str) -> str:
    """PostgreSQL refuses a NUL in text, which would cost the whole usage row: an upstream's
    error body or a logged prompt may hold one."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class RelayService:
    def __init__(
        self,
        dispatcher: Dispatcher,
        prices: PriceBook,
        usage: UsageWriter,
        sessions: Any,
        *,
        limiter: Limiter | None = None,
        metrics: Metrics | None = None,
        max_stream_bytes: int = 0,
    ) -> None:
        self.dispatcher = dispatcher
        self.prices = prices
        self.usage = usage
        self.sessions = sessions
        self.limiter = limiter
        self.metrics = metrics
        self.max_stream_bytes = max_stream_bytes
        self.open_streams = 0
        self._cleanups: set[asyncio.Task[None]] = set()
        self._drained = asyncio.Event()
        self._drained.set()

    def allowed_models(self, caller: Caller) -> set[str]:
        models = self.dispatcher.routes.models(caller.group)
        return models if caller.models is None else models & caller.models

    async def drain(self, limit_s: float) -> bool:
        """Wait (up to `limit_s`) for the streams in flight to end: graceful shutdown."""
        try:
            async with asyncio.timeout(limit_s):
                await self._drained.wait()
        except TimeoutError:
            log.warning("shutdown: %d streams still open after %gs", self.open_streams, limit_s)
            return False
        return True

    async def _admit(self, call: RelayCall) -> Lease | None:
        if self.limiter is None:
            return None
        caller = call.caller
        cost = call.prompt_tokens + call.max_output_tokens if caller.tpm else 0
        ask: Ask = ask_for(caller, cost)
        try:
            return await self.limiter.acquire(ask)
        except RateLimited as exc:
            if self.metrics is not None:
                self.metrics.rate_limited.labels(exc.code or "limit").inc()
            raise

    async def run(self, call: RelayCall) -> Response:
        req, caller = call.request, call.caller
        if not caller.may_use(req.model):
            raise PermissionDenied(
                f"token '{caller.name}' may not use model '{req.model}'; it may use: "
                + ", ".join(sorted(self.allowed_models(caller))),
                param="model",
                code="model_not_allowed",
            )
        note(token=caller.name, model=req.model)
        lease = await self._admit(call)
        handed_off = False  # a stream takes the lease with it
        try:
            price = self.prices.get(req.model)
            reserved = 0
            if not caller.unlimited:
                reserved = price.quota(call.prompt_tokens, call.max_output_tokens)
                try:
                    async with self.sessions() as session:
                        taken = await reserve(
                            session,
                            token_id=caller.token_id,
                            amount=reserved,
                            holder=self.usage.ledger.holder,
                            request_id=call.request_id,
                            model=req.model,
                        )
                except (SQLAlchemyError, OSError) as exc:
                    raise Unavailable(
                        "the database is unreachable, so quota cannot be reserved; retry shortly",
                        code="database_unavailable",
                        headers={"Retry-After": "2"},
                    ) from exc
                if taken is None:
                    raise QuotaExceeded(
                        f"token '{caller.name}' has not enough quota left for this request "
                        f"(needs up to {reserved} units): add quota or lower max_tokens"
                    )
                call.reservation_id = taken
            started = time.perf_counter()
            try:
                if call.prepare is not None:
                    await call.prepare()
                outcome = await self.dispatcher.dispatch(
                    req, caller.group, lambda: self.allowed_models(caller)
                )
            except ModelportError as exc:
                self._record(
                    call,
                    None,
                    started,
                    status=exc.status,
                    error=exc.detail
                    if isinstance(exc, UpstreamFailed) and exc.detail
                    else exc.message,
                    reserved=reserved,
                    prompt=0,
                    completion=0,
                    lease=lease,
                )
                raise
            except BaseException as exc:  # re-raised: only the refund and the row happen here
                cancelled = isinstance(exc, asyncio.CancelledError)
                self._record(
                    call,
                    None,
                    started,
                    status=499 if cancelled else 500,
                    error="client went away before an answer" if cancelled else repr(exc)[:300],
                    reserved=reserved,
                    prompt=0,
                    completion=0,
                    lease=lease,
                )
                raise
            note(channel=outcome.endpoint.channel_name)
            if outcome.response.stream is not None and outcome.first_chunk is not None:
                handed_off = True
                return self._stream(call, outcome, started, reserved, lease)
            return self._complete(call, outcome, started, reserved, lease)
        finally:
            if lease is not None and not handed_off and self.limiter is not None:
                await await_release(self.limiter.release(lease))

    def _complete(
        self, call: RelayCall, o: Outcome, started: float, reserved: int, lease: Lease | None
    ) -> Response:
        body = o.response.body or b""
        status = o.response.status
        prompt = completion = 0
        error = ""
        reshaped = False
        if status < 400:
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError:
                obj = {}
            if isinstance(obj, dict):
                if call.count_usage is not None:
                    prompt, completion = call.count_usage(obj)
                else:
                    p, c = usage_of(obj)
                    prompt = call.prompt_tokens if p is None else int(p)
                    completion = int(c or 0)
                if status == 200 and call.reshape is not None and call.reshape(obj):
                    body, reshaped = orjson.dumps(obj), True
        else:
            error = body[:500].decode("utf-8", "replace")
        self._record(
            call,
            o,
            started,
            status=status,
            error=error,
            reserved=reserved,
            prompt=prompt,
            completion=completion,
            ttfb=time.perf_counter() - started,
            lease=lease,
        )
        media = o.response.headers.get("Content-Type") or o.response.headers.get(
            "content-type", "application/json"
        )
        if reshaped:
            media = "application/json"
        return Response(content=body, status_code=status, media_type=media)

    def _stream(
        self, call: RelayCall, o: Outcome, started: float, reserved: int, lease: Lease | None
    ) -> Response:
        ttfb = time.perf_counter() - started
        req = call.request
        injected = bool(
            o.endpoint.config.get("stream_usage")
            and not ((req.body or {}).get("stream_options") or {}).get("include_usage")
        )
        reported = False

        def done(result: StreamResult) -> Awaitable[None] | None:
            """Runs once: at the stream's end, or when the response is torn down early.

            Frees the concurrency slot too, and returns the limiter's pending write so the
            stream awaits it before the client sees [DONE]."""
            nonlocal reported
            if reported:
                return None
            reported = True
            prompt = result.prompt_tokens
            completion = result.completion_tokens
            if prompt is None:
                prompt = call.prompt_tokens
            if completion is None:
                completion = result.local_completion_tokens()
            self._record(
                call,
                o,
                started,
                status=200,
                error=result.error or ("" if result.done else "client disconnected mid-stream"),
                reserved=reserved,
                prompt=int(prompt),
                completion=int(completion),
                ttfb=ttfb,
                stream=True,
                lease=lease,
            )
            if lease is not None and self.limiter is not None:
                return self.limiter.release(lease)
            return None

        def closed(result: StreamResult) -> None:
            done(result)
            self.open_streams -= 1
            if not self.open_streams:
                self._drained.set()

        assert o.response.stream is not None and o.first_chunk is not None
        result = StreamResult()
        media_type = wire.MEDIA_TYPE
        if req.raw_stream:  # audio bytes: forwarded as they come, under the upstream's type
            media_type = _header(o.response.headers, "content-type", "application/octet-stream")
            events = relay_bytes(
                o.first_chunk,
                o.response.stream,
                on_done=done,
                result=result,
                max_bytes=self.max_stream_bytes,
            )
        else:
            events = relay_events(
                o.first_chunk,
                o.response.stream,
                strip_usage_only=injected,
                on_done=done,
                result=result,
                max_bytes=self.max_stream_bytes,
            )
        self.open_streams += 1
        self._drained.clear()
        return RelayStream(
            events,
            result=result,
            on_closed=closed,
            upstream_close=o.response.close,
            tasks=self._cleanups,
            media_type=media_type,
            headers=dict(wire.HEADERS),
        )

    def _record(
        self,
        call: RelayCall,
        o: Outcome | None,
        started: float,
        *,
        status: int,
        error: str,
        reserved: int,
        prompt: int,
        completion: int,
        ttfb: float = 0.0,
        stream: bool = False,
        lease: Lease | None = None,
    ) -> None:
        req, caller = call.request, call.caller
        charged = self.prices.get(req.model).quota(prompt, completion) if status < 400 else 0
        ep = o.endpoint if o else None
        if charged > reserved and not caller.unlimited:
            charged = self._cap(call, ep, charged, reserved)
        latency = time.perf_counter() - started
        if lease is not None and self.limiter is not None:
            self.limiter.settle(lease, prompt + completion if status < 400 else 0)
        if self.metrics is not None:
            channel = ep.channel_name if ep else "-"
            self.metrics.observe_relay(
                surface=req.surface,
                # an unrouted request's model is whatever the client typed: keep it out of labels
                model=req.model if ep else "-",
                channel=channel,
                status=status,
                seconds=latency,
                ttfb=ttfb,
                prompt=prompt if status < 400 else 0,
                completion=completion if status < 400 else 0,
                stream=stream,
                failed=status >= 400 or bool(error),
            )
        self.usage.record(
            UsageRecord(
                log={
                    "created_at": time.time(),
                    "request_id": call.request_id,
                    "token_id": caller.token_id,
                    "token_name": caller.name,
                    "model": req.model,
                    "upstream_model": ep.upstream_model(req.model) if ep else "",
                    "channel_id": ep.channel_id if ep else 0,
                    "channel_name": ep.channel_name if ep else "",
                    "endpoint": req.surface,
                    "status": status,
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "quota": charged,
                    "latency_ms": int(latency * 1000),
                    "ttfb_ms": int(ttfb * 1000),
                    "is_stream": stream,
                    "retries": max(0, (o.attempts if o else 1) - 1),
                    "error": _storable(error[:2000]),
                    "content": _storable(call.content) if caller.log_content else "",
                },
                token_id=caller.token_id,
                unlimited=caller.unlimited,
                reserved=reserved,
                charged=charged,
                channel_id=ep.channel_id if ep else 0,
                reservation_id=call.reservation_id,
            )
        )

    def _cap(self, call: RelayCall, ep: Any, charged: int, reserved: int) -> int:
        """A limited token is a budget that never goes below zero: it pays at most what was
        reserved for the request's own bound (its max_tokens, else the default estimate). An
        upstream reporting more (a wrong tokenizer, or one inflating its counts) is logged and
        counted, not charged."""
        channel = ep.channel_name if ep else "-"
        log.warning(
            "request %s: upstream %s reported usage worth %d quota units, %d were reserved; "
            "token %r charged %d",
            call.request_id,
            channel,
            charged,
            reserved,
            call.caller.name,
            reserved,
        )
        if self.metrics is not None:
            self.metrics.quota_over_reported.labels(channel).inc(charged - reserved)
        return reserved
