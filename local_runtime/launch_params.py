"""Xinference's launch parameters -> LaunchSpec: how every launch surface reads a launch body.

Shared by the Xinference-shaped API, the admin API and the UI (through gateway.runtime_host), and
usable by any program that takes Xinference launch bodies.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from local_runtime.resolve import LaunchError
from local_runtime.spec import LaunchSpec

# Xinference launch fields the spec does not carry: no meaning here (virtualenvs, PEFT, ...), or
# handled by launch_model itself (worker_ip: resolved to the node advertising that host).
IGNORED_LAUNCH_FIELDS = frozenset(
    {
        "n_worker",
        "worker_ip",
        "replica_config",
        "request_limits",
        "peft_model_config",
        "enable_virtual_env",
        "virtual_env_packages",
        "virtual_env_find_links",
        "envs",
        "download_hub",
        "model_version",
        "model_hub",
        "xavier_config",
        "wait_ready",
    }
)


def launch_spec_from_xinference(body: Any) -> LaunchSpec:
    """Xinference launch parameters -> LaunchSpec; unknown non-null fields become engine options.

    The official client sends every parameter, most of them null, and passes its **kwargs
    (engine settings such as n_ctx) as top-level fields: nulls mean "default", extras go to the
    engine.
    """
    if not isinstance(body, dict):
        raise LaunchError("the launch body must be a JSON object")
    known = set(LaunchSpec.model_fields)
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in body.items():
        if value is None or key in IGNORED_LAUNCH_FIELDS:
            continue
        if key in known:
            fields[key] = value
        else:
            extra[key] = value
    if "n_gpu" in body and body["n_gpu"] is None:
        fields["n_gpu"] = None  # Xinference: null n_gpu means "CPU only", not "default"
    if isinstance(fields.get("gpu_idx"), int):
        fields["gpu_idx"] = [fields["gpu_idx"]]
    if isinstance(fields.get("n_gpu"), str) and fields["n_gpu"].isdigit():
        fields["n_gpu"] = int(fields["n_gpu"])
    if extra:
        options = fields.get("engine_options")
        fields["engine_options"] = {**extra, **(options if isinstance(options, dict) else {})}
    if not fields.get("model_name"):
        raise LaunchError("model_name is required")
    try:
        return LaunchSpec.model_validate(fields)
    except ValidationError as exc:
        raise LaunchError(f"bad launch parameters: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid launch parameters"
    e = errors[0]
    loc = ".".join(str(p) for p in e.get("loc", ()))
    return f"{loc}: {e.get('msg')}" if loc else str(e.get("msg"))
