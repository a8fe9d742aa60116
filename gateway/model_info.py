"""What the gateway knows about a model it serves, whatever serves it.

One shape for local UIDs and channel models, used by `/v1/models`, the FastGPT export and the admin
UI. Local models fill it from their resolved launch spec and the catalog; channel models from the
channel's per-model kinds, litellm's model table and name rules (`gateway.model_kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, Field

# What a model does, in litellm's `mode` words (its model table says it for remote models): the
# FastGPT list a model is exported to, the Xinference `model_type` it is described with, and the
# surface that serves it all follow from it.
ModelKind = Literal[
    "chat", "embedding", "rerank", "audio_transcription", "audio_speech", "image_generation"
]  # fmt: skip
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)


class ServedModel(BaseModel):
    id: str = Field(description="what clients put in the `model` field")
    kind: ModelKind = "chat"
    source: Literal["local", "channel"] = "channel"
    owned_by: str = "modelport"
    display_name: str | None = None
    abilities: list[str] = Field(default_factory=list)  # chat, generate, tools, vision, reasoning
    context_length: int | None = None
    max_output_tokens: int | None = None
    dimensions: int | None = None  # embeddings
    max_input_tokens: int | None = None  # embeddings / rerank input limit
    input_price: float = 0.0  # USD per 1M tokens
    output_price: float = 0.0
    languages: list[str] = Field(default_factory=list)
    # Text-to-speech: the voice names the model accepts (OpenAI's `voice`); empty when unknown.
    voices: list[str] = Field(default_factory=list)
    # Local models: how the runtime serves them, in Xinference's words (its describe_model).
    engine: str | None = None
    model_format: str | None = None  # the runtime's: pytorch, gguf, awq, gptq, ...
    model_family: str | None = None
    model_size_in_billions: float | None = None
    quantization: str | None = None


@dataclass(frozen=True, slots=True)
class PendingModel:
    """A launched model with no endpoint to route to yet (or any more): what the gateway answers
    instead of "model not found". Reported by the local runtime, which alone knows its UIDs."""

    status: str  # loading | unloading | unloaded | restarting | ready | error, as the runtime says
    since: float | None = None  # epoch seconds when its current load began
    error: str | None = None  # why it failed (status "error")
