"""`modelport catalog` (grouped, marked ready or with its download) and `catalog import-xinference`,
in a subprocess against a real gateway, as users run them (MODELPORT_URL, MODELPORT_ADMIN_TOKEN).

The Xinference home is laid out as Xinference writes it: `<XINFERENCE_HOME>/model/v2/<type>/<name>.json`
for current releases (xinference/model/cache_manager.py `register_custom_model`, at
xorbitsai/inference@7ecec16b6338) and `<XINFERENCE_HOME>/model/<type>/<name>.json` for v1 files
(xinference/model/custom.py `migrate_from_v1_to_v2`); bodies follow `CustomLLMFamilyV2` and
`PytorchLLMSpecV2`/`LlamaCppLLMSpecV2` (xinference/model/llm/llm_family.py: one `quantization`,
`model_uri`, `model_file_name_template`) and the v1 `quantizations` list.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def served(make_gateway: Callable[..., Gateway], tmp_path: Path) -> tuple[Gateway, Path]:
    home = tmp_path / "home"
    return make_gateway(runtime_enabled=True, home=home), home


@pytest.fixture
def modelport(served: tuple[Gateway, Path]) -> Run:
    gw, _ = served
    env = {**os.environ, "MODELPORT_URL": gw.url, "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN}
    env.pop("XINFERENCE_HOME", None)

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", "from gateway.cli import main; main()", *args]
        return subprocess.run(
            cmd, env={**env, **extra_env}, capture_output=True, text=True, timeout=300
        )

    return run


def _groups(text: str) -> dict[str, dict[str, str]]:
    """`<type>: N families` headings, each followed by a table: {type: {name: its line}}."""
    groups: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if ": " in line and line.split(":")[0] in ("llm", "embedding", "rerank", "audio", "image"):
            current = groups.setdefault(line.split(":")[0], {})
        elif line.strip() and not line.startswith("name "):
            current[line.split()[0]] = line
    return groups


def test_search_qwen3_lists_families_grouped_and_marked(
    modelport: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELPORT_OFFLINE"):
        monkeypatch.delenv(var, raising=False)  # the server runs in this process
    out = modelport("catalog", "--search", "qwen3")
    assert out.returncode == 0, out.stderr
    groups = _groups(out.stdout)
    assert list(groups) == ["llm", "embedding", "rerank"]
    assert {"qwen3", "Qwen3-Coder", "Qwen3-Instruct", "Qwen3-Thinking"} <= set(groups["llm"])
    assert {"Qwen3-Embedding-0.6B", "Qwen3-Embedding-8B"} <= set(groups["embedding"])
    assert {"Qwen3-Reranker-0.6B"} <= set(groups["rerank"])
    qwen3 = groups["llm"]["qwen3"].split()
    assert qwen3[1].split(",") >= ["pytorch"] and "gguf" in qwen3[1] and "mlx" in qwen3[1]
    assert qwen3[2] == "0.6-235B"
    # nothing of qwen3 is here: the default launch (pytorch 0.6B, bf16) needs ~1.2 GB
    assert groups["llm"]["qwen3"].endswith("download ~1.2 GB")


def test_offline_marks_what_launches_now(
    modelport: Run, served: tuple[Gateway, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starter packages and the model cache launch offline; the rest say they cannot."""
    _, home = served
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server runs in this process
    cached = home / "models" / "bge-m3" / "pytorch"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    out = modelport("catalog", "--ready")
    assert out.returncode == 0, out.stderr
    groups = _groups(out.stdout)
    assert groups["llm"]["smollm2-135m-instruct"].endswith("ready: gguf 0.135B Q4_1 (pypi)")
    assert groups["embedding"]["bge-m3"].endswith("ready: pytorch (cache)")
    assert "qwen3" not in groups["llm"]
    every = _groups(modelport("catalog", "--type", "llm").stdout)
    assert every["llm"]["qwen3"].endswith("download ~1.2 GB, not possible offline")
    rows = json.loads(modelport("catalog", "--search", "qwen3", "--json").stdout)
    qwen3 = next(row for row in rows if row["name"] == "qwen3")
    assert (qwen3["launchable"], qwen3["ready"]) == (False, [])
    assert qwen3["download_bytes"] == 1_200_000_000


