"""Prices as admins see and edit them, shared by the admin API and the UI.

Edits are rows of the ModelPrice table; the caller then runs the change bus's `prices_changed()`,
which reloads this process's price book and announces "prices" on the change bus so every replica
reloads too. Deleting an admin price falls back to the config file's, then litellm's default.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.billing.prices import Price, PriceBook, default_price
from gateway.db.tables import ModelPrice
from gateway.relay.bounds import ModelName
from gateway.routing import RouteTable

MAX_USD_PER_MILLION = 1_000_000.0  # far above any real model; keeps quota arithmetic finite
Usd = Annotated[float, Field(ge=0, le=MAX_USD_PER_MILLION, allow_inf_nan=False)]


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: Annotated[ModelName, Field(max_length=200)]
    input: Usd = 0.0  # USD per 1M prompt tokens
    output: Usd = 0.0  # USD per 1M completion tokens


class PricePublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens
    source: str  # admin | config | litellm | free
    served: str  # remote | local | remote+local | "" (priced but not served now)
    litellm_key: str | None  # the litellm table row a default came from
    model_ratio: float  # One API: 1 = 0.002 USD / 1K prompt tokens
    completion_ratio: float  # One API: output price / input price


def model_ratio(price: Price) -> float:
    """One API's ModelRatio: 1 means 0.002 USD per 1K tokens, i.e. 2 USD per 1M
    (songquanpeng/one-api relay/billing/ratio/model.go, "1 === $0.002 / 1K tokens")."""
    return price.input / 2


def completion_ratio(price: Price) -> float:
    """One API's CompletionRatio. A price with no input part has no ratio: 1, One API's own
    fallback, and such a price is never rewritten unless the admin changes its value."""
    if price.input <= 0:
        return 1.0
    return float(f"{price.output / price.input:.12g}")


def _public(model: str, price: Price, served: str, upstream: set[str]) -> PricePublic:
    default = default_price(model, upstream) if price.source == "litellm" else None
    return PricePublic(
        model=model,
        input=price.input,
        output=price.output,
        source=price.source or "free",
        served=served,
        litellm_key=default[0] if default else None,
        model_ratio=model_ratio(price),
        completion_ratio=completion_ratio(price),
    )


def price_list(book: PriceBook, routes: RouteTable, keyword: str = "") -> list[PricePublic]:
    """Every model that is served or priced, with the price it is billed at now."""
    remote, local = routes.remote_models(), routes.local_uids()
    models = sorted(set(remote) | local | set(book.all()))
    rows = []
    for model in models:
        if keyword and keyword.lower() not in model.lower():
            continue
        served = "+".join(n for n, s in (("remote", remote), ("local", local)) if model in s)
        rows.append(_public(model, book.get(model), served, remote.get(model, set())))
    return rows


async def _put(session: AsyncSession, data: PriceIn) -> None:
    row = await session.get(ModelPrice, data.model)
    if row is None:
        row = ModelPrice(model=data.model)
    row.input, row.output = data.input, data.output
    session.add(row)


async def _drop(session: AsyncSession, model: str) -> bool:
    row = await session.get(ModelPrice, model)
    if row is None:
        return False
    await session.delete(row)
    return True


async def save_price(session: AsyncSession, data: PriceIn) -> None:
    await _put(session, data)
    await session.commit()


async def delete_price(session: AsyncSession, model: str) -> bool:
    """False when the model has no admin price (a config or default price cannot be deleted)."""
    found = await _drop(session, model)
    await session.commit()
    return found


# --- One API's ratio options ----------------------------------------------------------------
def ratio_maps(book: PriceBook, routes: RouteTable) -> tuple[dict[str, float], dict[str, float]]:
    rows = price_list(book, routes)
    return (
        {r.model: r.model_ratio for r in rows},
        {r.model: r.completion_ratio for r in rows},
    )


def _ratios(mapping: object, option: str) -> dict[str, float]:
    """One API stores a ratio map as a JSON object of numbers; anything else is refused whole."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{option} must be a JSON object of model name -> number")
    out: dict[str, float] = {}
    for model, value in mapping.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{option}[{model!r}] must be a number, got {value!r}")
        if not math.isfinite(value) or not 0 <= value <= MAX_USD_PER_MILLION / 2:
            raise ValueError(
                f"{option}[{model!r}] must be between 0 and {MAX_USD_PER_MILLION / 2:g}"
            )
        PriceIn(model=model)  # the same name rules as a price set directly
        out[model] = float(value)
    return out


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


async def apply_model_ratio(session: AsyncSession, book: PriceBook, mapping: object) -> list[str]:
    """One API's `PUT /api/option/ {key: "ModelRatio"}`: the map replaces the admin's prices.

    A model whose ratio is what it is billed at now is left alone (a GET sent back unchanged
    pins no default); a changed ratio keeps the model's completion ratio; an admin price missing
    from the map is deleted, as One API replaces the whole map (its default then applies).
    Returns notes for the admin (config prices that a missing entry cannot remove)."""
    ratios = _ratios(mapping, "ModelRatio")
    notes = []
    for model, ratio in ratios.items():
        current = book.get(model)
        if _same(model_ratio(current), ratio):
            continue
        usd_in = 2 * ratio
        await _put(
            session, PriceIn(model=model, input=usd_in, output=usd_in * completion_ratio(current))
        )
    for model, price in book.all().items():
        if model in ratios:
            continue
        if price.source == "admin":
            await _drop(session, model)
        elif price.source == "config":
            notes.append(f"{model} keeps its price from the config file")
    await session.commit()
    return notes


async def apply_completion_ratio(
    session: AsyncSession, book: PriceBook, mapping: object
) -> list[str]:
    """One API's `PUT /api/option/ {key: "CompletionRatio"}`: the output price becomes the input
    price times the ratio for every model whose ratio changed; models missing from the map keep
    their prices (One API would fall back to its built-in ratio; ours is the price itself)."""
    ratios = _ratios(mapping, "CompletionRatio")
    notes = []
    for model, ratio in ratios.items():
        current = book.get(model)
        if _same(completion_ratio(current), ratio):
            continue
        if current.input <= 0:
            notes.append(f"{model} has no input price, so no completion ratio: set ModelRatio")
            continue
        await _put(session, PriceIn(model=model, input=current.input, output=current.input * ratio))
    await session.commit()
    return notes
