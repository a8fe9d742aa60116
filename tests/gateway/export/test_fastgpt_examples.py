"""The committed examples/fastgpt files are what generate.py makes, and FastGPT can read them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway.export.fastgpt_types import CONFIG_LIST_TYPES, SystemModelItem

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "fastgpt"


def test_committed_examples_are_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_example_files_hold_the_walkthrough_models():
    config = json.loads((EXAMPLES / "config.json").read_text(encoding="utf-8"))
    assert [e["model"] for e in config["llmModels"]] == ["qwen-chat"]
    assert [e["model"] for e in config["vectorModels"]] == ["bge-m3"]
    assert [e["model"] for e in config["reRankModels"]] == ["bge-reranker"]
    assert config["whisperModel"]["model"] == "whisper"
    for key, types in CONFIG_LIST_TYPES.items():
        for entry in config[key]:
            for cls in types:
                cls.model_validate(entry)
    items = json.loads((EXAMPLES / "model-config.json").read_text(encoding="utf-8"))
    assert [i["metadata"]["type"] for i in items] == ["llm", "embedding", "rerank", "stt"]
    for item in items:
        SystemModelItem.model_validate(item)
