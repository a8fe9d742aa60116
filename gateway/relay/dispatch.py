"""Route, retry and fail over.

Candidates come from the route table, highest priority tier first, weighted random inside a tier;
endpoints whose circuit is open are skipped (a half-open one gets a single probe request). A
connect error, a timeout, a 429 or a 5xx before the first byte reaches the client moves on to the
next endpoint -- never the one that just failed -- up to `retries` extra attempts, falling to lower
tiers. A 4xx other than 429 is the caller's problem and goes straight back -- except an upstream
that refuses *our* credentials or billing (401/402/403, or the codes invalid_api_key,
insufficient_quota, ...; never words in a message, which a caller can choose): that channel is
auto-disabled (`on_disable`) and the request fails over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from gateway.errors import (
    ModelNotFound,
    ModelportError,
    Unavailable,
    UpstreamFailed,
    UpstreamTimeout,
)
from gateway.routing import HealthTracker, RouteTable, weighted_order
from gateway.upstreams.base import (
    Endpoint,
    Upstream,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimedOut,
    UpstreamUnavailable,
)

log = logging.getLogger("modelport.relay")


# Error codes (`error.code` or `error.type`) that only the channel's own key or account can
# cause. Message text is never read: OpenAI-style upstreams quote the caller's input back
# ("Invalid value: 'billing'"), so matching words in it lets any caller disable a shared channel.
_DISABLE_CODES = frozenset(
    {
        "invalid_api_key",
        "insufficient_quota",
        "account_deactivated",
        "billing_not_active",
        "access_terminated",
        "organization_deactivated",
        "authentication_error",  # Anthropic's type for a bad key
        "permission_error",  # Anthropic's type for a key without access
        "PERMISSION_DENIED",  # Gemini's status
        "UNAUTHENTICATED",
    }
)
# Statuses about the credentials or the account, whatever the request was.
_DISABLE_STATUSES = {401: "key refused", 402: "payment required", 403: "access denied"}


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


def disable_reason(status: int, body: bytes | None) -> str | None:
    """Why this answer means the channel's credentials or billing are broken, or None.

    Only what the channel's key causes counts: 401/402/403, or a 4xx whose structured error code
    says so (429 insufficient_quota). A 400 invalid_request_error is the request's fault, never
    the channel's, whatever its message says."""
    if not 400 <= status < 500:
        return None
    code, type_, message = _error_fields(body)
    detail = f": {message[:200]}" if message else ""
    if status in _DISABLE_STATUSES:
        return f"HTTP {status} ({_DISABLE_STATUSES[status]}){detail}"
    if status == 400 and type_ == "invalid_request_error":
        return None
    for value in (code, type_):
        if value in _DISABLE_CODES:
            return f"HTTP {status} ({value}){detail}"
    return None


def _error_fields(body: bytes | None) -> tuple[str, str, str]:
    """(code, type, message) of an OpenAI-shaped error body (Gemini's `status` as the type)."""
    try:
        obj = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return "", "", ""
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return "", "", ""
    code, type_, message = err.get("code"), err.get("type") or err.get("status"), err.get("message")
    return (
        code if isinstance(code, str) else "",
        type_ if isinstance(type_, str) else "",
        message if isinstance(message, str) else "",
    )


@dataclass(slots=True)
class Outcome:
    response: UpstreamResponse
    endpoint: Endpoint
    attempts: int
    first_chunk: bytes | None = None  # streams: already read, must be sent first
    errors: list[str] = field(default_factory=list)


NotReady = Callable[[str], Awaitable[ModelportError | None]]


