"""Non-streamed chat answers carry the fields OpenAI's schema marks required.

openai/openai-openapi openapi.yaml: CreateChatCompletionResponse's choices require `logprobs`
(null when not asked) and ChatCompletionResponseMessage requires `refusal` (null when the model
did not refuse). OpenAI always sends both; llama.cpp's server leaves `refusal` out, as other
OpenAI-compatible servers may, and clients generated from the schema (typed SDKs, strict
validators) reject such an answer. Answers that already carry both pass through untouched; only
the others are re-encoded.
"""

from __future__ import annotations

import orjson


def with_required_fields(raw: bytes) -> bytes | None:
    """The answer with null `logprobs` and `message.refusal` filled in; None when nothing is
    missing or the body is not a chat.completion (then it passes on as it came)."""
    if b'"logprobs"' in raw and b'"refusal"' in raw:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
        return None
    changed = False
    for choice in obj["choices"]:
        if not isinstance(choice, dict):
            continue
        if "logprobs" not in choice:
            choice["logprobs"] = None
            changed = True
        message = choice.get("message")
        if isinstance(message, dict) and "refusal" not in message:
            message["refusal"] = None
            changed = True
    return orjson.dumps(obj) if changed else None
