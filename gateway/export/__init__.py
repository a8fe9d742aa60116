"""Exports of the gateway's models to other systems' configuration formats (FastGPT)."""

from __future__ import annotations

from gateway.export.fastgpt import (
    FastGPTExportError,
    FastGPTPushError,
    PushResult,
    build_config_json,
    build_model_config,
    dump_json,
    export_fastgpt,
    load_user_config,
    push_models,
)

__all__ = [
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
