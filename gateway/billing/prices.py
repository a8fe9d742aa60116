"""Per-model prices in USD per 1M tokens, turned into One API quota units (500000 = 1 USD).

Where a price comes from, first match wins:
1. the ModelPrice table (set in the admin API or UI, or through One API's ModelRatio option);
2. the config file's `prices:`;
3. for a model some remote channel serves: litellm's bundled cost table (`default_price`), looked
   up by the name clients ask for, else by the name the channel sends upstream;
4. nothing: free. Local models are free unless priced, never billed by surprise.

The hot path asks `PriceBook.get(model)` once to reserve and once to settle. Both are dict hits:
explicit prices are swapped in whole when they change (and on every replica through the change
bus), and the defaults are rebuilt only when the route table's generation moves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from gateway.upstreams import litellm_table

QUOTA_PER_USD = 500_000
MAX_QUOTA = 1 << 60


@dataclass(frozen=True, slots=True)
class Price:
    input: float = 0.0
    output: float = 0.0
    # "admin" | "config" | "litellm" | "" (free): shown to admins, not part of the price
    source: str = field(default="", compare=False)

    @property
    def free(self) -> bool:
        return self.input <= 0 and self.output <= 0

    def quota(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Capped at MAX_QUOTA: whatever the counts and prices, the amount fits the 64-bit quota
        columns with room to add (a larger reservation simply finds too little quota)."""
        usd = (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000
        if not usd > 0:
            return 0
        return min(math.ceil(min(usd * QUOTA_PER_USD, MAX_QUOTA) - 1e-9), MAX_QUOTA)


FREE = Price()


def per_million(usd_per_token: float | None) -> float:
    """litellm's USD per token as USD per 1M tokens, without float noise (2.5e-06 -> 2.5)."""
    if not usd_per_token:
        return 0.0
    return float(Decimal(repr(usd_per_token)) * 1_000_000)


def default_price(model: str, upstream: Iterable[str] = ()) -> tuple[str, Price] | None:
    """litellm's row key and price for a served model: by the name clients ask for, else by a
    name its channels send upstream. None when no such row has a per-token price (unknown
    models, those priced per second, character or image, and rows priced 0 such as
    `ollama/llama3`: free either way, and "litellm" would wrongly name a source)."""
    for name in (model, *sorted(set(upstream) - {model})):
        entry = litellm_table.lookup(name, loose=False)
        if entry is None:
            continue
        price = Price(
            per_million(entry.input_cost_per_token),
            per_million(entry.output_cost_per_token),
            source="litellm",
        )
        if not price.free:
            return entry.key, price
    return None


class RemoteModels(Protocol):
    """What the price book needs of the route table (gateway.routing.RouteTable)."""

    @property
    def generation(self) -> int: ...

    def remote_models(self) -> dict[str, set[str]]: ...


class PriceBook:
    def __init__(
        self, prices: dict[str, Price] | None = None, *, routes: RemoteModels | None = None
    ) -> None:
        self._prices = prices or {}
        self._routes = routes
        self._defaults: dict[str, Price] = {}
        self._generation = -1

    def replace(self, prices: dict[str, Price]) -> None:
        self._prices = prices
        litellm_table.warm()  # at startup and on admin edits, never on a request

    def get(self, model: str) -> Price:
        price = self._prices.get(model)
        if price is not None:
            return price
        return self.defaults().get(model, FREE)

    def all(self) -> dict[str, Price]:
        """The explicit prices (admin and config)."""
        return dict(self._prices)

    def defaults(self) -> dict[str, Price]:
        """litellm's prices for every model a remote channel serves now."""
        routes = self._routes
        if routes is None:
            return {}
        if routes.generation != self._generation:
            generation = routes.generation
            self._defaults = _defaults_for(routes.remote_models())
            self._generation = generation
        return self._defaults


def _defaults_for(remote: dict[str, set[str]]) -> dict[str, Price]:
    found: dict[str, Price] = {}
    for model, upstream in remote.items():
        if (row := default_price(model, upstream)) is not None:
            found[model] = row[1]
    return found
