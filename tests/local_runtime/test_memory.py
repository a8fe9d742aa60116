"""The GPU memory estimator against published model sizes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import pytest

from local_runtime import memory

GB = 1e9
QWEN25_7B = {
    "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
    "vocab_size": 152064, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "max_position_embeddings": 32768,
}  # fmt: skip
LLAMA3_8B = {
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 128256, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}  # fmt: skip


def test_parameter_counts_match_the_published_ones():
    assert memory.params_from_config(QWEN25_7B) == pytest.approx(7.62e9, rel=0.005)
    assert memory.params_from_config(LLAMA3_8B) == pytest.approx(8.03e9, rel=0.005)


def test_qwen25_7b_bf16_weights_from_config(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    est = memory.estimate(model_path=tmp_path, model_format="pytorch", context_length=32768)
    assert est.weights / GB == pytest.approx(15.2, abs=0.1)
    # 2 x 28 layers x 4 kv heads x 128 dims x 2 bytes = 56 KiB per token
    assert est.kv_cache == 57344 * 32768
    assert est.total > est.weights + est.kv_cache


def test_awq_config_is_about_a_quarter_of_bf16(tmp_path: Path):
    cfg = {**QWEN25_7B, "quantization_config": {"quant_method": "awq", "bits": 4}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    est = memory.estimate(model_path=tmp_path, model_format="awq")
    assert 3.9 * GB < est.weights < 4.5 * GB


def test_7b_q4_k_m_gguf_from_the_nominal_size():
    est = memory.estimate(model_format="gguf", size_in_billions=7.62, quantization="Q4_K_M")
    assert est.weights / GB == pytest.approx(4.7, abs=0.15)


def test_safetensors_header_is_summed_exactly(tmp_path: Path):
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "BF16", "shape": [1000, 64], "data_offsets": [0, 128000]},
        "b": {"dtype": "F32", "shape": [10], "data_offsets": [128000, 128040]},
    }
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))  # header wins over config
    est = memory.estimate(model_path=tmp_path, model_format="pytorch", context_length=1024)
    assert est.weights == 128040
    assert est.kv_cache == 57344 * 1024


def test_gguf_file_size_and_metadata(tmp_path: Path):
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(8192)
    w.add_block_count(32)
    w.add_embedding_length(4096)
    w.add_head_count(32)
    w.add_head_count_kv(8)
    import numpy as np

    w.add_tensor("t", np.zeros((256, 256), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    est = memory.estimate(model_path=path, model_format="gguf")
    assert est.weights == path.stat().st_size
    # Llama-3-8B shape at 8192 tokens: 2 x 32 x 8 x 128 x 8192 x 2 bytes = 1 GiB
    assert est.kv_cache == 1024**3
    shorter = memory.estimate(model_path=path, model_format="gguf", context_length=2048)
    assert shorter.kv_cache == 1024**3 // 4


def test_tensor_parallel_splits_all_but_the_overhead():
    est = memory.MemoryEstimate(weights=16 * 1024**3, kv_cache=4 * 1024**3)
    assert est.per_gpu(2) == (est.total - est.overhead) // 2 + est.overhead
    assert est.per_gpu(1) == est.total
