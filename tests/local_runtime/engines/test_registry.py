"""The engine registry: lazy table, availability with reasons, automatic choice, "why not" errors.

Most tests swap the table for engines defined here (one installed, one whose library is missing,
one whose match() refuses), so they do not depend on which real engines are installed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from local_runtime.engines import registry
from local_runtime.engines.base import Engine
from local_runtime.spec import ResolvedSpec


class _Ready(Engine):
    name = "llama.cpp"
    model_types = frozenset({"llm"})
    capabilities = frozenset({"chat"})
    requires = "json"


class _NotInstalled(Engine):
    name = "vllm"
    model_types = frozenset({"llm"})
    capabilities = frozenset({"chat"})
    requires = "no_such_library_for_modelport_tests"


class _Picky(Engine):
    name = "transformers"
    model_types = frozenset({"llm"})
    capabilities = frozenset({"chat"})
    requires = "json"
    refusal: ClassVar[str] = "transformers needs a tokenizer.json beside the weights"

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        return False, cls.refusal


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("modelport_test_engines")
    module.Ready = _Ready  # type: ignore[attr-defined]
    module.NotInstalled = _NotInstalled  # type: ignore[attr-defined]
    module.Picky = _Picky  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelport_test_engines", module)
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)  # only the engines defined here

    def entry(name: str, cls: str, formats: str) -> registry.EngineEntry:
        return registry.EngineEntry(
            name, "modelport_test_engines", cls, frozenset({"llm"}), frozenset(formats.split())
        )

    monkeypatch.setattr(
        registry,
        "ENGINES",
        (
            entry("llama.cpp", "Ready", "gguf"),
            entry("vllm", "NotInstalled", "pytorch awq"),
            entry("transformers", "Picky", "pytorch"),
            registry.EngineEntry(
                "ghost", "local_runtime.engines.no_such_module", "Ghost",
                frozenset({"llm"}), frozenset({"gguf"}),
            ),
        ),
    )  # fmt: skip


def _spec(fmt: str = "pytorch", kind: str = "llm", path: str = "/nonexistent") -> ResolvedSpec:
    return ResolvedSpec(
        uid="m", model_name="m", model_type=kind, engine="", model_format=fmt, model_path=path
    )  # type: ignore[arg-type]


# --- the real table ----------------------------------------------------------------------------
def test_real_table_lists_every_engine_module() -> None:
    modules = {(e.name, e.module.rsplit(".", 1)[1], e.cls) for e in registry.ENGINES}
    assert modules == {
        ("llama.cpp", "llama_cpp", "LlamaCppEngine"),
        ("vllm", "vllm", "VllmEngine"),
        ("transformers", "transformers", "TransformersEngine"),
        ("sentence_transformers", "sentence_transformers", "SentenceTransformersEngine"),
        ("sentence_transformers", "rerank", "CrossEncoderEngine"),
        ("faster_whisper", "faster_whisper", "FasterWhisperEngine"),
        ("diffusers", "diffusers", "DiffusersEngine"),
        ("piper", "tts_piper", "PiperEngine"),
    }


def test_fake_engine_is_not_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the tests' plugin setting nothing lists or runs the test double."""
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    assert "fake" not in registry.names()
    assert all(row["name"] != "fake" for row in registry.available_engines())
    with pytest.raises(KeyError, match="unknown engine 'fake'"):
        registry.get("fake", "llm")
    assert not (Path(registry.__file__).parent / "fake.py").exists()


def test_plugin_engine_joins_the_table_only_when_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(registry.PLUGINS_ENV, "fake=tests.support.fake_engine:FakeEngine")
    assert registry.get("fake", "image").__name__ == "FakeEngine"
    spec = _spec(fmt="gguf")
    assert registry.choose(spec, requested_engine="fake") == "fake"
    assert registry.choose(spec) != "fake"  # never picked automatically
    monkeypatch.setenv(registry.PLUGINS_ENV, "fake=no-colon")
    with pytest.raises(ValueError, match=r"name=package\.module:Class"):
        registry.names()