class Dispatcher:
    def __init__(
        self,
        routes: RouteTable,
        health: HealthTracker,
        upstreams: dict[str, Upstream],
        *,
        retries: int = 2,
        on_disable: Callable[[Endpoint, str], None] | None = None,
    ) -> None:
        self.routes = routes
        self.health = health
        self.upstreams = upstreams
        self.retries = retries
        self.on_disable = on_disable
        self.not_ready: NotReady | None = None  # see `explain_unrouted`

    def explain_unrouted(self, not_ready: NotReady) -> None:
        """Why a model without endpoints is not served (a local UID still loading, or failed):
        asked only once the route lookup came back empty, instead of answering 404. It may
        bring this process's routes up to date first (`--workers N`), so they are looked up
        again after it answered. Wired after construction because its answerer (the model
        directory) sits on the relay, which is built on this dispatcher."""
        self.not_ready = not_ready

    def candidates(self, group: str, model: str) -> tuple[list[Endpoint], list[Endpoint]]:
        """(endpoints to try in order, endpoints skipped because their circuit is open)."""
        ordered: list[Endpoint] = []
        parked: list[Endpoint] = []
        for tier in self.routes.tiers(group, model):
            for ep in weighted_order(tier):
                (ordered if self.health.available(ep.id) else parked).append(ep)
        return ordered, parked

    def _disable(self, ep: Endpoint, resp: UpstreamResponse) -> bool:
        if self.on_disable is None or ep.kind == "local" or not ep.config.get("auto_disable", True):
            return False
        reason = disable_reason(resp.status, resp.body)
        if reason is None:
            return False
        self.on_disable(ep, reason)
        return True

    async def dispatch(
        self, request: UpstreamRequest, group: str, allowed: Callable[[], set[str]]
    ) -> Outcome:
        """`allowed` (the models the caller may use) is asked only to word a 404: building that
        set on every request cost more than routing it."""
        endpoints, parked = self.candidates(group, request.model)
        if not endpoints and not parked and self.not_ready is not None:
            why = await self.not_ready(request.model)
            endpoints, parked = self.candidates(group, request.model)
            if not endpoints and why is not None:
                raise why
        if not endpoints:
            if parked:
                wait = min(self.health.retry_after(ep.id) for ep in parked)
                raise Unavailable(
                    f"every endpoint serving '{request.model}' is failing and paused (circuit "
                    f"open); retry in {max(1, round(wait))}s",
                    code="no_available_endpoint",
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
            raise ModelNotFound(_unknown_model_message(request.model, allowed()), param="model")
        errors: list[str] = []  # with channel names and addresses: log and usage row only
        reasons: list[str] = []  # the same, naming nothing: for the caller
        last: UpstreamResponse | None = None
        last_ep: Endpoint | None = None
        timed_out = False
        attempts = 0
        for ep in endpoints:
            if attempts > self.retries:
                break
            if not self.health.begin(ep.id):  # half-open and its probe is taken
                continue
            attempts += 1
            try:
                if ep.prepare is not None:
                    await ep.prepare()
                resp = await self.upstreams[ep.kind].send(request, ep)
            except UpstreamUnavailable as exc:
                self.health.failure(ep.id, at_once=_hung(ep, exc))
                errors.append(f"{ep.channel_name}: {exc}")
                reasons.append(exc.reason)
                timed_out = timed_out or isinstance(exc, UpstreamTimedOut)
                continue
            if self._disable(ep, resp):
                # the channel's own key/billing is broken: not the client's fault, fail over
                self.health.failure(ep.id)
                errors.append(
                    f"{ep.channel_name}: HTTP {resp.status}, upstream refused the channel's "
                    "credentials or billing (channel auto-disabled)"
                )
                reasons.append(f"HTTP {resp.status}")
                if resp.close is not None:
                    await resp.close()
                last, last_ep = resp, ep  # nothing else answers: the client sees this answer
                continue
            if retryable(resp.status):
                self.health.failure(ep.id)
                errors.append(f"{ep.channel_name}: HTTP {resp.status}")
                reasons.append(f"HTTP {resp.status}")
                if resp.close is not None:
                    await resp.close()
                last, last_ep = resp, ep
                continue
            first: bytes | None = None
            if resp.stream is not None:
                try:
                    first = await _first_chunk(resp.stream, ep.timeouts.first_byte)
                except (UpstreamUnavailable, TimeoutError) as exc:
                    self.health.failure(ep.id, at_once=_hung(ep, exc))
                    errors.append(f"{ep.channel_name}: stream failed before its first byte: {exc}")
                    reasons.append("the stream failed before its first byte")
                    if resp.close is not None:
                        await resp.close()
                    continue
            self.health.success(ep.id)  # it answered (a 4xx here is the request's fault)
            return Outcome(resp, ep, attempts, first, errors)
        if last is not None and last_ep is not None:
            # Every endpoint answered with 429/5xx: pass the last answer on, as the upstream said it.
            return Outcome(last, last_ep, attempts, None, errors)
        detail = "; ".join(errors) or "no endpoint answered"
        log.warning("every endpoint serving %r failed: %s", request.model, detail)
        exc_cls = UpstreamTimeout if timed_out else UpstreamFailed
        failure = exc_cls(
            f"every endpoint serving '{request.model}' failed ({attempts} tried: "
            f"{'; '.join(reasons) or 'none answered'}). Retry later; if it persists, an "
            "administrator finds the details under this request's id (X-Request-ID) in the "
            "usage log."
        )
        failure.detail = detail
        raise failure


def _hung(ep: Endpoint, exc: Exception) -> bool:
    """A local worker that missed its model's first-byte timeout is hung (SIGSTOP, a wedged
    engine): its circuit opens at once, so no other caller waits for it while the supervisor
    restarts it. A remote channel may just be slow for one request: it keeps the threshold."""
    return ep.kind == "local" and isinstance(exc, UpstreamTimedOut | TimeoutError)


async def _first_chunk(stream: AsyncIterator[bytes], limit_s: float) -> bytes:
    async with asyncio.timeout(limit_s):
        async for chunk in stream:
            if chunk:
                return chunk
    raise UpstreamUnavailable("stream ended before sending anything")


def _unknown_model_message(model: str, allowed: set[str]) -> str:
    if not allowed:
        return (
            f"model '{model}' does not exist, and this token can use no model yet: add a channel "
            "or launch a local model"
        )
    import difflib

    close = difflib.get_close_matches(model, sorted(allowed), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listed = ", ".join(sorted(allowed)[:50])
    more = f" (and {len(allowed) - 50} more)" if len(allowed) > 50 else ""
    return f"model '{model}' does not exist.{hint} Models this token can use: {listed}{more}"


async def close_quietly(resp: UpstreamResponse) -> None:
    if resp.close is not None:
        with contextlib.suppress(OSError):
            await resp.close()
