"""Pure conversions between the relay's OpenAI world and litellm's call/result objects.

Kept apart from `litellm_provider` so they can be read and tested without a provider, and so
that nothing here imports litellm at module import time (it takes seconds): results are handled
through their `model_dump()` dicts, and exceptions by the attributes litellm puts on them.

Which client parameters reach litellm (decided here, once):
- `model`, `messages`, `stream`, `stream_options` are set by the adaptor;
- anything litellm reads as its *own* control kwarg (api_key, api_base, base_url, extra_headers,
  metadata, mock_response, num_retries, timeout, aws_*/vertex_*/azure_* credentials, ...) is
  dropped: a client must never be able to redirect our key to another host or change our retry
  policy;
- every other key is passed through. litellm maps the OpenAI ones to the provider and, with
  `drop_params=True`, silently drops OpenAI params the provider cannot take (logit_bias for
  Anthropic, ...); non-OpenAI keys (top_k, thinking, safety_settings, ...) reach the provider as
  provider-specific params, so the provider, not the gateway, decides whether they are valid.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any
from urllib.parse import urlsplit

import orjson

from modelport_wire import openai as wire

# litellm control kwargs that are not in its all_litellm_params list, or too dangerous to rely on
# that list (which changes between releases) to contain.
_BLOCKED_PARAMS = frozenset(
    {
        "api_base",
        "api_key",
        "api_version",
        "base_url",
        "organization",
        "default_headers",
        "extra_headers",
        "extra_body",
        "extra_query",
        "headers",
        "timeout",
        "request_timeout",
        "stream_timeout",
        "max_retries",
        "num_retries",
        "drop_params",
        "additional_drop_params",
        "allowed_openai_params",
        "custom_llm_provider",
        "deployment_id",
        "model_list",
        "shared_session",
        "client",
        "metadata",
        "mock_response",
        "fallbacks",
        "ssl_verify",
    }
)
_BLOCKED_PREFIXES = ("_", "litellm", "aws_", "vertex_", "azure_", "api_", "s3_", "gcs_", "mock_")
_ADAPTOR_OWNED = frozenset({"model", "messages", "stream", "stream_options", "input"})

_CHUNK_KEYS = ("id", "object", "created", "model", "system_fingerprint", "service_tier")
_CHOICE_KEYS = ("index", "finish_reason", "logprobs")
_MESSAGE_KEYS = (
    "role",
    "content",
    "refusal",
    "tool_calls",
    "function_call",
    "reasoning_content",
    "annotations",
    "audio",
)
_USAGE_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
)

_LITELLM_NOISE = ("\nTraceback (most recent call last)", "This looks like a bug in LiteLLM")
MAX_MESSAGE = 2000
_LITELLM_PREFIX = re.compile(r"^litellm\.\w+:\s*(?:\w+(?:Exception|Error)\s*-\s*)?")
_LITELLM_SUFFIX = re.compile(
    r"\.?\s*(?:Handle with `litellm\.\w+`\.?|Received Model Group=.*)$", re.S
)


def blocked_param(name: str, litellm_params: frozenset[str]) -> bool:
    return (
        name in _BLOCKED_PARAMS
        or name in litellm_params
        or name in _ADAPTOR_OWNED
        or name.startswith(_BLOCKED_PREFIXES)
    )


def passthrough_params(body: dict[str, Any], litellm_params: frozenset[str]) -> dict[str, Any]:
    """The client's parameters litellm may see (see the module docstring for the rule)."""
    return {k: v for k, v in body.items() if not blocked_param(k, litellm_params)}


def api_base_for(provider: str, base_url: str, config: dict[str, Any]) -> str | None:
    """Turn a channel's base URL into the `api_base` litellm expects for this provider.

    One API stores provider hosts bare (https://api.anthropic.com); litellm appends
    /v1/messages for Anthropic and wants the version path (…/v1beta) included for Gemini.
    """
    base = base_url.strip().rstrip("/")
    if not base:
        return None
    if provider == "anthropic":
        for suffix in ("/v1/messages", "/v1"):
            if base.endswith(suffix):
                return base[: -len(suffix)]
        return base
    if provider == "gemini":
        last = urlsplit(base).path.rstrip("/").rsplit("/", 1)[-1]
        if re.fullmatch(r"v\d+(?:alpha|beta)?\d*", last):
            return base
        return f"{base}/{config.get('api_version') or 'v1beta'}"
    return base


