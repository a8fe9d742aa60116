"""litellm's bundled model table, read from the installed package's own JSON file
(BerriAI/litellm `model_prices_and_context_window_backup.json`, the file litellm itself loads when
`LITELLM_LOCAL_MODEL_COST_MAP=True`, litellm/litellm_core_utils/get_model_cost_map.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from gateway.upstreams import litellm_table
from gateway.upstreams.litellm_table import lookup


def test_known_models_have_mode_and_per_token_costs() -> None:
    raw = json.loads(litellm_table.table_path().read_text())  # type: ignore[union-attr]
    gpt = lookup("gpt-4o")
    assert gpt is not None and gpt.mode == "chat" and gpt.key == "gpt-4o"
    assert gpt.input_cost_per_token == raw["gpt-4o"]["input_cost_per_token"]
    assert gpt.output_cost_per_token == raw["gpt-4o"]["output_cost_per_token"]
    assert gpt.max_input_tokens == raw["gpt-4o"]["max_input_tokens"]
    assert lookup("text-embedding-3-small").mode == "embedding"  # type: ignore[union-attr]
    assert lookup("whisper-1").mode == "audio_transcription"  # type: ignore[union-attr]
    assert lookup("tts-1").mode == "audio_speech"  # type: ignore[union-attr]


def test_names_as_channels_write_them() -> None:
    assert lookup("GPT-4o").key == "gpt-4o"  # type: ignore[union-attr]
    assert lookup("openai/gpt-4o").key == "gpt-4o"  # type: ignore[union-attr]
    rerank = lookup("bge-reranker-v2-m3")
    assert (
        rerank is not None
        and rerank.mode == "rerank"
        and rerank.key.endswith("/bge-reranker-v2-m3")
    )
    # a last-segment match names some hosting provider's row: kinds use it, prices do not
    assert lookup("bge-reranker-v2-m3", loose=False) is None
    assert lookup("openai/gpt-4o", loose=False).key == "gpt-4o"  # type: ignore[union-attr]
    assert lookup("my-local-finetune-7b") is None
    assert lookup("  ") is None
    assert lookup("sample_spec") is None


def test_lookup_never_imports_litellm() -> None:
    """litellm's import takes seconds; the table must not pay it on the request path."""
    code = (
        "import sys\n"
        "from gateway.upstreams.litellm_table import lookup\n"
        "assert lookup('gpt-4o') is not None\n"
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_table_means_no_entries(monkeypatch) -> None:
    """Without the providers extra there is no table: every lookup answers None, nothing raises."""
    monkeypatch.setattr(litellm_table, "table_path", lambda: None)
    litellm_table._index.cache_clear()
    litellm_table.lookup.cache_clear()
    try:
        assert lookup("gpt-4o") is None
    finally:
        monkeypatch.undo()
        litellm_table._index.cache_clear()
        litellm_table.lookup.cache_clear()
    assert lookup("gpt-4o") is not None
