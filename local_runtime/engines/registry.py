"""Which engines exist, whether they can run here, and which one serves a resolved spec.

Engine modules are imported lazily from a static table, so a missing module or library makes that
engine *unavailable with a reason* instead of breaking the catalog or the gateway. The table also
states what each engine serves (types and formats) so a mismatch is explained in the user's terms
("llama.cpp serves only GGUF files; this folder has safetensors (use the transformers or vllm
engine)") even before the engine's own `match()` runs, and even when its module cannot be imported.

Two entries share the name "sentence_transformers" (embedding and rerank), as in Xinference, so
look classes up with the model type: `get(name, model_type)` or `class_for(resolved)`.

Engines from outside this package join the table through `$MODELPORT_ENGINE_PLUGINS`
("name=package.module:Class", comma-separated): they are never chosen automatically, only when a
launch names them. The test suite registers its weightless `fake` engine this way
(tests/support/fake_engine.py), so users never see a test double in `modelport engines`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from local_runtime.settings import RuntimeSettings
from local_runtime.spec import ENGINE_ALIASES, ResolvedSpec

if TYPE_CHECKING:
    from local_runtime.engines.base import Engine
    from local_runtime.files import PathInfo

FORMAT_WORDS = {
    "gguf": "GGUF files",
    "pytorch": "PyTorch/safetensors weights",
    "awq": "AWQ-quantised weights",
    "gptq": "GPTQ-quantised weights",
    "ct2": "CTranslate2 models",
    "diffusers": "diffusers pipelines",
    "onnx": "ONNX models",
}


class EngineChoiceError(ValueError):
    """No engine can serve a spec, or the requested one cannot; the message lists why not."""


@dataclass(frozen=True)
class EngineEntry:
    name: str
    module: str
    cls: str
    model_types: frozenset[str]
    formats: frozenset[str]
    auto: bool = True  # picked automatically; plugins are only used when asked for


def _entry(
    name: str, module: str, cls: str, types: str, formats: str, auto: bool = True
) -> EngineEntry:
    return EngineEntry(
        name,
        f"local_runtime.engines.{module}",
        cls,
        frozenset(types.split()),
        frozenset(formats.split()),
        auto,
    )


_ALL_TYPES = "llm embedding rerank audio image"
_ALL_FORMATS = "gguf pytorch awq gptq ct2 diffusers onnx"
ENGINES: tuple[EngineEntry, ...] = (
    _entry("llama.cpp", "llama_cpp", "LlamaCppEngine", "llm", "gguf"),
    _entry("vllm", "vllm", "VllmEngine", "llm", "pytorch awq gptq"),
    _entry("transformers", "transformers", "TransformersEngine", "llm embedding",
           "pytorch awq gptq"),
    _entry("sentence_transformers", "sentence_transformers", "SentenceTransformersEngine",
           "embedding", "pytorch"),
    _entry("sentence_transformers", "rerank", "CrossEncoderEngine", "rerank", "pytorch"),
    _entry("faster_whisper", "faster_whisper", "FasterWhisperEngine", "audio", "ct2"),
    _entry("diffusers", "diffusers", "DiffusersEngine", "image", "diffusers"),
    _entry("piper", "tts_piper", "PiperEngine", "audio", "onnx"),
)  # fmt: skip


PLUGINS_ENV = "MODELPORT_ENGINE_PLUGINS"


def plugin_entries() -> tuple[EngineEntry, ...]:
    """The engines `$MODELPORT_ENGINE_PLUGINS` adds, read at each use (workers inherit it)."""
    entries: list[EngineEntry] = []
    for item in filter(None, (s.strip() for s in RuntimeSettings().engine_plugins.split(","))):
        name, _, target = item.partition("=")
        module, _, cls = target.partition(":")
        if not (name and module and cls):
            raise ValueError(
                f"{PLUGINS_ENV}: {item!r} should look like 'name=package.module:Class'"
            )
        entries.append(
            EngineEntry(
                name.strip(),
                module.strip(),
                cls.strip(),
                frozenset(_ALL_TYPES.split()),
                frozenset(_ALL_FORMATS.split()),
                auto=False,
            )
        )
    return tuple(entries)


def table() -> tuple[EngineEntry, ...]:
    """The built-in engines, then the plugins."""
    return ENGINES + plugin_entries()


def normalise(name: str) -> str:
    """Accept Xinference's spellings ("vLLM", "Transformers", "llama-cpp")."""
    name = name.strip()
    return ENGINE_ALIASES.get(name, name)


def names() -> list[str]:
    return list(dict.fromkeys(entry.name for entry in table()))


def entries(name: str) -> list[EngineEntry]:
    wanted = normalise(name).lower()
    return [entry for entry in table() if entry.name.lower() == wanted]


def _load(entry: EngineEntry) -> tuple[type[Engine] | None, str]:
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        return None, f"{entry.name} engine module {entry.module} cannot be imported ({exc})"
    cls = getattr(module, entry.cls, None)
    if cls is None:
        return None, f"{entry.module} has no class {entry.cls}"
    return cls, ""


def engine_classes() -> dict[str, type[Engine]]:
    """Importable engine classes by `name` (rerank's under "sentence_transformers:rerank")."""
    result: dict[str, type[Engine]] = {}
    for entry in table():
        cls, _ = _load(entry)
        if cls is not None:
            key = (
                entry.name if entry.name not in result else f"{entry.name}:{min(entry.model_types)}"
            )
            result[key] = cls
    return result


def get(name: str, model_type: str | None = None) -> type[Engine]:
    """The class of engine `name` (serving `model_type`); KeyError with the reason otherwise."""
    found = entries(name)
    if model_type is not None:
        found = [e for e in found if model_type in e.model_types] or found
    if not found:
        raise KeyError(f"unknown engine {name!r} (known: {', '.join(names())})")
    cls, reason = _load(found[0])
    if cls is None:
        raise KeyError(reason)
    return cls