def _prune(value: Any) -> Any:
    """Drop None values inside nested dicts (litellm fills every optional field with None)."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def clean_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    out = {k: _prune(usage[k]) for k in _USAGE_KEYS if usage.get(k) is not None}
    for key in ("prompt_tokens", "completion_tokens"):
        out.setdefault(key, 0)
    out.setdefault("total_tokens", out["prompt_tokens"] + out["completion_tokens"])
    return out


def _clean_message(message: dict[str, Any], *, keep_content: bool) -> dict[str, Any]:
    out = {k: _prune(message[k]) for k in _MESSAGE_KEYS if message.get(k) not in (None, [])}
    if keep_content:  # a response message: OpenAI's schema requires content and refusal
        out.setdefault("content", None)
        out.setdefault("refusal", None)
    return out


def completion_dict(dumped: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI `chat.completion` from litellm's ModelResponse.model_dump()."""
    out: dict[str, Any] = {k: dumped[k] for k in _CHUNK_KEYS if dumped.get(k) is not None}
    out["object"] = "chat.completion"
    out.setdefault("model", model)
    choices = []
    for choice in dumped.get("choices") or []:
        c: dict[str, Any] = {k: choice.get(k) for k in _CHOICE_KEYS}
        c["message"] = _clean_message(choice.get("message") or {}, keep_content=True)
        c["message"].setdefault("role", "assistant")
        choices.append(c)
    out["choices"] = choices
    usage = clean_usage(dumped.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def split_chunk(
    dumped: dict[str, Any], model: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(OpenAI chat.completion.chunk or None when it carries nothing, usage or None).

    litellm attaches usage to a chunk with an empty delta; OpenAI sends usage in its own final
    chunk with `choices: []`, which the adaptor emits once at the end of the stream.
    """
    head: dict[str, Any] = {k: dumped[k] for k in _CHUNK_KEYS if dumped.get(k) is not None}
    head["object"] = "chat.completion.chunk"
    head.setdefault("model", model)
    choices = []
    for choice in dumped.get("choices") or []:
        delta = _clean_message(choice.get("delta") or {}, keep_content=False)
        if not delta and choice.get("finish_reason") is None:
            continue
        c: dict[str, Any] = {"index": choice.get("index", 0), "delta": delta}
        c["finish_reason"] = choice.get("finish_reason")
        if choice.get("logprobs") is not None:
            c["logprobs"] = _prune(choice["logprobs"])
        choices.append(c)
    usage = clean_usage(dumped.get("usage"))
    if not choices:
        return None, usage
    head["choices"] = choices
    return head, usage


def usage_chunk(head: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: head[k] for k in ("id", "created", "model") if k in head}
    out["object"] = "chat.completion.chunk"
    return {**out, "choices": [], "usage": usage}


def embeddings_dict(dumped: dict[str, Any], model: str, encoding_format: str | None) -> dict:
    """An OpenAI embeddings list; base64 (little-endian float32, as OpenAI sends) on request —
    the official openai client asks for base64 by default."""
    data = []
    for i, item in enumerate(dumped.get("data") or []):
        vector = item.get("embedding") if isinstance(item, dict) else item
        if encoding_format == "base64" and isinstance(vector, list):
            packed = struct.pack(f"<{len(vector)}f", *vector)
            vector = base64.b64encode(packed).decode()
        index = item.get("index", i) if isinstance(item, dict) else i
        data.append({"object": "embedding", "index": index, "embedding": vector})
    usage = clean_usage(dumped.get("usage")) or {"prompt_tokens": 0, "total_tokens": 0}
    usage.pop("completion_tokens", None)
    usage["total_tokens"] = usage.get("prompt_tokens", 0)
    return {"object": "list", "data": data, "model": dumped.get("model") or model, "usage": usage}


def provider_message(raw: str, secret: str | None) -> str:
    """The provider's own error message out of litellm's decorated exception text, key redacted."""
    for noise in _LITELLM_NOISE:  # litellm appends tracebacks and bug-report links
        raw = raw.split(noise, 1)[0]
    text = _LITELLM_SUFFIX.sub("", _LITELLM_PREFIX.sub("", raw.strip())).strip()[:MAX_MESSAGE]
    if text.startswith(("{", "[")):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        err = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            text = err["message"]
        elif isinstance(err, str):
            text = err
    if secret:
        text = text.replace(secret, "***")
    return text or "upstream error"


def error_status(status: int | None, message: str) -> int:
    """The status the relay acts on. Anthropic's 529 'overloaded' becomes 503 (retryable, and a
    status every HTTP client knows); an unknown status is a 500."""
    if "overloaded" in message.lower() or status == 529:
        return 503
    if status is None or not 400 <= status <= 599:
        return 500
    return status


def error_json(status: int, message: str, provider: str) -> bytes:
    """The provider's error in OpenAI's body; its 5xx and 408 are the upstream's failure."""
    if status == 408:
        type_, code = "upstream_error", "upstream_timeout"
    elif status >= 500:
        type_ = "upstream_error"
        code = "upstream_unavailable" if status == 503 else "upstream_error"
    else:
        type_, code = wire.STATUS_KINDS.get(status, ("upstream_error", "upstream_error"))
    return wire.error_bytes(f"{provider}: {message}", type=type_, code=code)
