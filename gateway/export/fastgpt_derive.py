"""What FastGPT needs to know about a served model, derived once for both export eras.

FastGPT cannot ask a gateway about a model's limits, so everything it uses to size prompts,
choose models for features and bill comes from here. The rules, and why:

- maxContext is the model's context length (FastGPT trims history and quotes to it); unknown
  lengths get a conservative 4096, since overstating it makes requests fail at the model.
- maxResponse is the catalog's max output, else a quarter of the context (at most 8192), and never
  more than half the context, so a long answer cannot crowd out the question.
- quoteMaxToken (knowledge-base quotes) is what is left after the answer and an eighth of the
  context for the system prompt and history: maxResponse + quoteMaxToken < maxContext.
- toolChoice follows the "tools" ability; functionCall (the deprecated `functions` API) stays off,
  as FastGPT prefers toolChoice and falls back to prompting when both are off.
- Prices: ServedModel prices are USD per 1M tokens; FastGPT's are points per 1k tokens, so they
  are divided by 1000 (one point = one USD unless an override says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast, get_args

from gateway.export.fastgpt_types import ModelType
from gateway.model_info import ModelKind, ServedModel

FASTGPT_TYPES: tuple[str, ...] = get_args(ModelType)

DEFAULT_CONTEXT = 4096
DEFAULT_EMBEDDING_MAX_TOKENS = 512
DEFAULT_CHUNK_TOKENS = 512  # FastGPT's own default split size
MAX_TEMPERATURE = 1.2  # FastGPT's default; the OpenAI API accepts up to 2
# FastGPT's pgvector column holds 1536 values; longer vectors are cut, so larger models are asked
# for 1536 dimensions (OpenAI's `dimensions`, which Matryoshka models honour).
FASTGPT_MAX_DIMENSIONS = 1536

# A served model's FastGPT type, by kind; image generation has no place in FastGPT.
_KINDS: dict[ModelKind, ModelType] = {
    "chat": "llm",
    "embedding": "embedding",
    "rerank": "rerank",
    "audio_transcription": "stt",
    "audio_speech": "tts",
}

# Substrings of model ids (lower-case) to FastGPT provider ids (the 4.8.19 list), first match wins.
_PROVIDER_HINTS: tuple[tuple[str, str], ...] = (
    ("qwen", "Qwen"), ("qwq", "Qwen"), ("bge", "BAAI"), ("baai", "BAAI"), ("glm", "ChatGLM"),
    ("deepseek", "DeepSeek"), ("llama", "Meta"), ("mistral", "MistralAI"), ("mixtral", "MistralAI"),
    ("claude", "Claude"), ("gemini", "Gemini"), ("baichuan", "Baichuan"), ("moonshot", "Moonshot"),
    ("kimi", "Moonshot"), ("minimax", "MiniMax"), ("hunyuan", "Hunyuan"), ("ernie", "Ernie"),
    ("doubao", "Doubao"), ("spark", "SparkDesk"), ("fish-speech", "FishAudio"), ("yi-", "Yi"),
    ("whisper", "OpenAI"), ("gpt-", "OpenAI"), ("text-embedding-", "OpenAI"), ("tts-1", "OpenAI"),
    ("o1", "OpenAI"), ("o3", "OpenAI"), ("o4", "OpenAI"),
)  # fmt: skip

# OpenAI's voices: what OpenAI-compatible speech servers accept when a model declares none. Every
# OpenAI speech model takes these six (openai/openai-openapi openapi.yaml, CreateSpeechRequest
# `voice`: "alloy, ash, ballad, coral, echo, fable, onyx, nova, sage, shimmer, verse, ..."; tts-1
# lacks ballad and verse).
DEFAULT_VOICES: tuple[str, ...] = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")


@dataclass(frozen=True, slots=True)
class LlmLimits:
    max_context: int
    max_response: int
    quote_max_token: int


@dataclass(frozen=True, slots=True)
class Prices:
    """Points per 1k tokens. `chars` is the one price FastGPT < 4.8.19 knows (input and output)."""

    chars: float | int
    input: float | int
    output: float | int

    @property
    def priced(self) -> bool:
        return bool(self.input or self.output)


def fastgpt_type(model: ServedModel, override: object = None) -> ModelType | None:
    """The FastGPT model type, or None when FastGPT has no use for the model.

    `override` is the admin's `type` from the FastGPT overrides, which wins when it is one of
    FastGPT's types. LLMs that declare abilities but not "chat" (completion-only models) are left
    out: FastGPT only calls /v1/chat/completions. An LLM with no abilities at all is assumed to
    chat (channel models)."""
    if override in FASTGPT_TYPES:
        return cast(ModelType, override)
    kind = _KINDS.get(model.kind)
    if kind == "llm" and model.abilities and "chat" not in model.abilities:
        return None
    return kind


def display_name(model: ServedModel) -> str:
    return model.display_name or model.id


def guess_provider(model: ServedModel) -> str:
    haystack = f"{model.id} {model.display_name or ''}".lower()
    for hint, provider in _PROVIDER_HINTS:
        if hint in haystack:
            return provider
    return "Other"


def llm_limits(model: ServedModel) -> LlmLimits:
    ctx = model.context_length or DEFAULT_CONTEXT
    wanted = model.max_output_tokens or min(8192, max(256, ctx // 4))
    response = max(1, min(wanted, ctx // 2))
    return LlmLimits(ctx, response, ctx - response - ctx // 8)


def embedding_limits(model: ServedModel) -> tuple[int, int]:
    """(defaultToken, maxToken): FastGPT's chunk size and the model's input limit."""
    max_token = model.max_input_tokens or model.context_length or DEFAULT_EMBEDDING_MAX_TOKENS
    return min(DEFAULT_CHUNK_TOKENS, max_token), max_token


def embedding_default_config(model: ServedModel) -> dict[str, int] | None:
    """`{"dimensions": n}` only when FastGPT could not store the model's native vectors."""
    if model.dimensions and model.dimensions > FASTGPT_MAX_DIMENSIONS:
        return {"dimensions": FASTGPT_MAX_DIMENSIONS}
    return None


def _number(value: float) -> float | int:
    """JSON numbers as FastGPT's samples write them: 0, not 0.0."""
    value = round(value, 6)
    return int(value) if value == int(value) else value


def prices(model: ServedModel) -> Prices:
    per_1k_in = model.input_price / 1000
    per_1k_out = model.output_price / 1000
    blended = (per_1k_in + per_1k_out) / 2 if model.kind == "chat" else per_1k_in
    return Prices(_number(blended), _number(per_1k_in), _number(per_1k_out))


def has(model: ServedModel, ability: str) -> bool:
    return ability in model.abilities


def primary_llm(models: list[ServedModel]) -> ServedModel | None:
    """The model FastGPT's dataset, classify, extract, tool-call and query-extension features
    should use when nothing else is chosen: tool-capable first, then the largest context."""
    chat = [m for m in models if fastgpt_type(m) == "llm"]
    if not chat:
        return None
    return max(chat, key=lambda m: (has(m, "tools"), m.context_length or 0))
