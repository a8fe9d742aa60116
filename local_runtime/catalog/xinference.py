"""Xinference's custom-model JSON, in both of its versions, as modelport families.

Users moving from Xinference bring models they registered there. Xinference keeps each one as
`<XINFERENCE_HOME>/model/v2/<type>/<name>.json` (xinference/model/cache_manager.py,
`register_custom_model`), and older releases as `<XINFERENCE_HOME>/model/<type>/<name>.json`
(the v1 layout xinference/model/custom.py `migrate_from_v1_to_v2` still reads). A v1 spec lists
`quantizations`; a v2 spec names one `quantization`, its `model_hub`, and built-in-style entries
carry ids per hub under `model_src`. The same translation serves `/v1/model_registrations`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_runtime.catalog.schema import ABILITIES, parse_size
from local_runtime.settings import RuntimeSettings
from local_runtime.spec import TYPE_ALIASES

# Xinference's model types with a modelport counterpart; the others (video, flexible) are skipped.
IMPORTABLE_TYPES = ("llm", "embedding", "rerank", "audio", "image")


def _quantizations(spec: dict[str, Any], src: dict[str, Any]) -> list[str]:
    found = src.get("quantizations") or spec.get("quantizations")
    if found:
        return list(found)
    one = src.get("quantization") or spec.get("quantization")
    return [one] if one else ["none"]


def _ids(spec: dict[str, Any], body: dict[str, Any]) -> dict[str, str]:
    """Hub ids by hub: from `model_src`, else `model_id` on the hub `model_hub` names."""
    ids = {
        hub: str(src["model_id"])
        for hub, src in (spec.get("model_src") or body.get("model_src") or {}).items()
        if hub in ("huggingface", "modelscope") and isinstance(src, dict) and src.get("model_id")
    }
    model_id = spec.get("model_id") or body.get("model_id")
    if model_id and not ids:
        hub = spec.get("model_hub") or body.get("model_hub") or "huggingface"
        ids["modelscope" if hub == "modelscope" else "huggingface"] = str(model_id)
    return ids


def _spec(spec: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    srcs = spec.get("model_src") or {}
    src = srcs.get("huggingface") or srcs.get("modelscope") or {}
    quants = _quantizations(spec, src)
    fmt = spec.get("model_format") or body.get("model_format") or "pytorch"
    template = src.get("model_file_name_template") or spec.get("model_file_name_template")
    uri = spec.get("model_uri") or body.get("model_uri")
    path = str(uri).removeprefix("file://") if uri else None
    if path and template and fmt in ("gguf", "ggufv2") and not path.endswith(".gguf"):
        # Xinference points at the folder and names the file by template: point at the file
        path = str(Path(path) / template.replace("{quantization}", quants[0]))
    ids = _ids(spec, body)
    return {
        "format": fmt,
        "size_in_billions": parse_size(spec.get("model_size_in_billions")),
        "quantizations": quants,
        "huggingface": ids.get("huggingface"),
        "modelscope": ids.get("modelscope"),
        "file_template": template,
        "model_path": path,
    }


def family_from_xinference(body: dict[str, Any], model_type: str) -> dict[str, Any]:
    """Translate an Xinference custom model (or `/v1/model_registrations` body) into our shape."""
    kind = TYPE_ALIASES.get(model_type, model_type)
    specs = [_spec(spec, body) for spec in body.get("model_specs") or [{}]]
    abilities = [a for a in body.get("model_ability") or [] if a in ABILITIES.get(kind, ())]
    data: dict[str, Any] = {
        "name": body.get("model_name", ""),
        "type": kind,
        "abilities": abilities or (["chat"] if kind == "llm" else []),
        "context_length": body.get("context_length"),
        "languages": body.get("model_lang") or body.get("language") or [],
        "description": body.get("model_description") or "",
        "dimensions": body.get("dimensions"),
        "max_tokens": body.get("max_tokens"),
        "model_family": body.get("model_family") if kind == "llm" else None,
        "specs": [{k: v for k, v in spec.items() if v is not None} for spec in specs],
    }
    return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True)
class CustomModelFile:
    """One registered model found in an Xinference home: its JSON, or why it cannot be read."""

    path: Path
    model_type: str
    name: str
    body: dict[str, Any] | None = None
    error: str = ""


def xinference_home(home: str | Path | None = None) -> Path:
    """XINFERENCE_HOME as Xinference resolves it (xinference/constants.py): default ~/.xinference."""
    return Path(home or RuntimeSettings().xinference_home).expanduser()


def custom_model_files(home: str | Path | None = None) -> list[CustomModelFile]:
    """Every custom model JSON under the home, v2 first; a v1 file v2 already has is skipped."""
    root = xinference_home(home) / "model"
    found: dict[tuple[str, str], CustomModelFile] = {}
    for base in (root / "v2", root):
        for kind in IMPORTABLE_TYPES:
            for path in sorted((base / kind).glob("*.json")):
                key = (kind, path.stem)
                if key not in found:
                    found[key] = _read(path, kind)
    return list(found.values())


def _read(path: Path, kind: str) -> CustomModelFile:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return CustomModelFile(path, kind, path.stem, error=f"unreadable JSON: {exc}")
    if not isinstance(body, dict):
        return CustomModelFile(path, kind, path.stem, error="not a JSON object")
    return CustomModelFile(path, kind, str(body.get("model_name") or path.stem), body)
