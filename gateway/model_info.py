"""What the gateway knows about a model it serves, whatever serves it.

One shape for local UIDs and channel models, used by `/v1/models`, the FastGPT export and the admin
UI. Local models fill it from their resolved launch spec and the catalog; channel models from the
catalog's knowledge of well-known names, or defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

ServedType = Literal["llm", "embedding", "rerank", "audio", "image", "tts"]


class ServedModel(BaseModel):
    id: str = Field(description="what clients put in the `model` field")
    type: ServedType = "llm"
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


@dataclass(frozen=True, slots=True)
class PendingModel:
    """A launched model with no endpoint to route to yet (or any more): what the gateway answers
    instead of "model not found". Reported by the local runtime, which alone knows its UIDs."""

    status: str  # loading | unloading | unloaded | restarting | ready | error, as the runtime says
    since: float | None = None  # epoch seconds when its current load began
    error: str | None = None  # why it failed (status "error")
