"""Provider balance APIs behind One API's `GET /api/channel/update_balance` (One API's
controller/channel-billing.go): one reader per channel type that has such an API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


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


async def read_balance(type_: int, base_url: str, key: str) -> float:
    """The balance (USD; CNY for DeepSeek, as One API). Redirects are never followed: the key
    goes only to the channel's own base URL."""
    reader = BALANCE_READERS.get(type_)
    if reader is None:
        raise BalanceUnsupported(
            f"channel type {type_} has no balance API; types with one: "
            + ", ".join(str(t) for t in BALANCE_READERS)
        )
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(20.0, connect=5.0), follow_redirects=False, trust_env=False
    ) as client:
        try:
            return await reader(client, base_url.rstrip("/"), key)
        except (KeyError, TypeError, AttributeError) as exc:  # the provider's answer, not ours
            raise ValueError(f"the provider's answer has an unexpected shape ({exc!r})") from exc
