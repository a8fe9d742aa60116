"""How much GPU memory a model needs: weights + KV cache + runtime overhead.

Placement packs models onto GPUs by this number, so it must be right to within a few percent for
the common cases, and never need the weights loaded to answer:
- GGUF: the file size is the weight size (quantized tensors are stored as they are loaded); the
  KV-cache shape comes from the GGUF metadata (`gguf` package, the llama-cpp extra).
- safetensors: the header lists every tensor's dtype and shape; the sum is exact.
- otherwise config.json: parameter count from the architecture x bytes per parameter of the
  dtype or quantization; or the catalog's `model_size_in_billions` x bytes per parameter.
KV cache = 2 (K and V) x layers x kv heads x head dim x context x sequences x bytes per element.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3

# bytes per parameter by dtype or quantization (GGUF bits-per-weight from llama.cpp's quantize)
BYTES_PER_PARAM: dict[str, float] = {
    "float32": 4.0, "fp32": 4.0, "f32": 4.0,
    "bfloat16": 2.0, "bf16": 2.0, "float16": 2.0, "fp16": 2.0, "f16": 2.0, "none": 2.0,
    "int8": 1.0, "8-bit": 1.0, "fp8": 1.0, "q8_0": 8.5 / 8,
    "q6_k": 6.56 / 8, "q5_k_m": 5.69 / 8, "q5_k_s": 5.54 / 8, "q5_0": 5.5 / 8,
    "q4_k_m": 4.85 / 8, "q4_k_s": 4.58 / 8, "q4_0": 4.55 / 8, "q4_1": 5.0 / 8,
    "q3_k_m": 3.91 / 8, "q3_k_l": 4.27 / 8, "q2_k": 3.35 / 8,
    "int4": 0.5, "4-bit": 0.5, "awq": 0.5 + 0.03, "gptq": 0.5 + 0.03,
}  # fmt: skip
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
CUDA_CONTEXT_BYTES = 512 * 1024**2  # CUDA context + allocator slack per process


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What the KV cache depends on."""

    layers: int
    kv_heads: int
    head_dim: int
    context_length: int


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    weights: int
    kv_cache: int = 0
    overhead: int = CUDA_CONTEXT_BYTES

    @property
    def total(self) -> int:
        # activations and fragmentation grow with the model: 5 % of the weights on top
        return self.weights + self.kv_cache + self.overhead + int(self.weights * 0.05)

    def per_gpu(self, n_gpu: int) -> int:
        """Tensor parallelism splits weights and KV cache; every GPU pays the overhead."""
        n = max(1, n_gpu)
        return (self.total - self.overhead) // n + self.overhead


def bytes_per_param(dtype_or_quant: str | None) -> float:
    key = (dtype_or_quant or "bf16").lower().replace("-", "_") if dtype_or_quant else "bf16"
    return BYTES_PER_PARAM.get(key, BYTES_PER_PARAM.get(key.replace("_", "-"), 2.0))


def kv_cache_bytes(shape: ModelShape, *, sequences: int = 1, dtype_bytes: int = 2) -> int:
    return (
        2
        * shape.layers
        * shape.kv_heads
        * shape.head_dim
        * shape.context_length
        * sequences
        * dtype_bytes
    )


# --- config.json (Hugging Face) -------------------------------------------------------------------
def params_from_config(cfg: dict[str, Any]) -> int:
    """Parameters of a decoder-only transformer (Llama/Qwen/Mistral family) from its config."""
    cfg = cfg.get("text_config", cfg)
    h = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    inter = int(cfg.get("intermediate_size") or 4 * h)
    vocab = int(cfg["vocab_size"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or h // heads)
    q, kv = heads * head_dim, kv_heads * head_dim
    attn = h * q + 2 * h * kv + q * h
    if cfg.get("attention_bias", cfg.get("model_type") in ("qwen2",)):
        attn += q + 2 * kv
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 1)
    moe_inter = int(cfg.get("moe_intermediate_size") or inter)
    mlp = 3 * h * (moe_inter if experts > 1 else inter) * experts
    per_layer = attn + mlp + 2 * h
    embed = vocab * h
    head = 0 if cfg.get("tie_word_embeddings") else vocab * h
    return layers * per_layer + embed + head + h


def shape_from_config(cfg: dict[str, Any], context_length: int | None = None) -> ModelShape:
    cfg = cfg.get("text_config", cfg)
    heads = int(cfg["num_attention_heads"])
    return ModelShape(
        layers=int(cfg["num_hidden_layers"]),
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads),
        context_length=context_length or int(cfg.get("max_position_embeddings") or 4096),
    )


