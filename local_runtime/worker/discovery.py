"""Which engine class the worker instantiates for its spec.

The registry (`local_runtime.engines.registry`) is the one table of engines; the worker asks it by
`(spec.engine, spec.model_type)`, because "sentence_transformers" names both the embedding and
the rerank engine (as in Xinference). `--engine-class pkg.module:Class` bypasses it, for engines
that live outside this package (tests, plugins).
"""

from __future__ import annotations

import importlib

from local_runtime.engines.base import Engine
from local_runtime.spec import ResolvedSpec


def import_engine_class(path: str) -> type[Engine]:
    """Import `package.module:ClassName` (the worker's --engine-class override)."""
    module_name, _, class_name = path.partition(":")
    if not class_name:
        raise ValueError(f"engine class must look like 'package.module:Class', got {path!r}")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise ValueError(f"{path} is not an Engine subclass")
    return cls


def find_engine_class(spec: ResolvedSpec) -> type[Engine]:
    from local_runtime.engines import registry

    try:
        return registry.class_for(spec)
    except KeyError as exc:
        raise LookupError(exc.args[0] if exc.args else str(exc)) from exc
