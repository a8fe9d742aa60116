"""Fixtures shared by the engine tests: the tiny models are built once per session.

Tests that change a model folder copy it first (the built folders are shared, read-only by
convention).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_models import build_tiny_llama


@pytest.fixture(scope="session")
def llama_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-layer tiny Llama (tests/support/tiny_models.py) for transformers and vLLM."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