def class_for(spec: ResolvedSpec) -> type[Engine]:
    return get(spec.engine, spec.model_type)


def entry_available(entry: EngineEntry) -> tuple[bool, str]:
    cls, reason = _load(entry)
    if cls is None:
        return False, reason
    return cls.available()


def available_engines() -> list[dict[str, object]]:
    """Every engine with whether it runs here and why not: for `modelport engines` and the UI."""
    rows: list[dict[str, object]] = []
    for entry in table():
        ok, reason = entry_available(entry)
        rows.append(
            {
                "name": entry.name,
                "model_types": sorted(entry.model_types),
                "formats": sorted(entry.formats),
                "available": ok,
                "reason": reason,
            }
        )
    return rows


def _serving(model_type: str, fmt: str) -> list[str]:
    return list(
        dict.fromkeys(
            e.name for e in table() if e.auto and model_type in e.model_types and fmt in e.formats
        )
    )


def _has(path: str | Path | None) -> str:
    """What a path holds, in a few words, for a "why not" message; "" when unknown."""
    if not path:
        return ""
    from local_runtime.files import ModelFilesError, inspect_path

    try:
        info = inspect_path(path)
    except ModelFilesError:
        return ""
    return _describe(info)


def _describe(info: PathInfo) -> str:
    where = "this file" if info.path.is_file() else "this folder"
    return f"{where} has {info.evidence}"


def static_match(
    name: str, model_type: str, fmt: str, info: PathInfo | None = None, path: str | None = None
) -> tuple[bool, str]:
    """Whether engine `name` serves this type and format, from the table alone."""
    found = entries(name)
    if not found:
        return False, f"unknown engine {name!r} (known: {', '.join(names())})"
    engine = found[0].name
    if not any(model_type in e.model_types for e in found):
        served = sorted({t for e in found for t in e.model_types})
        others = sorted(_serving(model_type, fmt))
        hint = f" (use {' or '.join(others)})" if others else ""
        return False, f"{engine} serves {', '.join(served)} models, not {model_type}{hint}"
    entry = next(e for e in found if model_type in e.model_types)
    if fmt in entry.formats:
        return True, ""
    accepted = sorted(entry.formats)
    what = (
        f"only {FORMAT_WORDS.get(accepted[0], accepted[0])}"
        if len(accepted) == 1
        else " or ".join(FORMAT_WORDS.get(f, f) for f in accepted)
    )
    has = _describe(info) if info is not None else _has(path)
    has = has or f"this model is {FORMAT_WORDS.get(fmt, fmt)}"
    others = sorted(_serving(model_type, fmt))
    hint = f" (use the {' or '.join(others)} engine)" if others else ""
    return False, f"{engine} serves {what}; {has}{hint}"


def check(entry: EngineEntry, spec: ResolvedSpec, installed_only: bool = True) -> tuple[bool, str]:
    """Table, availability and the engine's own `match()`, in that order.

    With `installed_only=False` only the table is consulted: for plans and dry runs on a machine
    that will not run the model itself.
    """
    if spec.model_type not in entry.model_types or spec.model_format not in entry.formats:
        return static_match(entry.name, spec.model_type, spec.model_format, path=spec.model_path)
    if not installed_only:
        return True, ""
    cls, reason = _load(entry)
    if cls is None:
        return False, reason
    ok, reason = cls.available()
    if not ok:
        return False, reason
    return cls.match(spec)


def _preference(spec: ResolvedSpec, device: str, default_engine: str | None) -> list[str]:
    fmt, kind = spec.model_format, spec.model_type
    if fmt == "gguf":
        order = ["llama.cpp"]
    elif fmt in ("awq", "gptq"):
        order = ["vllm", "transformers"]
    elif kind == "llm":
        order = ["vllm", "transformers"] if device == "cuda" else ["transformers", "vllm"]
    elif kind == "embedding":
        order = ["sentence_transformers", "transformers"]
    else:
        order = _serving(kind, fmt)
    order += [name for name in _serving(kind, fmt) if name not in order]
    if default_engine:
        order.insert(0, normalise(default_engine))
    return list(dict.fromkeys(order))


def choose(
    spec: ResolvedSpec,
    requested_engine: str | None = None,
    device: str = "cpu",
    default_engine: str | None = None,
    installed_only: bool = True,
) -> str:
    """Pick the engine for a spec (its `engine` field is ignored), or explain why none fits.

    A requested engine must fit, with no silent substitution; otherwise the first engine in the
    preference order for format, type and device that is installed and matches wins.
    """
    if requested_engine:
        found = [e for e in entries(requested_engine) if spec.model_type in e.model_types]
        if not found:
            _, reason = static_match(
                requested_engine, spec.model_type, spec.model_format, path=spec.model_path
            )
            raise EngineChoiceError(reason)
        ok, reason = check(found[0], spec, installed_only)
        if not ok:
            raise EngineChoiceError(reason)
        return found[0].name
    reasons: list[str] = []
    for name in _preference(spec, device, default_engine):
        candidates = [e for e in entries(name) if spec.model_type in e.model_types]
        for entry in candidates:
            ok, reason = check(entry, spec, installed_only)
            if ok:
                return entry.name
            reasons.append(f"{entry.name}: {reason}")
    if not reasons:
        raise EngineChoiceError(
            f"no engine serves {spec.model_type} models in {spec.model_format} format"
        )
    raise EngineChoiceError(
        f"no engine can serve {spec.model_name} ({spec.model_type}, {spec.model_format}) here: "
        + "; ".join(reasons)
    )
