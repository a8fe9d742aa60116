"""The model catalog: families users launch by name, built-in (YAML) and custom (JSON).

Built-in families live in `config/catalog/*.yaml`, one file per group, so a new family is a reviewed
data change, not code. Custom registrations are persisted one JSON file per model under
`<MODELPORT_HOME>/custom_models/<type>/<name>.json`, the layout Xinference uses, so they survive a
restart and can be copied between hosts. Both are validated by the same pydantic models (schema.py).
The built-in YAML is parsed with libyaml's C loader when PyYAML has it: the catalog holds thousands
of specs and is read at every start and by the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

try:  # libyaml's parser, when PyYAML was built with it: several times faster on this catalog
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader

from local_runtime import files
from local_runtime.catalog.schema import CatalogError, Family, parse_family
from local_runtime.spec import TYPE_ALIASES

# config/catalog of the checkout, shipped in the package (a symlink the wheel resolves)
BUILTIN_CATALOG_DIR = Path(__file__).resolve().parent.parent / "builtin_catalog"


def load_yaml_dir(directory: Path) -> list[Family]:
    result: list[Family] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SafeLoader) or {}
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