def test_real_table_names_agree_with_importable_classes() -> None:
    """An engine class that exists must carry the name the table gives it (rerank aside)."""
    for entry in registry.ENGINES:
        cls, _ = registry._load(entry)
        if cls is not None and not entry.module.endswith(".rerank"):
            assert (entry.name, entry.model_types <= cls.model_types) == (cls.name, True)


def test_aliases_reach_the_same_entry() -> None:
    for alias in ("llama-cpp", "llamacpp", "xllamacpp", "llama_cpp"):
        assert [e.name for e in registry.entries(alias)] == ["llama.cpp"]
    assert [e.name for e in registry.entries("vLLM")] == ["vllm"]
    assert [e.cls for e in registry.entries("sentence-transformers")] == [
        "SentenceTransformersEngine",
        "CrossEncoderEngine",
    ]
    assert registry.get("fake").name == "fake"
    with pytest.raises(KeyError, match="unknown engine 'ollama'"):
        registry.get("ollama")


def test_available_engines_gives_reasons() -> None:
    rows = {(r["name"], tuple(r["model_types"])): r for r in registry.available_engines()}  # type: ignore[arg-type]
    assert rows[("fake", ("audio", "embedding", "image", "llm", "rerank"))]["available"] is True
    for row in rows.values():
        assert row["available"] or row["reason"], row


# --- with the test table -----------------------------------------------------------------------
def test_unimportable_module_is_unavailable_with_reason(table: None) -> None:
    rows = {r["name"]: r for r in registry.available_engines()}
    assert rows["llama.cpp"]["available"] is True
    assert rows["vllm"]["available"] is False
    assert "pip install 'modelport[vllm]'" in str(rows["vllm"]["reason"])
    assert rows["ghost"]["available"] is False
    assert "local_runtime.engines.no_such_module cannot be imported" in str(rows["ghost"]["reason"])
    assert set(registry.engine_classes()) == {"llama.cpp", "vllm", "transformers"}
    with pytest.raises(KeyError, match="cannot be imported"):
        registry.get("ghost")


def test_choose_by_format(table: None) -> None:
    assert registry.choose(_spec("gguf")) == "llama.cpp"


def test_choose_collects_every_candidates_reason(table: None) -> None:
    with pytest.raises(registry.EngineChoiceError) as err:
        registry.choose(_spec("pytorch"), device="cuda")
    message = str(err.value)
    assert message.startswith(
        "no engine can serve m (llm, pytorch) here: vllm: vllm is not installed"
    )
    assert "transformers: transformers needs a tokenizer.json beside the weights" in message
    # a plan (no install check) still picks by format and device
    assert registry.choose(_spec("pytorch"), device="cuda", installed_only=False) == "vllm"


def test_requested_engine_must_fit(table: None) -> None:
    with pytest.raises(registry.EngineChoiceError, match=r"needs a tokenizer\.json"):
        registry.choose(_spec("pytorch"), "Transformers")
    with pytest.raises(registry.EngineChoiceError) as err:
        registry.choose(_spec("pytorch"), "llama-cpp")
    assert str(err.value) == (
        "llama.cpp serves only GGUF files; this model is PyTorch/safetensors weights "
        "(use the transformers or vllm engine)"
    )
    with pytest.raises(registry.EngineChoiceError, match="unknown engine 'tgi'"):
        registry.choose(_spec("gguf"), "tgi")


def test_default_engine_of_a_spec_goes_first(table: None) -> None:
    assert registry.choose(_spec("gguf"), default_engine="ghost", installed_only=False) == "ghost"
    assert registry.choose(_spec("gguf"), default_engine="ghost") == "llama.cpp"


def test_why_not_names_what_the_folder_holds(tmp_path: pytest.TempPathFactory) -> None:
    folder = tmp_path / "m"  # type: ignore[operator]
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    ok, reason = registry.static_match("llama.cpp", "llm", "pytorch", path=str(folder))
    assert (ok, reason) == (
        False,
        "llama.cpp serves only GGUF files; this folder has safetensors "
        "(use the transformers or vllm engine)",
    )
    ok, reason = registry.static_match("diffusers", "audio", "ct2")
    assert (ok, reason) == (False, "diffusers serves image models, not audio (use faster_whisper)")
    assert registry.static_match("Transformers", "embedding", "pytorch") == (True, "")
