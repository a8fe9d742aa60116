"""config/modelport.yaml documents every setting of every process kind.

It ships in the wheel as the documented defaults: the gateway's (and a node's) keys as YAML keys,
the runtime's and a worker's environment-only switches by their variable names.
"""

from __future__ import annotations

import re

import pytest
from pydantic_settings import BaseSettings

from gateway.settings import DEFAULT_CONFIG, Settings
from local_runtime.settings import RuntimeSettings
from local_runtime.worker.settings import WorkerSettings


def _documented() -> tuple[set[str], str]:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    return set(re.findall(r"(?m)^#?\s?([a-z_][a-z0-9_]*):", text)), text


def _env_name(cls: type[BaseSettings], name: str) -> str:
    alias = cls.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"MODELPORT_{name.upper()}"


def test_every_gateway_setting_is_a_documented_key():
    keys, _ = _documented()
    missing = sorted(set(Settings.model_fields) - keys)
    assert not missing, f"add these to config/modelport.yaml: {missing}"


@pytest.mark.parametrize("cls", [RuntimeSettings, WorkerSettings])
def test_every_runtime_and_worker_setting_is_documented(cls: type[BaseSettings]):
    """A field shared with the gateway is documented as its key; the rest by variable name."""
    keys, text = _documented()
    missing = [
        _env_name(cls, name)
        for name in cls.model_fields
        if name not in keys and not re.search(rf"(?m)^#.*\b{_env_name(cls, name)}=", text)
    ]
    assert not missing, f"add these to config/modelport.yaml: {missing}"
