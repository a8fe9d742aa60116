"""One FastGPT entry per served model, for each era, plus overrides and the feature-model rule.

Entries are plain dicts in FastGPT's key order (as its sample files write them), so a user can
diff an export against FastGPT's documentation. `build_*` modules assemble them into files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from gateway.export import fastgpt_derive as d
from gateway.export.fastgpt_types import (
    CONFIG_LIST_TYPES,
    METADATA_TYPES,
    WHISPER_TYPES,
    FastGPTExportError,
    ModelType,
    known_fields,
)
from gateway.model_info import ServedModel

log = logging.getLogger(__name__)

Era = Literal["config", "models"]

# The config.json list (or the whisperModel key) each FastGPT type goes to.
CONFIG_KEYS: dict[ModelType, str] = {
    "llm": "llmModels",
    "embedding": "vectorModels",
    "rerank": "reRankModels",
    "tts": "audioSpeechModels",
    "stt": "whisperModel",
}
# Features FastGPT needs at least one LLM for; the structured ones want tool calling.
FEATURE_FLAGS: tuple[str, ...] = (
    "datasetProcess",
    "usedInClassify",
    "usedInExtractFields",
    "usedInToolCall",
    "usedInQueryExtension",
)
_STRUCTURED_FLAGS = frozenset({"usedInClassify", "usedInExtractFields", "usedInToolCall"})
# What FastGPT calls for each type, under the gateway root (a per-model requestUrl is a full URL).
REQUEST_PATHS: dict[ModelType, str] = {
    "llm": "/v1/chat/completions",
    "embedding": "/v1/embeddings",
    "rerank": "/v1/rerank",
    "tts": "/v1/audio/speech",
    "stt": "/v1/audio/transcriptions",
}
# The model id comes from the gateway; `type` is the admin's correction of the model's kind (it
# picks the list, so it is consumed by `exportable`, not copied onto entries).
_IDENTITY_KEYS = frozenset({"model"})
TYPE_KEY = "type"


def gateway_root(base_url: str) -> str:
    """The gateway's public root without /v1 (users paste either form)."""
    root = base_url.strip().rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def era_types(era: Era, kind: ModelType) -> tuple[type[BaseModel], ...]:
    if era == "models":
        return (METADATA_TYPES[kind],)
    return WHISPER_TYPES if kind == "stt" else CONFIG_LIST_TYPES[CONFIG_KEYS[kind]]