def _write(path: Path, body: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def test_import_xinference_registers_custom_models(modelport: Run, tmp_path: Path) -> None:
    gguf = smollm2_gguf()
    assert gguf is not None
    xhome = tmp_path / "xinference"
    _write(
        xhome / "model" / "v2" / "llm" / "my-smol.json",
        {
            "version": 2,
            "model_name": "my-smol",
            "model_lang": ["en"],
            "model_ability": ["chat"],
            "context_length": 2048,
            "model_family": "qwen2.5-instruct",
            "model_specs": [
                {
                    "model_format": "ggufv2",
                    "model_size_in_billions": "0_135",
                    "quantization": "Q4_1",
                    "model_uri": f"file://{gguf.parent}",
                    "model_file_name_template": "SmolLM2-135M-Instruct.{quantization}.gguf",
                    "model_hub": "huggingface",
                }
            ],
        },
    )
    _write(
        xhome / "model" / "embedding" / "my-emb.json",  # a v1 file
        {
            "model_name": "my-emb",
            "dimensions": 384,
            "max_tokens": 256,
            "language": ["en"],
            "model_id": "sentence-transformers/all-MiniLM-L6-v2",
        },
    )
    _write(  # a name modelport has built in
        xhome / "model" / "v2" / "llm" / "qwen3.json",
        {"model_name": "qwen3", "model_specs": [{"model_format": "pytorch", "model_id": "me/q"}]},
    )
    (xhome / "model" / "v2" / "rerank").mkdir(parents=True)
    (xhome / "model" / "v2" / "rerank" / "garbage.json").write_text("{not json")

    dry = modelport("catalog", "import-xinference", "--dry-run", XINFERENCE_HOME=str(xhome))
    assert "would import llm my-smol" in dry.stdout
    assert json.loads(modelport("catalog", "--search", "my-", "--json").stdout) == []

    out = modelport("catalog", "import-xinference", "--xinference-home", str(xhome))
    assert out.returncode == 1  # two files could not be imported, and it says which and why
    assert "imported llm my-smol" in out.stdout
    assert "imported embedding my-emb" in out.stdout
    assert "skipped llm qwen3" in out.stdout and "is a built-in model" in out.stdout
    assert "skipped rerank garbage" in out.stdout and "unreadable JSON" in out.stdout
    assert "2 of 4 custom models imported" in out.stderr

    rows = {r["name"]: r for r in json.loads(modelport("catalog", "--json").stdout)}
    smol = rows["my-smol"]
    assert smol["custom"] and smol["launchable"]
    assert smol["specs"][0]["model_path"] == str(gguf)
    assert (smol["context_length"], smol["model_family"]) == (2048, "qwen2.5-instruct")
    emb = rows["my-emb"]
    assert (emb["type"], emb["dimensions"], emb["specs"][0]["huggingface"]) == (
        "embedding",
        384,
        "sentence-transformers/all-MiniLM-L6-v2",
    )
    listed = _groups(modelport("catalog", "--search", "my-").stdout)
    assert "my-smol" in listed["llm"] and "(custom)" in listed["llm"]["my-smol"]


def test_import_xinference_without_custom_models(modelport: Run, tmp_path: Path) -> None:
    out = modelport("catalog", "import-xinference", "--xinference-home", str(tmp_path / "none"))
    assert out.returncode == 0
    assert f"no custom models under {tmp_path / 'none' / 'model'}" in out.stderr


def test_import_xinference_says_why_the_server_refused(modelport: Run, tmp_path: Path) -> None:
    """A refusal in the gateway's OpenAI error shape (here: a wrong admin token) keeps its words."""
    xhome = tmp_path / "xinference"
    _write(
        xhome / "model" / "embedding" / "my-emb.json",
        {"model_name": "my-emb", "dimensions": 384, "max_tokens": 256, "model_id": "a/b"},
    )
    out = modelport(
        "catalog", "import-xinference", "--xinference-home", str(xhome), MODELPORT_ADMIN_TOKEN="no"
    )
    assert out.returncode == 1
    assert "skipped embedding my-emb" in out.stdout
    assert "admin access needs the admin token" in out.stdout
