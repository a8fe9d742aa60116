"""Xinference launch commands work unchanged: the seed documents' and those its catalog implies.

A command is taken as Xinference's client sends it: `xinference launch -n NAME -t TYPE -s SIZE
-f FORMAT -q QUANT` becomes the body of `POST /v1/models` (xinference/client/restful/
restful_client.py `launch_model`: model_name, model_type, model_size_in_billions, model_format,
quantization; sizes as strings such as "0_5", xinference/deploy/cmdline.py `--size-in-billions`
is `type=str`), read by modelport's Xinference API (`launch_spec_from_xinference`) and planned
without a download. Facts cited from xorbitsai/inference@7ecec16b6338.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local_runtime.catalog import BUILTIN_CATALOG_DIR, Catalog
from local_runtime.catalog.xinference import family_from_xinference
from local_runtime.launch_params import launch_spec_from_xinference
from local_runtime.resolve import LaunchPlan, launch_plan


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(BUILTIN_CATALOG_DIR)


def _plan(catalog: Catalog, home: Path, device: str = "cuda", **body: Any) -> LaunchPlan:
    sent = {"model_uid": None, "model_engine": None, "replica": 1, "n_gpu": "auto", **body}
    return launch_plan(launch_spec_from_xinference(sent), catalog, home=home, device=device)


# /work/shared/seeds/000_*.txt: `xinference launch -n qwen-chat -s 14 -f pytorch`;
# /work/shared/seeds/001_*.txt: `xinference launch -n chatglm3 -t LLM -f pytorch -q 4-bit`,
# `-n bge-large-zh -t embedding`, `-n whisper-large-v3 -t audio`, and an SDXL text-to-image model
# (Xinference's name for SDXL base is stable-diffusion-xl-base-1.0, image/model_spec.json).
SEED_COMMANDS = [
    (
        {"model_name": "qwen-chat", "model_size_in_billions": "14", "model_format": "pytorch"},
        ("llm", "vllm", "pytorch", 14.0, "none", "Qwen/Qwen-14B-Chat"),
    ),
    (
        {"model_name": "chatglm3", "model_type": "LLM", "model_format": "pytorch",
         "quantization": "4-bit"},
        ("llm", "vllm", "pytorch", 6.0, "4-bit", "THUDM/chatglm3-6b"),
    ),
    (
        {"model_name": "bge-large-zh", "model_type": "embedding"},
        ("embedding", "sentence_transformers", "pytorch", None, "none", "BAAI/bge-large-zh"),
    ),
    (
        {"model_name": "whisper-large-v3", "model_type": "audio"},
        ("audio", "faster_whisper", "ct2", None, "none", "Systran/faster-whisper-large-v3"),
    ),
    (
        {"model_name": "stable-diffusion-xl-base-1.0", "model_type": "image"},
        ("image", "diffusers", "diffusers", None, "none",
         "stabilityai/stable-diffusion-xl-base-1.0"),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), SEED_COMMANDS)
def test_seed_launch_commands_resolve_to_plans(
    catalog: Catalog, tmp_path: Path, body: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    plan = _plan(catalog, tmp_path, **body)
    got = plan.resolved
    assert (
        got.model_type,
        plan.engine,
        got.model_format,
        got.model_size_in_billions,
        got.quantization,
        plan.files.repo_id,
    ) == expected
    assert plan.files.origin == "planned"
    assert plan.memory.total > 0


def test_chatglm3_in_4_bit_downloads_full_weights_and_needs_a_quarter_of_the_memory(
    catalog: Catalog, tmp_path: Path
) -> None:
    """The seed's "4-bit ChatGLM3 in 6 GB": 4-bit quantizes while loading, so the plan downloads
    the bf16 weights (~12 GB) but packs the GPU by the 4-bit size."""
    plan = _plan(catalog, tmp_path, model_name="chatglm3", model_format="pytorch",
                 quantization="4-bit", device="cpu")  # fmt: skip
    assert plan.engine == "transformers"
    assert plan.download_bytes == 12_000_000_000
    assert plan.memory.weights == 3_000_000_000


# (xinference launch arguments) -> (engine, hub id, GGUF file), each as Xinference's
# model/llm/llm_family.json, model/embedding/model_spec.json and model/rerank/model_spec.json have it.
XINFERENCE_COMMANDS = [
    (("qwen3", "8", "pytorch", None), ("vllm", "Qwen/Qwen3-8B", None)),
    (("qwen3", "0_6", "ggufv2", "Q4_K_M"),
     ("llama.cpp", "unsloth/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q4_K_M.gguf")),
    (("Qwen3-Coder", "30", "ggufv2", "Q4_K_M"),
     ("llama.cpp", "unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF",
      "Qwen3-Coder-30B-A3B-Instruct-Q4_K_M.gguf")),
    (("qwen2.5-instruct", "7", "ggufv2", "q4_k_m"),
     ("llama.cpp", "Qwen/Qwen2.5-7B-Instruct-GGUF",
      "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf")),
    (("qwen2.5-coder-instruct", "7", "gptq", "Int4"),
     ("vllm", "Qwen/Qwen2.5-Coder-7B-Instruct-GPTQ-Int4", None)),
    (("qwen2.5-vl-instruct", "7", "pytorch", None), ("vllm", "Qwen/Qwen2.5-VL-7B-Instruct", None)),
    (("QwQ-32B", "32", "awq", "Int4"), ("vllm", "Qwen/QwQ-32B-AWQ", None)),
    (("glm4-chat", "9", "pytorch", None), ("vllm", "zai-org/glm-4-9b-chat-hf", None)),
    (("glm-4.5", "355", "pytorch", None), ("vllm", "zai-org/GLM-4.5", None)),
    (("GLM-4.6", "355", "awq", "Int4"), ("vllm", "QuantTrio/GLM-4.6-AWQ", None)),
    (("deepseek-v3", "671", "awq", "Int4"), ("vllm", "cognitivecomputations/DeepSeek-V3-AWQ", None)),
    (("deepseek-r1-distill-qwen", "1_5", "ggufv2", "Q4_K_M"),
     ("llama.cpp", "unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF",
      "DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf")),
    (("llama-3.1-instruct", "8", "awq", "Int4"),
     ("vllm", "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", None)),
    (("gemma-3-it", "4", "ggufv2", "Q4_K_M"),
     ("llama.cpp", "bartowski/google_gemma-3-4b-it-GGUF", "google_gemma-3-4b-it-Q4_K_M.gguf")),
    (("mixtral-instruct-v0.1", "46_7", "ggufv2", "Q4_K_M"),
     ("llama.cpp", "TheBloke/Mixtral-8x7B-Instruct-v0.1-GGUF",
      "mixtral-8x7b-instruct-v0.1.Q4_K_M.gguf")),
    (("internlm3-instruct", "8", "gptq", "Int4"),
     ("vllm", "internlm/internlm3-8b-instruct-gptq-int4", None)),
    (("Yi-1.5-chat", "9", "ggufv2", "Q4_K_M"),
     ("llama.cpp", "lmstudio-community/Yi-1.5-9B-Chat-GGUF", "Yi-1.5-9B-Chat-Q4_K_M.gguf")),
    (("minicpm4", "8", "pytorch", None), ("vllm", "JunHowie/MiniCPM4-8B", None)),
    (("mistral-nemo-instruct", "12", "pytorch", None),
     ("vllm", "mistralai/Mistral-Nemo-Instruct-2407", None)),
    (("bge-m3", None, None, None), ("sentence_transformers", "BAAI/bge-m3", None)),
    (("Qwen3-Embedding-0.6B", None, "pytorch", None),
     ("sentence_transformers", "Qwen/Qwen3-Embedding-0.6B", None)),
    (("bge-reranker-v2-m3", None, None, None), ("sentence_transformers", "BAAI/bge-reranker-v2-m3", None)),
]  # fmt: skip


@pytest.mark.parametrize(("args", "expected"), XINFERENCE_COMMANDS)
def test_xinference_launch_arguments_resolve_unchanged(
    catalog: Catalog,
    tmp_path: Path,
    args: tuple[str, str | None, str | None, str | None],
    expected: tuple[str, str, str | None],
) -> None:
    name, size, fmt, quant = args
    plan = _plan(
        catalog,
        tmp_path,
        model_name=name,
        model_size_in_billions=size,
        model_format=fmt,
        quantization=quant,
    )
    assert (plan.engine, plan.files.repo_id, (plan.files.files or (None,))[0]) == expected


def test_aliases_reach_their_family(catalog: Catalog) -> None:
    assert catalog.get("sdxl") is catalog.get("stable-diffusion-xl-base-1.0")
    assert catalog.get("llama-4") is catalog.get("llama-4-instruct")
    assert catalog.get("QWEN3-CODER") is catalog.get("Qwen3-Coder")


def test_v2_custom_model_with_ids_per_hub(tmp_path: Path) -> None:
    """A v2 body may carry `model_src` ids per hub (as built-in entries do) or one `model_id` on
    the hub `model_hub` names (xinference/model/llm/llm_family.py `PytorchLLMSpecV2`)."""
    family = family_from_xinference(
        {
            "model_name": "mine",
            "model_ability": ["chat", "tools", "hybrid"],
            "model_specs": [
                {"model_format": "pytorch", "model_size_in_billions": "1_5",
                 "model_src": {"huggingface": {"model_id": "me/m-hf", "quantizations": ["none"]},
                               "modelscope": {"model_id": "me/m-ms", "quantizations": ["none"]}}},
                {"model_format": "awq", "model_size_in_billions": 7, "quantization": "Int4",
                 "model_id": "me/m-awq", "model_hub": "modelscope"},
            ],
        },
        "LLM",
    )  # fmt: skip
    first, second = family["specs"]
    assert family["abilities"] == ["chat", "tools"]  # "hybrid" has no meaning here
    assert (first["huggingface"], first["modelscope"], first["size_in_billions"]) == (
        "me/m-hf",
        "me/m-ms",
        1.5,
    )
    assert (second["modelscope"], second["quantizations"]) == ("me/m-awq", ["Int4"])
    assert "huggingface" not in second
