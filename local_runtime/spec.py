"""What a launch asks for, shared by the supervisor, the worker process and the engines.

A `LaunchSpec` is what a user (CLI, REST, UI) asks to run under a model UID. The supervisor resolves
it against the catalog into a `ResolvedSpec` (engine chosen, files located) and hands that to the
worker process as JSON. Field names follow Xinference's launch API so its users recognise them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ModelType = Literal["llm", "embedding", "rerank", "audio", "image"]
ModelFormat = Literal["gguf", "pytorch", "awq", "gptq", "ct2", "diffusers", "onnx"]

# Xinference spells some things differently; accept theirs on the way in.
FORMAT_ALIASES: dict[str, str] = {"ggufv2": "gguf", "ggmlv3": "gguf", "safetensors": "pytorch"}
TYPE_ALIASES: dict[str, str] = {"LLM": "llm", "text-embedding": "embedding"}
ENGINE_ALIASES: dict[str, str] = {
    "llama-cpp": "llama.cpp",
    "llamacpp": "llama.cpp",
    "llama_cpp": "llama.cpp",
    "xllamacpp": "llama.cpp",
    "vLLM": "vllm",
    "Transformers": "transformers",
    "sentence-transformers": "sentence_transformers",
    "SentenceTransformers": "sentence_transformers",
    "faster-whisper": "faster_whisper",
}


class LaunchSpec(BaseModel):
    """A launch request, as the user gave it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str
    model_uid: str | None = None
    model_type: ModelType | None = None
    model_engine: str | None = None
    model_format: str | None = None
    model_size_in_billions: float | str | None = None
    quantization: str | None = None
    model_path: str | None = None
    n_gpu: int | Literal["auto"] | None = "auto"
    gpu_idx: list[int] | None = None
    replica: int = Field(default=1, ge=1, le=64)
    keep_alive_s: float | None = Field(
        default=None, description="unload after this many idle seconds (None: the global default)"
    )
    trust_remote_code: bool = False
    engine_options: dict[str, Any] = Field(default_factory=dict)
    node: str | None = Field(default=None, description="run on this node (scale-out)")
    first_byte_timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="fail over to another replica when a worker has not started answering in "
        "this many seconds (None: local_first_byte_timeout_s); size it to the model's prefill",
    )

    @field_validator("model_type", mode="before")
    @classmethod
    def _type_alias(cls, v: Any) -> Any:
        """Xinference spells types "LLM", "text-embedding"; accept them."""
        return TYPE_ALIASES.get(v, v) if isinstance(v, str) else v

    @property
    def uid(self) -> str:
        return self.model_uid or self.model_name


class ResolvedSpec(BaseModel):
    """A launch resolved against the catalog: what a worker process needs to load the model."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    uid: str
    model_name: str
    model_type: ModelType
    engine: str
    model_format: str
    model_path: str
    model_size_in_billions: float | None = None
    quantization: str | None = None
    abilities: list[str] = Field(default_factory=list)
    context_length: int | None = None
    dimensions: int | None = None
    max_tokens: int | None = None
    device: str = "cpu"
    gpu_idx: list[int] | None = None
    trust_remote_code: bool = False
    engine_options: dict[str, Any] = Field(default_factory=dict)
    voices: list[str] = Field(default_factory=list)  # text to speech: read from its files
