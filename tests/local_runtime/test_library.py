"""The runtime is a library (issue 16): it launches and serves a model with no gateway at all.

Anchor: infinity's `AsyncEmbeddingEngine` works without its server, the server being a thin
layer over it (michaelfeil/infinity, libs/infinity_emb/infinity_emb/engine.py). Here the
supervisor runs in a fresh interpreter (tests/support/runtime_alone.py) with its own settings, an
in-memory launch store and a replicas callback, starts a real worker process (fake engine), and
the official `openai` client chats with the replica it reported; the process never imports
`gateway` or `admin_ui`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)
def test_the_runtime_serves_a_model_without_the_gateway(tmp_path: Path) -> None:
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.runtime_alone", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["gateway_modules"] == []
    assert "hello from a library" in result["reply"]  # the fake engine echoes the prompt
    assert result["wrong_key"] == "refused"  # the worker asks for the key the supervisor made
    assert result["stored"] == ["alone"] and result["stored_after_terminate"] == []
    assert result["model"] == {"model_type": "llm", "engine": "fake"}
    # routed once when ready, withdrawn by terminate (and nothing left for close)
    assert result["reports"] == [["alone", 1], ["alone", 0]]
