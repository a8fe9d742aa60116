"""FastGPT <= 4.8.19: the whole `config.json` (mounted at /app/data/config.json).

One file serves FastGPT 4.7 .. 4.8.19: every entry satisfies both the 4.7 types and the 4.8.19
ones (see fastgpt_types). FastGPT parses the file with json5 from 4.8.4 but with JSON.parse
before, so it is written as plain JSON; a user's file (comments allowed) is read with json5.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import json5

from gateway.export.fastgpt_entries import (
    CONFIG_KEYS,
    FEATURE_FLAGS,
    build_entry,
    check_overrides,
    ensure_feature_models,
    exportable,
    gateway_root,
    validate_entry,
)
from gateway.export.fastgpt_types import FastGPTExportError
from gateway.model_info import ServedModel

# FastGPT's sample values (projects/app/data/config.json, 4.8.19).
DEFAULT_SYSTEM_ENV: dict[str, Any] = {
    "vectorMaxProcess": 15,
    "qaMaxProcess": 15,
    "tokenWorkers": 50,
    "pgHNSWEfSearch": 100,
}
LIST_KEYS: tuple[str, ...] = ("llmModels", "vectorModels", "reRankModels", "audioSpeechModels")


def load_user_config(source: str | Path) -> dict[str, Any]:
    """A user's config.json as a dict: a path to a file, or the file's text (json5: comments,
    trailing commas). Raises FastGPTExportError when it is not a JSON object."""
    is_text = isinstance(source, str) and (
        "\n" in source or source.lstrip().startswith(("{", "[", "//", "/*"))
    )
    if is_text:
        where, text = "config text", str(source)
    else:
        where = str(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise FastGPTExportError(f"cannot read {where}: {exc.strerror}") from exc
    try:
        data = json5.loads(text)
    except ValueError as exc:
        raise FastGPTExportError(f"{where} is not valid JSON5: {exc}") from exc
    if not isinstance(data, dict):
        raise FastGPTExportError(f"{where}: expected a JSON object at the top level")
    for key in LIST_KEYS:
        if key in data and not isinstance(data[key], list):
            raise FastGPTExportError(f"{where}: {key} must be a list")
    return data


def dump_json(data: Any, path: str | Path | None = None) -> str:
    """Plain JSON (what every FastGPT version parses), UTF-8, 2-space indent; written to `path`
    when given. Returns the text."""
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _merge_list(existing: list[Any], ours: list[dict[str, Any]]) -> list[Any]:
    """The user's list with our entries replacing theirs of the same `model` in place, and the
    rest of ours appended in our order."""
    by_model = {e["model"]: e for e in ours}
    merged: list[Any] = []
    placed: set[Any] = set()  # model ids of ours already placed
    for item in existing:
        model = item.get("model") if isinstance(item, dict) else None
        if model in by_model and model not in placed:
            merged.append(by_model[model])
            placed.add(model)
        elif model not in placed:
            merged.append(item)
    merged.extend(e for e in ours if e["model"] not in placed)
    return merged


def build_config_json(
    models: Iterable[ServedModel],
    *,
    base_url: str,
    api_key: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    existing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete config.json for FastGPT <= 4.8.19 serving `models` through the gateway.

    base_url: the gateway's public root as FastGPT reaches it (http://modelport:3000; a trailing
        /v1 is accepted). api_key: the token FastGPT uses (systemEnv.chatApiKey, rerank auth).
    overrides: per model id, FastGPT keys to set on its entry, applied last.
    existing: a user's config.json (see load_user_config) to merge into: every other key and
        every other model is kept; entries for our models (matched by `model`) are replaced, and
        the user's systemEnv is left as it is.
    """
    root = gateway_root(base_url)
    pairs = exportable(models, overrides)
    kinds = {m.id: kind for m, kind in pairs}
    applied = check_overrides(overrides or {}, kinds, "config")

    ours: dict[str, list[dict[str, Any]]] = {key: [] for key in (*LIST_KEYS, "whisperModel")}
    for m, kind in pairs:
        entry = build_entry(m, kind, "config", root=root, api_key=api_key)
        entry.update(copy.deepcopy(applied.get(m.id, {})))
        ours[CONFIG_KEYS[kind]].append(entry)

    if existing is None:
        doc: dict[str, Any] = {
            "feConfigs": {},
            "systemEnv": {**DEFAULT_SYSTEM_ENV, "oneapiUrl": f"{root}/v1", "chatApiKey": api_key},
        }
    else:
        doc = copy.deepcopy(dict(existing))
        doc.setdefault("feConfigs", {})
        doc.setdefault("systemEnv", dict(DEFAULT_SYSTEM_ENV))
    for key in LIST_KEYS:
        doc[key] = _merge_list(list(doc.get(key) or []), ours[key])
    if ours["whisperModel"]:
        doc["whisperModel"] = ours["whisperModel"][0]  # FastGPT has room for one
    elif "whisperModel" not in doc:
        # FastGPT reads whisperModel.model unguarded; a placeholder keeps it from crashing.
        doc["whisperModel"] = {
            "provider": "OpenAI",
            "model": "whisper-1",
            "name": "Whisper1",
            "charsPointsPrice": 0,
        }

    pinned = {mid: set(FEATURE_FLAGS) & set(vals) for mid, vals in applied.items()}
    ensure_feature_models(doc["llmModels"], ours["llmModels"], pinned)

    for key in LIST_KEYS:
        for entry in ours[key]:
            validate_entry(entry, kinds[entry["model"]], "config")
    if ours["whisperModel"]:
        validate_entry(doc["whisperModel"], "stt", "config")
    return doc
