"""Which kind a served model is (chat, embedding, rerank, audio_transcription, audio_speech,
image_generation), decided once here for every consumer (`/v1/models`, the FastGPT export).

A wrong kind is not cosmetic: FastGPT puts each model in the list its kind names, and from 4.8.20
a pushed `metadata.type` overrides the type of FastGPT's own built-in model of that name
(labring/FastGPT `packages/service/core/ai/config/utils.ts`, `type: dbModel?.metadata?.type ||
fileModel.type`), so calling `whisper-1` a chat model breaks FastGPT's speech input.

- Local models: from the runtime's model type (Xinference's words) and abilities; an audio model
  with Xinference's `text2audio` ability speaks, any other audio model transcribes.
- Channel models: the admin's kind for that model on the channel, else litellm's model table
  (`mode`, by the name clients use, then by the upstream name it maps to), else name rules, else
  chat (an unknown name behind a chat gateway is most often a chat model).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

from gateway.model_info import MODEL_KINDS, ModelKind
from gateway.upstreams import litellm_table

# litellm `mode` -> kind; modes with no modelport surface (moderation, ...) are left to the rules.
_MODES: dict[str, ModelKind] = {
    "chat": "chat",
    "completion": "chat",
    "responses": "chat",
    "embedding": "embedding",
    "rerank": "rerank",
    "audio_transcription": "audio_transcription",
    "audio_speech": "audio_speech",
    "image_generation": "image_generation",
}
# Xinference model types (the runtime's) -> kind; "audio" is decided by abilities.
_LOCAL_TYPES: dict[str, ModelKind] = {
    "llm": "chat",
    "embedding": "embedding",
    "rerank": "rerank",
    "image": "image_generation",
}
# Substrings of a lower-cased model name, first match wins: rerankers before embeddings (bge-
# names both), speech synthesis before transcription ("gpt-4o-mini-tts").
_NAME_RULES: tuple[tuple[ModelKind, tuple[str, ...]], ...] = (
    ("rerank", ("rerank",)),
    ("embedding", ("embed", "bge-", "/bge", "m3e", "text2vec", "gte-", "e5-", "minilm")),
    ("audio_speech", ("tts", "cosyvoice", "fish-speech", "chattts", "kokoro", "piper", "melo")),
    ("audio_transcription", ("whisper", "transcri", "sensevoice", "paraformer", "asr")),
    ("image_generation", ("dall-e", "diffusion", "sd-", "sdxl", "flux", "gpt-image", "kolors")),
    ("image_generation", ("cogview",)),
)
# Words other systems use for a kind (Xinference's and FastGPT's types, the old channel config).
KIND_ALIASES: dict[str, ModelKind] = {
    "llm": "chat",
    "LLM": "chat",
    "audio": "audio_transcription",
    "stt": "audio_transcription",
    "tts": "audio_speech",
    "image": "image_generation",
}
XINFERENCE_TTS_ABILITY = "text2audio"


def is_kind(value: object) -> bool:
    return value in MODEL_KINDS


def normalise_kinds(declared: Mapping[str, object]) -> dict[str, ModelKind]:
    """{model: kind} in our words; raises ValueError naming the model whose kind is unknown."""
    out: dict[str, ModelKind] = {}
    for model, value in declared.items():
        kind = KIND_ALIASES.get(value, value) if isinstance(value, str) else value
        if not is_kind(kind):
            raise ValueError(
                f"model_types: {model!r} has kind {value!r}; use one of {', '.join(MODEL_KINDS)}"
            )
        out[str(model)] = cast(ModelKind, kind)
    return out


def local_kind(model_type: str, abilities: Iterable[str]) -> ModelKind:
    if model_type == "audio":
        speaks = XINFERENCE_TTS_ABILITY in abilities
        return "audio_speech" if speaks else "audio_transcription"
    return _LOCAL_TYPES.get(model_type, "chat")


def table_kind(model: str) -> ModelKind | None:
    entry = litellm_table.lookup(model)
    return _MODES.get(entry.mode or "") if entry is not None else None


def name_kind(model: str) -> ModelKind | None:
    name = model.lower()
    for kind, hints in _NAME_RULES:
        if any(h in name for h in hints):
            return kind
    return None


def channel_kind(model: str, upstream: str, admin_set: Mapping[str, str]) -> ModelKind:
    """The kind of channel model `model` (sent upstream as `upstream`): the admin's word first."""
    chosen = admin_set.get(model)
    if is_kind(chosen):
        return cast(ModelKind, chosen)
    for name in dict.fromkeys((model, upstream)):
        if (kind := table_kind(name)) is not None:
            return kind
    return name_kind(model) or name_kind(upstream) or "chat"