def torch_dtype(cfg: dict[str, Any]) -> str:
    quant = cfg.get("quantization_config") or {}
    if quant.get("quant_method") in ("awq", "gptq"):
        return str(quant["quant_method"])
    if quant.get("bits") == 4 or quant.get("load_in_4bit"):
        return "int4"
    return str(cfg.get("torch_dtype") or cfg.get("dtype") or "bf16")


# --- files ----------------------------------------------------------------------------------------
def safetensors_bytes(path: Path) -> int:
    """Tensor bytes listed in a .safetensors header (8-byte little-endian length, then JSON)."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in info["shape"]:
            count *= int(d)
        total += count * SAFETENSORS_DTYPE_BYTES.get(info["dtype"], 2)
    return total


def gguf_shape(path: Path, context_length: int | None = None) -> ModelShape | None:
    """KV-cache shape from GGUF metadata; None without the `gguf` package or the keys."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    reader = GGUFReader(str(path))

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    if not arch:
        return None
    layers = field(f"{arch}.block_count")
    heads = field(f"{arch}.attention.head_count")
    embd = field(f"{arch}.embedding_length")
    if not (layers and heads and embd):
        return None
    kv = field(f"{arch}.attention.head_count_kv") or heads
    head_dim = field(f"{arch}.attention.key_length") or int(embd) // int(heads)
    ctx = context_length or field(f"{arch}.context_length") or 4096
    return ModelShape(int(layers), int(kv), int(head_dim), int(ctx))


def _files(path: Path, suffix: str) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix == suffix else []
    return sorted(path.glob(f"*{suffix}")) if path.is_dir() else []


def estimate(
    *,
    model_path: str | Path | None = None,
    model_format: str = "pytorch",
    size_in_billions: float | None = None,
    quantization: str | None = None,
    context_length: int | None = None,
    sequences: int = 1,
) -> MemoryEstimate:
    """Best estimate from what exists: files first, then config.json, then the nominal size."""
    path = Path(model_path) if model_path else None
    shape: ModelShape | None = None
    weights = 0
    if path is not None and path.exists():
        if model_format == "gguf":
            ggufs = _files(path, ".gguf")
            weights = sum(p.stat().st_size for p in ggufs)
            shape = gguf_shape(ggufs[0], context_length) if ggufs else None
        else:
            tensors = _files(path, ".safetensors")
            weights = sum(safetensors_bytes(p) for p in tensors)
            cfg_path = (path if path.is_dir() else path.parent) / "config.json"
            if cfg_path.is_file():
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
                if "num_hidden_layers" in cfg.get("text_config", cfg):
                    shape = shape_from_config(cfg, context_length)
                    if not weights:
                        weights = int(params_from_config(cfg) * bytes_per_param(torch_dtype(cfg)))
            if not weights:  # .bin / other weight files: their size
                weights = sum(p.stat().st_size for p in _files(path, ".bin"))
    if not weights and size_in_billions:
        quant = quantization or ("q4_k_m" if model_format == "gguf" else "bf16")
        weights = int(float(size_in_billions) * 1e9 * bytes_per_param(quant))
    kv = kv_cache_bytes(shape, sequences=sequences) if shape else 0
    return MemoryEstimate(weights=weights, kv_cache=kv)
