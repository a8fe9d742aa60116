"""Image generation request (OpenAI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.relay.bounds import ModelName


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: ModelName
    prompt: str = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=10)
    size: str | None = Field(default=None, pattern=r"^\d{2,5}x\d{2,5}$")
    response_format: Literal["url", "b64_json"] | None = None
