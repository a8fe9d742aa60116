"""Legacy text completions request (OpenAI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.relay.bounds import Choices, Logprobs, ModelName, Penalty, Seed, TokenLimit


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: ModelName
    prompt: str | list[str] | list[int] | list[list[int]] = ""
    stream: bool = False
    max_tokens: TokenLimit | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: Choices | None = None
    best_of: Choices | None = None
    logprobs: Logprobs | None = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stop: str | list[str] | None = None

    def output_bound(self, default: int) -> int:
        """best_of completions are generated (and billed) even when fewer are returned."""
        return (self.max_tokens or default) * max(self.n or 1, self.best_of or 1)
