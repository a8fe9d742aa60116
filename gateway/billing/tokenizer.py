"""Token counting with no network access (One API downloads tiktoken's files at boot and fails
offline). tiktoken's cl100k_base file ships inside litellm; we point tiktoken's cache at it. Without
it we fall back to a length heuristic (CJK characters count one each, other text ~4 chars/token).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _encoding() -> Any | None:
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
        if bundled.is_dir():
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base")
    except (ImportError, ValueError, OSError):
        return None


def _heuristic(text: str) -> int:
    cjk = sum(1 for ch in text if "\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
    return cjk + max(0, (len(text) - cjk + 3) // 4)


def count_text(text: str) -> int:
    if not text:
        return 0
    enc = _encoding()
    if enc is None:
        return _heuristic(text)
    return len(enc.encode(text, disallowed_special=()))


def text_of(value: Any) -> str:
    """Text inside an OpenAI content value (string, or list of parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(
            text_of(p.get("text", "")) if isinstance(p, dict) else text_of(p) for p in value
        )
    return ""


def count_messages(messages: list[Any]) -> int:
    """Chat prompt tokens, with OpenAI's ~4 tokens of framing per message."""
    total = 3
    for m in messages:
        if isinstance(m, dict):
            content, extra = m.get("content"), m.get("name") or ""
        else:
            content, extra = getattr(m, "content", None), getattr(m, "name", None) or ""
        total += 4 + count_text(text_of(content)) + count_text(extra)
    return total


def count_input(value: Any) -> int:
    """Embeddings/completions input: a string, a list of strings, or token arrays."""
    if isinstance(value, str):
        return count_text(value)
    if isinstance(value, list):
        if value and isinstance(value[0], int):
            return len(value)
        return sum(count_input(v) for v in value)
    return 0
