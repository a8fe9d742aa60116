"""Non-streamed chat answers carry the fields OpenAI's schema marks required.

openai/openai-openapi openapi.yaml: CreateChatCompletionResponse's choices require `logprobs`
(null when not asked) and ChatCompletionResponseMessage requires `refusal` (null when the model
did not refuse). OpenAI always sends both; llama.cpp's server leaves `refusal` out, as other
OpenAI-compatible servers may, and clients generated from the schema (typed SDKs, strict
validators) reject such an answer. Answers that already carry both pass through untouched; only
the others are re-encoded.
"""

from __future__ import annotations

from typing import Any


def with_required_fields(obj: dict[str, Any]) -> bool:
    """Fill in null `logprobs` and `message.refusal` where an answer lacks them; True when
    something was missing (nothing changes for a body that is not a chat.completion)."""
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return False
    changed = False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if "logprobs" not in choice:
            choice["logprobs"] = None
            changed = True
        message = choice.get("message")
        if isinstance(message, dict) and "refusal" not in message:
            message["refusal"] = None
            changed = True
    return changed
