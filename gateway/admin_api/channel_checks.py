"""Channel tests (one, all) and provider balance queries behind One API's channel endpoints.

One API's `GET /api/channel/test` (controller/channel-test.go TestChannels) starts a background
round and answers at once; here the round runs a few channels at a time and the answer carries
every channel's result, so a script learns what failed without reading logs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from starlette.datastructures import State

from gateway.channel_routes import endpoint_for
from gateway.channel_test import guess_type, run_test
from gateway.db.crud import channels as crud
from gateway.db.models import split_csv
from gateway.db.tables import Channel, ChannelStatus

TEST_CONCURRENCY = 4


@dataclass(slots=True)
class ChannelCheck:
    id: int
    name: str
    success: bool
    message: str
    time: float = 0.0
    model: str = ""
    type: str = ""


async def test_channel(state: State, ch: Channel, model: str = "") -> ChannelCheck:
    """Test `model` (default: the channel's test_model or first model) with the API its type
    calls, and record the time and error on the channel as One API does."""
    config = orjson.loads(ch.config or "{}")
    models = split_csv(ch.models)
    model = model or config.get("test_model") or (models[0] if models else "")
    if not model:
        return ChannelCheck(
            ch.id or 0, ch.name, False, "the channel lists no models: add one, or pass ?model="
        )
    type_ = guess_type(model, orjson.loads(ch.model_types or "{}"))
    try:
        ep = endpoint_for(ch, state.box, state.settings)
    except ValueError as exc:  # a key that no longer decrypts
        return ChannelCheck(ch.id or 0, ch.name, False, str(exc), model=model, type=type_)
    result = await run_test(state.upstreams[ep.kind], ep, model, type_)
    async with state.sessions() as session:
        await crud.set_channel_fields(
            session,
            channel_id=ch.id or 0,
            test_time=int(time.time()),
            response_time=int(result.seconds * 1000),
            last_error=result.message[:500],
        )
    if result.success:
        state.health.success(ep.id)
    return ChannelCheck(
        ch.id or 0, ch.name, result.success, result.message, round(result.seconds, 3), model, type_
    )


async def test_channels(state: State, scope: str) -> list[ChannelCheck]:
    """Test every channel (`scope=disabled`: only disabled ones); an auto-disabled channel that
    passes is enabled again, as One API's monitor.ShouldEnableChannel does."""
    async with state.sessions() as session:
        rows = [c for c in await crud.all_channels(session) if not c.builtin]
    if scope == "disabled":
        rows = [c for c in rows if c.status != ChannelStatus.ENABLED]
    gate = asyncio.Semaphore(TEST_CONCURRENCY)

    async def one(ch: Channel) -> ChannelCheck:
        async with gate:
            return await test_channel(state, ch)

    checks = list(await asyncio.gather(*(one(c) for c in rows)))
    revived = [
        c.id
        for c, ch in zip(checks, rows, strict=True)
        if c.success and ch.status == ChannelStatus.AUTO_DISABLED
    ]
    async with state.sessions() as session:
        for channel_id in revived:
            await crud.set_channel_fields(
                session, channel_id=channel_id, status=ChannelStatus.ENABLED
            )
    if revived:
        await state.reload_routes()
    return checks


class BalanceUnsupported(Exception):
    """This channel type has no balance API that One API (or modelport) knows."""


async def _get_json(client: httpx.AsyncClient, url: str, key: str) -> dict[str, Any]:
    resp = await client.get(url, headers={"Authorization": f"Bearer {key}"})
    if resp.status_code != 200:  # the body stays out of the answer: it may not be ours to show
        raise ValueError(f"{url} answered HTTP {resp.status_code}")
    body = resp.json()
    if not isinstance(body, dict):
        raise ValueError(f"{url} answered {type(body).__name__}, not a JSON object")
    return body


async def _openai_balance(client: httpx.AsyncClient, base: str, key: str) -> float:
    """OpenAI's legacy billing API: hard limit minus this month's usage (in cents), or the last
    100 days without a payment method (controller/channel-billing.go updateChannelBalance)."""
    sub = await _get_json(client, f"{base}/dashboard/billing/subscription", key)
    now = datetime.now(UTC)
    start = now.strftime("%Y-%m-01")
    if not sub.get("has_payment_method"):
        start = (now - timedelta(days=100)).strftime("%Y-%m-%d")
    usage = await _get_json(
        client,
        f"{base}/dashboard/billing/usage?start_date={start}&end_date={now:%Y-%m-%d}",
        key,
    )
    return float(sub.get("hard_limit_usd") or 0) - float(usage.get("total_usage") or 0) / 100


async def _deepseek_balance(client: httpx.AsyncClient, base: str, key: str) -> float:
    body = await _get_json(client, f"{base.removesuffix('/v1')}/user/balance", key)
    for info in body.get("balance_infos") or []:
        if info.get("currency") == "CNY":
            return float(info.get("total_balance") or 0)
    raise ValueError("DeepSeek's answer has no CNY balance")


async def _siliconflow_balance(client: httpx.AsyncClient, base: str, key: str) -> float:
    body = await _get_json(client, f"{base}/user/info", key)
    if body.get("code") != 20000:
        raise ValueError(f"SiliconFlow answered code {body.get('code')}: {body.get('message')}")
    return float(body["data"]["totalBalance"])


async def _openrouter_balance(client: httpx.AsyncClient, base: str, key: str) -> float:
    data = (await _get_json(client, f"{base}/credits", key)).get("data") or {}
    return float(data.get("total_credits") or 0) - float(data.get("total_usage") or 0)


# One API's types with a balance API (OpenAI and Custom share OpenAI's billing endpoints).
BALANCE_READERS = {
    1: _openai_balance,
    8: _openai_balance,
    20: _openrouter_balance,
    36: _deepseek_balance,
    44: _siliconflow_balance,
}


async def update_balance(state: State, ch: Channel) -> float:
    """Ask the provider for the channel's balance (USD; CNY for DeepSeek, as One API) and store
    it. Redirects are never followed: the key goes only to the channel's own base URL."""
    reader = BALANCE_READERS.get(ch.type)
    if reader is None:
        raise BalanceUnsupported(
            f"channel type {ch.type} has no balance API; types with one: "
            + ", ".join(str(t) for t in BALANCE_READERS)
        )
    key = state.box.decrypt(ch.key_enc)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(20.0, connect=5.0), follow_redirects=False, trust_env=False
    ) as client:
        try:
            balance = await reader(client, ch.base_url.rstrip("/"), key)
        except (KeyError, TypeError, AttributeError) as exc:  # the provider's answer, not ours
            raise ValueError(f"the provider's answer has an unexpected shape ({exc!r})") from exc
    async with state.sessions() as session:
        await crud.set_channel_fields(session, channel_id=ch.id or 0, balance=balance)
    return balance
