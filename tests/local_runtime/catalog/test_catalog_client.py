"""A catalog entry beyond the starters, launched with the official `xinference-client` by the
exact arguments an Xinference user types, served by the real llama.cpp engine.

No hub is reachable here, so the Hugging Face cache stands in for "downloaded earlier by another
tool": the GGUF file Xinference's catalog names for `qwen2.5-instruct -s 0_5 -f ggufv2 -q q4_k_m`
(Qwen/Qwen2.5-0.5B-Instruct-GGUF, qwen2.5-0.5b-instruct-q4_k_m.gguf, xinference/model/llm/
llm_family.json at xorbitsai/inference@7ecec16b6338) is a link to the SmolLM2 starter weights,
laid out as huggingface_hub does (refs/main -> snapshots/<commit>/).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
from xinference_client import RESTfulClient

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = [
    pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING),
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None,
        reason="xllamacpp is not installed: pip install 'modelport[llama-cpp]'",
    ),
]


def test_xinference_client_launches_a_catalog_entry_offline(
    make_gateway: Callable[..., Gateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = smollm2_gguf()
    assert gguf is not None
    repo = tmp_path / "hf-hub" / "models--Qwen--Qwen2.5-0.5B-Instruct-GGUF"
    snapshot = repo / "snapshots" / "9217f5db79a29953eb74d5343926648285ec7e67"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    (snapshot / "qwen2.5-0.5b-instruct-q4_k_m.gguf").symlink_to(gguf)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))  # the server runs in-process
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    gw = make_gateway(runtime_enabled=True)
    client = RESTfulClient(gw.url, api_key=ADMIN_TOKEN)
    uid = client.launch_model(  # xinference launch -n qwen2.5-instruct -s 0_5 -f ggufv2 -q q4_k_m
        model_name="qwen2.5-instruct",
        model_type="LLM",
        model_engine="llama.cpp",
        model_size_in_billions="0_5",
        model_format="ggufv2",
        quantization="q4_k_m",
    )
    assert uid == "qwen2.5-instruct"
    desc = client.describe_model(uid)
    assert (desc["model_format"], desc["quantization"], desc["model_size_in_billions"]) == (
        "ggufv2",
        "q4_k_m",
        0.5,
    )
    reply = client.get_model(uid).chat(
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        generate_config={"max_tokens": 16, "temperature": 0},
    )
    assert reply["choices"][0]["message"]["content"]
    instance = gw.app.state.services.runtime.instance(uid)
    assert instance["model_path"] == str(snapshot / "qwen2.5-0.5b-instruct-q4_k_m.gguf")
    client.terminate_model(uid)
