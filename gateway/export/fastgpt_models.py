"""FastGPT >= 4.8.20: the model-config JSON, `[{model, metadata}]`.

This is what FastGPT's model page takes in its "配置文件" (config file) editor, which saves it with
`updateWithJson` and so replaces every stored model, and what `push_models` sends one entry at a
time (merging). FastGPT's own documentation examples omit
`metadata.type` and fail to import, and FastGPT registers only `isActive: true` models while the
importer does not set it: both are always written here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.export.fastgpt_entries import (
    FEATURE_FLAGS,
    build_entry,
    check_overrides,
    ensure_feature_models,
    exportable,
    gateway_root,
    validate_entry,
)
from gateway.export.fastgpt_types import SystemModelItem
from gateway.model_info import ServedModel


def build_model_config(
    models: Iterable[ServedModel],
    *,
    base_url: str,
    api_key: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    request_urls: bool = True,
) -> list[dict[str, Any]]:
    """`[{model, metadata: {type, provider, model, name, isActive, isCustom, ...}}]`.

    Each metadata carries `requestUrl` (the full gateway URL for its type) and `requestAuth`
    (api_key), so the models work whatever AIPROXY_API_ENDPOINT / OPENAI_BASE_URL FastGPT runs
    with; `request_urls=False` leaves both out, for a FastGPT whose env already points at the
    gateway. Overrides (per model id, metadata keys) are applied last.
    """
    root = gateway_root(base_url)
    pairs = exportable(models, overrides)
    kinds = {m.id: kind for m, kind in pairs}
    applied = check_overrides(overrides or {}, kinds, "models")

    metadata: list[dict[str, Any]] = []
    for m, kind in pairs:
        entry = build_entry(m, kind, "models", root=root, api_key=api_key)
        if not request_urls:
            entry.pop("requestUrl")
            entry.pop("requestAuth")
        entry.update(copy.deepcopy(applied.get(m.id, {})))
        metadata.append(entry)

    llms = [e for e in metadata if e["type"] == "llm"]
    pinned = {mid: set(FEATURE_FLAGS) & set(vals) for mid, vals in applied.items()}
    ensure_feature_models(llms, llms, pinned)

    items = []
    for entry in metadata:
        validate_entry(entry, entry["type"], "models")
        item = {"model": entry["model"], "metadata": entry}
        SystemModelItem.model_validate(item)
        items.append(item)
    return items
