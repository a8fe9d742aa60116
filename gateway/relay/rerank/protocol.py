"""Rerank request (Jina/Cohere shape, what FastGPT >= 4.8.20 posts)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.relay.bounds import MAX_TOP_N, ModelName


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: ModelName
    query: str = Field(min_length=1)
    documents: list[str | dict[str, Any]] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, le=MAX_TOP_N)
    return_documents: bool | None = None
