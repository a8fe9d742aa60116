"""Embeddings request (OpenAI; FastGPT sends no encoding_format and may send `dimensions`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.relay.bounds import MAX_DIMENSIONS, ModelName


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: ModelName
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, le=MAX_DIMENSIONS)
    user: str | None = None
