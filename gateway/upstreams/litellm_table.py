"""litellm's bundled model table, read offline: what a remote model is (its `mode`) and what it
costs (USD per token), so channel models get a kind and a default price with no admin input.

litellm ships `model_prices_and_context_window_backup.json` inside its package and reads it itself
when `LITELLM_LOCAL_MODEL_COST_MAP=True`; we read that same file directly, which is offline by
construction and never imports litellm (a multi-second import) on the request path. The file is
parsed once per process into a compact index; `lookup` is memoised, so a request costs a dict hit.
Without litellm installed (it is the optional `providers` extra) every lookup answers None.

Names are matched the way people write them in channels: exactly, then case-insensitively, then
without a provider prefix (`openai/gpt-4o` -> `gpt-4o`), then (unless `loose=False`) by the last
path segment of the table's own provider-prefixed keys (`bge-reranker-v2-m3` ->
`novita/baai/bge-reranker-v2-m3`, the first such key in file order). `Entry.key` says which
table row answered.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TABLE_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the table, reduced to what modelport uses. Costs are USD per token (litellm's
    unit); None where the row gives none (per-second or per-character priced models)."""

    key: str
    provider: str | None
    mode: str | None
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    max_input_tokens: int | None
    max_output_tokens: int | None


def table_path() -> Path | None:
    """Where the installed litellm keeps its table, found without importing litellm."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / TABLE_FILE
        if path.is_file():
            return path
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value)


def _entry(key: str, row: dict[str, Any]) -> Entry:
    mode = row.get("mode")
    provider = row.get("litellm_provider")
    return Entry(
        key=key,
        provider=provider if isinstance(provider, str) else None,
        mode=mode if isinstance(mode, str) else None,
        input_cost_per_token=_number(row.get("input_cost_per_token")),
        output_cost_per_token=_number(row.get("output_cost_per_token")),
        max_input_tokens=_count(row.get("max_input_tokens") or row.get("max_tokens")),
        max_output_tokens=_count(row.get("max_output_tokens")),
    )


@dataclass(frozen=True, slots=True)
class _Index:
    exact: dict[str, Entry]
    folded: dict[str, Entry]  # lower-cased key
    tail: dict[str, Entry]  # lower-cased last segment of a provider-prefixed key


def _build(raw: dict[str, Any]) -> _Index:
    exact: dict[str, Entry] = {}
    folded: dict[str, Entry] = {}
    tail: dict[str, Entry] = {}
    for key, row in raw.items():
        if key == "sample_spec" or not isinstance(row, dict):
            continue
        entry = _entry(key, row)
        exact[key] = entry
        folded.setdefault(key.lower(), entry)
        if "/" in key:
            tail.setdefault(key.rsplit("/", 1)[1].lower(), entry)
    return _Index(exact, folded, tail)


@functools.cache
def _index() -> _Index:
    path = table_path()
    if path is None:
        return _Index({}, {}, {})
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("litellm model table %s unreadable (%s); no default prices or kinds", path, exc)
        return _Index({}, {}, {})
    return _build(raw if isinstance(raw, dict) else {})


@functools.lru_cache(maxsize=8192)
def lookup(model: str, *, loose: bool = True) -> Entry | None:
    """The table row for `model`, or None when litellm does not know it.

    `loose=False` skips the last-segment match: good enough to tell what kind of model a name
    is, but it finds some hosting provider's row (`deepinfra/Qwen/...`), not a price the
    admin's own upstream charges, so default prices use direct matches only."""
    index = _index()
    name = model.strip()
    if not name:
        return None
    found = index.exact.get(name) or index.folded.get(name.lower())
    if found is not None:
        return found
    rest = name
    while "/" in rest:
        rest = rest.split("/", 1)[1]
        found = index.exact.get(rest) or index.folded.get(rest.lower())
        if found is not None:
            return found
    return index.tail.get(name.rsplit("/", 1)[-1].lower()) if loose else None


def warm() -> int:
    """Parse the table now (at startup) rather than on the first request; the row count."""
    return len(_index().exact)
