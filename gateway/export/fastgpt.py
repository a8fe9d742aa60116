"""The FastGPT bridge: what the CLI (`modelport export fastgpt`) and the admin API
(`GET /api/export/fastgpt?format=config|models`) call.

- `build_config_json`: FastGPT <= 4.8.19, the whole config.json (optionally merged into a
  user's file read with `load_user_config`).
- `build_model_config`: FastGPT >= 4.8.20, `[{model, metadata}]` for the model page's import.
- `push_models`: the same entries sent to a running FastGPT, one `model/update` each.
- `export_fastgpt`: either format by name, for one-line wiring.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from gateway.export.fastgpt_config import build_config_json, dump_json, load_user_config
from gateway.export.fastgpt_models import build_model_config
from gateway.export.fastgpt_push import FastGPTPushError, PushResult, push_models
from gateway.export.fastgpt_types import FastGPTExportError
from gateway.model_info import ServedModel

ExportFormat = Literal["config", "models"]

__all__ = [
    "ExportFormat",
    "FastGPTExportError",
    "FastGPTPushError",
    "PushResult",
    "build_config_json",
    "build_model_config",
    "dump_json",
    "export_fastgpt",
    "load_user_config",
    "push_models",
]


def export_fastgpt(
    models: Iterable[ServedModel],
    *,
    format: ExportFormat,
    base_url: str,
    api_key: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    existing: Mapping[str, Any] | None = None,
) -> dict[str, Any] | list[dict[str, Any]]:
    """config.json (format="config", merged into `existing` when given) or the model-config list
    (format="models"; `existing` does not apply there and is refused)."""
    if format == "config":
        return build_config_json(
            models, base_url=base_url, api_key=api_key, overrides=overrides, existing=existing
        )
    if format == "models":
        if existing is not None:
            raise FastGPTExportError("merging into an existing file is for format=config only")
        return build_model_config(models, base_url=base_url, api_key=api_key, overrides=overrides)
    raise FastGPTExportError(f"unknown FastGPT export format {format!r}: use config or models")
