"""LaunchSpec -> ResolvedSpec: the catalog entry, its files and the engine, or a clear refusal.

The supervisor calls `resolve()` before starting a worker so every mistake a user can make
(a misspelt name, a size that does not exist, an engine that cannot read the files, files that
are not there and cannot be fetched) is answered at once with what exists instead, never by a
worker that dies while loading.
"""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass
from pathlib import Path

from local_runtime import files, memory
from local_runtime.catalog import Catalog, Family, ModelSpec, parse_size
from local_runtime.engines import registry
from local_runtime.engines.base import SPEECH
from local_runtime.settings import RuntimeSettings
from local_runtime.spec import FORMAT_ALIASES, TYPE_ALIASES, LaunchSpec, ResolvedSpec

TEXT2AUDIO = "text2audio"  # Xinference's ability of a speech model


class LaunchError(Exception):
    """A launch that cannot go ahead; `message` is meant for the user as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def default_device() -> str:
    """ "cuda" when an NVIDIA driver is present (without importing torch), else "cpu".

    MODELPORT_DEVICE overrides it, e.g. to keep a GPU host's models on the CPU.
    """
    forced = RuntimeSettings().device
    if forced:
        return forced
    if Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi"):
        return "cuda"
    return "cpu"


def find_family(catalog: Catalog, name: str) -> Family:
    family = catalog.get(name)
    if family is not None:
        return family
    close = difflib.get_close_matches(name.lower(), [n.lower() for n in catalog.names()], n=5)
    names = {n.lower(): n for n in catalog.names()}
    hint = f"; did you mean {', '.join(names[c] for c in close)}?" if close else ""
    raise LaunchError(f"unknown model {name!r}{hint} (see `modelport list --all`)")


def _norm_format(value: str | None) -> str | None:
    if value is None:
        return None
    return FORMAT_ALIASES.get(value, value).lower()


def _norm_size(value: float | str | None) -> float | None:
    try:
        return parse_size(value)
    except ValueError:
        raise LaunchError(f"model size {value!r} is not a number of billions") from None


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _label(spec: ModelSpec) -> str:
    size = f" {spec.size_label}B" if spec.size_in_billions is not None else ""
    return f"{spec.format}{size} [{', '.join(spec.quantizations)}]"


def pick_spec(
    family: Family, fmt: str | None, size: float | None, quantization: str | None
) -> tuple[ModelSpec, str]:
    """The spec and quantization to launch; defaults are the smallest size, first quantization."""
    specs = family.specs
    if fmt is not None:
        specs = [s for s in specs if s.format == fmt]
        if not specs:
            raise LaunchError(
                f"{family.name} has no {fmt} format; formats: {', '.join(family.formats())}"
            )
    if size is not None:
        sized = [
            s
            for s in specs
            if s.size_in_billions is not None and abs(s.size_in_billions - size) < 1e-6
        ]
        if not sized:
            sizes = sorted(
                {s.size_label for s in specs if s.size_in_billions is not None}, key=float
            )
            what = f" in {fmt}" if fmt else ""
            raise LaunchError(
                f"{family.name} has no {size:g}B size{what}; sizes: {', '.join(sizes) or 'none'}"
            )
        specs = sized
    if quantization is not None:
        wanted = quantization.lower()
        quantized = [(s, q) for s in specs for q in s.quantizations if q.lower() == wanted]
        if not quantized:
            raise LaunchError(
                f"{family.name} has no quantization {quantization!r} for this choice; "
                f"specs: {'; '.join(_label(s) for s in specs)}"
            )
        # a user who gave no format prefers the first listed (the catalog's own order)
        return quantized[0]
    if size is None:
        smallest = min((s.size_in_billions or 0.0) for s in specs)
        specs = [s for s in specs if (s.size_in_billions or 0.0) == smallest]
    return specs[0], specs[0].quantizations[0]


def resolve(
    spec: LaunchSpec,
    catalog: Catalog,
    *,
    home: str | Path | None = None,
    device: str | None = None,
    download: bool = True,
    on_progress: files.ProgressCallback | None = None,
) -> ResolvedSpec:
    """Resolve a launch; raise LaunchError with a message the user can act on.

    With `download=False` nothing is fetched and the engine is chosen from the table alone (the
    path is where the files are or would go): a plan, for dry runs and remote nodes.
    """
    return _resolve(spec, catalog, home, device, download, on_progress)[0]


def _resolve(
    spec: LaunchSpec,
    catalog: Catalog,
    home: str | Path | None,
    device: str | None,
    download: bool,
    on_progress: files.ProgressCallback | None,
) -> tuple[ResolvedSpec, ModelSpec, files.ResolvedFiles]:
    family = find_family(catalog, spec.model_name)
    wanted_type = TYPE_ALIASES.get(spec.model_type or "", spec.model_type)
    if wanted_type and wanted_type != family.type:
        raise LaunchError(
            f"{family.name} is {_a(family.type)} {family.type} model, not {wanted_type} "
            "(drop model_type or fix it)"
        )
    fmt = _norm_format(spec.model_format)
    path_quant: str | None = None
    if spec.model_path:
        try:
            info = files.inspect_path(spec.model_path)
        except files.ModelFilesError as exc:
            raise LaunchError(str(exc)) from None
        if fmt is not None and fmt != info.format:
            raise LaunchError(
                f"model_format is {fmt} but {info.path} holds {info.evidence} ({info.format})"
            )
        fmt, path_quant = info.format, info.quantization
    chosen, quant = pick_spec(
        family, fmt, _norm_size(spec.model_size_in_billions), spec.quantization
    )
    quant = path_quant or quant
    try:
        located = files.resolve_files(
            family,
            chosen,
            quant,
            home=home,
            model_path=spec.model_path,
            download=download,
            on_progress=on_progress,
        )
    except files.ModelFilesError as exc:
        raise LaunchError(str(exc)) from None
    device = device or default_device()
    resolved = ResolvedSpec(
        uid=spec.uid,
        model_name=family.name,
        model_type=family.type,
        engine="",
        model_format=chosen.format,
        model_path=str(located.path),
        model_size_in_billions=chosen.size_in_billions,
        quantization=quant,
        abilities=list(family.abilities),
        context_length=family.context_length,
        dimensions=family.dimensions,
        max_tokens=family.max_tokens,
        device=device,
        gpu_idx=spec.gpu_idx,
        trust_remote_code=spec.trust_remote_code,
        engine_options=dict(spec.engine_options),
    )
    try:
        engine = registry.choose(
            resolved,
            spec.model_engine,
            device=device,
            default_engine=chosen.default_engine,
            installed_only=download,
        )
    except registry.EngineChoiceError as exc:
        raise LaunchError(str(exc)) from None
    resolved = resolved.model_copy(update={"engine": engine})
    if download:  # the files are here: a speech model's voices are read from them
        engine_cls = registry.class_for(resolved)
        resolved.voices = engine_cls.voices(resolved)
        if SPEECH in engine_cls.capabilities and TEXT2AUDIO not in resolved.abilities:
            # a voice registered from a bare folder says nothing of itself: it speaks (and the
            # FastGPT export and /v1/models must say so, Xinference's way)
            resolved.abilities.append(TEXT2AUDIO)
    return resolved, chosen, located


def plan(
    spec: LaunchSpec, catalog: Catalog, *, home: str | Path | None = None
) -> files.ResolvedFiles:
    """Where a launch's files are or would go, with hub id and file names (for `--dry-run`)."""
    family = find_family(catalog, spec.model_name)
    chosen, quant = pick_spec(
        family,
        _norm_format(spec.model_format),
        _norm_size(spec.model_size_in_billions),
        spec.quantization,
    )
    try:
        return files.resolve_files(
            family, chosen, quant, home=home, model_path=spec.model_path, download=False
        )
    except files.ModelFilesError as exc:
        raise LaunchError(str(exc)) from None


