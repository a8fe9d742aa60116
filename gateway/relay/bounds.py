"""Bounds for every number the gateway reads from a request or an upstream's usage report.

A number the gateway computes with (the quota reservation multiplies max_tokens by n) must not
overflow the 64-bit columns it ends up in: `max_tokens=1e19` on a limited token was a 500
(OverflowError) and a reset connection. pydantic turns these bounds into a 400 that names the
field. The limits are far above any real model (the largest context windows are ~10M tokens).

Names that end up in usage rows (the requested model, token and channel names) carry no control
characters: PostgreSQL refuses a NUL in text, and one such row used to stop a replica's usage
recording. A model name is checked once per request, with one regex search.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

MAX_TOKENS = 1 << 24  # 16,777,216: max_tokens, max_completion_tokens
MAX_CHOICES = 128  # n, best_of
MAX_LOGPROBS = 20  # top_logprobs, logprobs (OpenAI allows 20 and 5)
MAX_DIMENSIONS = 1 << 16  # embeddings `dimensions`
MAX_TOP_N = 1 << 20  # rerank `top_n`
INT64 = (1 << 63) - 1
MAX_REPORTED_TOKENS = 1 << 40  # what an upstream's usage report may claim for one request

TokenLimit = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
Choices = Annotated[int, Field(ge=1, le=MAX_CHOICES)]
Logprobs = Annotated[int, Field(ge=0, le=MAX_LOGPROBS)]
Seed = Annotated[int, Field(ge=-INT64 - 1, le=INT64)]
Penalty = Annotated[float, Field(ge=-2, le=2)]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: str) -> str:
    if _CONTROL.search(value) is not None:
        raise ValueError("must not contain control characters (NUL, newline, tab, escape)")
    return value


Printable = Annotated[str, AfterValidator(printable)]
ModelName = Annotated[str, Field(min_length=1), AfterValidator(printable)]


def reported_tokens(value: Any) -> int | None:
    """An upstream's usage count, or None when it gave none: a hostile or broken upstream's
    string, negative or astronomical count never reaches arithmetic or a database column."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value:  # NaN
        return None
    return int(min(max(value, 0), MAX_REPORTED_TOKENS))
