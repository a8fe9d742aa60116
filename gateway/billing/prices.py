"""Per-model prices in USD per 1M tokens, turned into One API quota units (500000 = 1 USD).

Prices come from the config file and the ModelPrice table (the table wins). A model without a
price costs nothing: local models are free unless priced, never billed by surprise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

QUOTA_PER_USD = 500_000


@dataclass(frozen=True, slots=True)
class Price:
    input: float = 0.0
    output: float = 0.0

    @property
    def free(self) -> bool:
        return self.input <= 0 and self.output <= 0

    def quota(self, prompt_tokens: int, completion_tokens: int) -> int:
        usd = (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000
        return math.ceil(usd * QUOTA_PER_USD - 1e-9) if usd > 0 else 0


FREE = Price()


class PriceBook:
    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self._prices = prices or {}

    def replace(self, prices: dict[str, Price]) -> None:
        self._prices = prices

    def get(self, model: str) -> Price:
        return self._prices.get(model, FREE)

    def all(self) -> dict[str, Price]:
        return dict(self._prices)
