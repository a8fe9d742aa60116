"""Per-model prices in USD per 1M tokens, turned into One API quota units (500000 = 1 USD).

Prices come from the config file and the ModelPrice table (the table wins). A model without a
price costs nothing: local models are free unless priced, never billed by surprise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

QUOTA_PER_USD = 500_000
MAX_QUOTA = 1 << 60


@dataclass(frozen=True, slots=True)
class Price:
    input: float = 0.0
    output: float = 0.0

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


class PriceBook:
    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self._prices = prices or {}

    def replace(self, prices: dict[str, Price]) -> None:
        self._prices = prices

    def get(self, model: str) -> Price:
        return self._prices.get(model, FREE)

    def all(self) -> dict[str, Price]:
        return dict(self._prices)