@dataclass(frozen=True)
class LaunchPlan:
    """What a launch would run, found without downloading or loading anything.

    `files.origin` says whether the files are here (pypi, cache, explicit) or would be fetched
    (planned, from `files.hub` / `files.repo_id`); `memory` is the GPU (or RAM) estimate the
    placement packs by; `download_bytes` the estimated download, 0 when nothing is fetched.
    """

    resolved: ResolvedSpec
    files: files.ResolvedFiles
    memory: memory.MemoryEstimate
    download_bytes: int | None

    @property
    def engine(self) -> str:
        return self.resolved.engine


def launch_plan(
    spec: LaunchSpec,
    catalog: Catalog,
    *,
    home: str | Path | None = None,
    device: str | None = None,
) -> LaunchPlan:
    """Resolve a launch into engine, files and memory without fetching a byte.

    The engine comes from the engine table alone (not whether its library is installed here), so
    a plan made on a laptop holds for the GPU node that will run it.
    """
    from local_runtime.catalog.offline import download_bytes

    resolved, chosen, located = _resolve(spec, catalog, home, device, False, None)
    estimate = memory.estimate(
        model_path=located.path if located.origin != "planned" else None,
        model_format=resolved.model_format,
        size_in_billions=resolved.model_size_in_billions,
        quantization=resolved.quantization,
        context_length=resolved.context_length,
    )
    size = 0 if located.origin != "planned" else download_bytes(chosen, resolved.quantization)
    return LaunchPlan(resolved, located, estimate, size)