def exportable(
    models: Iterable[ServedModel], overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> list[tuple[ServedModel, ModelType]]:
    """Models FastGPT can use with their type (an override's `type` first, else from the model's
    kind), primary LLM first (FastGPT defaults to the first entry of a list), otherwise in the
    given order; a model id listed twice keeps its first."""
    out: list[tuple[ServedModel, ModelType]] = []
    seen: set[str] = set()
    for m in models:
        override = (overrides or {}).get(m.id)
        kind = d.fastgpt_type(m, override.get(TYPE_KEY) if isinstance(override, Mapping) else None)
        if kind is None:
            log.debug("FastGPT export skips %s (kind %s)", m.id, m.kind)
        elif m.id not in seen:
            seen.add(m.id)
            out.append((m, kind))
    primary = d.primary_llm([m for m, _ in out])
    out.sort(key=lambda pair: pair[0] is not primary)
    return out


def _llm(m: ServedModel, era: Era) -> dict[str, Any]:
    limits = d.llm_limits(m)
    price = d.prices(m)
    tools = d.has(m, "tools")
    entry: dict[str, Any] = {
        "provider": d.guess_provider(m),
        "model": m.id,
        "name": d.display_name(m),
        "maxContext": limits.max_context,
        "maxResponse": limits.max_response,
        "quoteMaxToken": limits.quote_max_token,
        "maxTemperature": d.MAX_TEMPERATURE,
        "charsPointsPrice": price.chars,
        "inputPrice": price.input,
        "outputPrice": price.output,
        "censor": False,
        "vision": d.has(m, "vision"),
    }
    if era == "models":
        entry["reasoning"] = d.has(m, "reasoning")
    entry.update({flag: tools or flag not in _STRUCTURED_FLAGS for flag in FEATURE_FLAGS})
    entry.update(
        {
            "toolChoice": tools,
            "functionCall": False,
            "customCQPrompt": "",
            "customExtractPrompt": "",
            "defaultSystemChatPrompt": "",
            "defaultConfig": {},
            "fieldMap": {},
        }
    )
    return entry


def _embedding(m: ServedModel) -> dict[str, Any]:
    default_token, max_token = d.embedding_limits(m)
    entry: dict[str, Any] = {
        "provider": d.guess_provider(m),
        "model": m.id,
        "name": d.display_name(m),
        "charsPointsPrice": d.prices(m).chars,
        "defaultToken": default_token,
        "maxToken": max_token,
        "weight": 100,
    }
    config = d.embedding_default_config(m)
    if config:
        entry["defaultConfig"] = config
    return entry


def _voices(m: ServedModel, era: Era) -> list[dict[str, str]]:
    """The model's own voices (a local TTS engine lists them), else OpenAI's."""
    voices = []
    for v in m.voices or d.DEFAULT_VOICES:
        voice = {"label": v.capitalize(), "value": v}
        if era == "config":
            voice["bufferId"] = f"{m.id}-{v}"  # FastGPT caches synthesized audio under this id
        voices.append(voice)
    return voices


def build_entry(
    m: ServedModel, kind: ModelType, era: Era, *, root: str, api_key: str
) -> dict[str, Any]:
    """The entry FastGPT reads for `m` (config.json list item, or >= 4.8.20 metadata)."""
    if kind == "llm":
        entry = _llm(m, era)
    elif kind == "embedding":
        entry = _embedding(m)
    else:
        entry = {
            "provider": d.guess_provider(m),
            "model": m.id,
            "name": d.display_name(m),
            "charsPointsPrice": d.prices(m).chars,
        }
        if kind == "tts":
            entry["voices"] = _voices(m, era)
        if kind == "rerank" and era == "config":
            # Before 4.8.20 rerank is only reached through a per-model URL and key.
            entry["requestUrl"] = root + REQUEST_PATHS["rerank"]
            entry["requestAuth"] = api_key
    if era == "models":
        # Direct URLs make the entries work whatever gateway FastGPT's env points at.
        entry = {
            "type": kind,
            **entry,
            "isActive": True,
            "isCustom": True,
            "requestUrl": root + REQUEST_PATHS[kind],
            "requestAuth": api_key,
        }
    return entry


def check_overrides(
    overrides: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, ModelType], era: Era
) -> dict[str, dict[str, Any]]:
    """The overrides that apply to this era, per model id; raises on keys FastGPT never declares.

    One overrides mapping serves both eras, so a key declared only by the other era (`reasoning`
    for config.json, `customCQPrompt` after 4.10, ...) is skipped here rather than refused.
    Overrides for models not being exported are ignored (the model may just be stopped)."""
    applied: dict[str, dict[str, Any]] = {}
    for model_id, values in overrides.items():
        kind = kinds.get(model_id)
        if kind is None:
            continue
        if not isinstance(values, Mapping):
            raise FastGPTExportError(f"override for {model_id!r} must be a mapping of keys")
        this_era = known_fields(era_types(era, kind)) - _IDENTITY_KEYS - {TYPE_KEY}
        other: Era = "models" if era == "config" else "config"
        any_era = this_era | known_fields(era_types(other, kind)) - {TYPE_KEY}
        if _IDENTITY_KEYS & set(values):
            raise FastGPTExportError(
                f"override for {model_id!r} sets 'model': the model id comes from the gateway "
                "and cannot be overridden"
            )
        if TYPE_KEY in values and values[TYPE_KEY] not in d.FASTGPT_TYPES:
            raise FastGPTExportError(
                f"override for {model_id!r} sets type {values[TYPE_KEY]!r}: use one of "
                f"{', '.join(d.FASTGPT_TYPES)}"
            )
        unknown = sorted(set(values) - any_era - {TYPE_KEY})
        if unknown:
            raise FastGPTExportError(
                f"override for {model_id!r} has unknown key(s) {unknown}; FastGPT's {kind} "
                f"models declare: {', '.join(sorted(this_era))}"
            )
        applied[model_id] = {k: v for k, v in values.items() if k in this_era}
    return applied


def ensure_feature_models(
    entries: list[dict[str, Any]], candidates: list[dict[str, Any]], pinned: Mapping[str, set[str]]
) -> None:
    """FastGPT's dataset, classify, extract, tool-call and query-extension features fail unless
    some LLM has the flag; set each missing flag on the first candidate whose override does not
    pin it (candidates are ours, primary first). `entries` is the whole list (merged files)."""
    if not entries:
        log.warning("FastGPT export has no chat model; FastGPT's chat and datasets need one")
        return
    for flag in FEATURE_FLAGS:
        if any(isinstance(e, dict) and e.get(flag) is True for e in entries):
            continue
        target = next((e for e in candidates if flag not in pinned.get(e["model"], ())), None)
        if target is None:
            if candidates:
                raise FastGPTExportError(
                    f"no chat model has {flag} after overrides: FastGPT needs one; "
                    "remove the override that turns it off"
                )
            log.warning("FastGPT config has no model with %s and none of ours to set it on", flag)
            continue
        target[flag] = True


def validate_entry(entry: Mapping[str, Any], kind: ModelType, era: Era) -> None:
    """Check one entry against FastGPT's declared types; FastGPTExportError names the model."""
    for cls in era_types(era, kind):
        try:
            cls.model_validate(dict(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise FastGPTExportError(
                f"FastGPT {kind} entry for {entry.get('model')!r} does not match {cls.__name__}: "
                f"{problems}"
            ) from exc
