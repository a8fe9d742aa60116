"""The declared types are FastGPT's: its own sample files validate against them, and every key
FastGPT's samples give an entry that the types require is in our export too."""

from __future__ import annotations

import pytest

from gateway.export import build_config_json, build_model_config
from gateway.export.fastgpt_types import (
    CONFIG_LIST_TYPES,
    METADATA_TYPES,
    WHISPER_TYPES,
    LegacyReRankModelItem,
    SystemModelItem,
    V4819ReRankModelItem,
    required_fields,
)
from tests.gateway.export.fastgpt_fixtures import (
    API_KEY,
    BASE_URL,
    CONFIG_SAMPLES,
    SAMPLES,
    by_model,
    load_sample,
    seed_models,
)


def _eras(sample_name: str) -> slice:
    """4.8.19 samples satisfy both eras' types; older ones only the legacy types."""
    return slice(None) if "4.8.19" in sample_name else slice(0, 1)


@pytest.mark.parametrize("path", CONFIG_SAMPLES, ids=lambda p: p.name)
def test_fastgpt_sample_configs_validate_against_the_types(path):
    sample = load_sample(path.name)
    checked = 0
    for key, types in CONFIG_LIST_TYPES.items():
        for entry in sample[key]:
            for cls in types[_eras(path.name)]:
                cls.model_validate(entry)
                checked += 1
    for cls in WHISPER_TYPES[_eras(path.name)]:
        cls.model_validate(sample["whisperModel"])
    assert checked > 0


def test_rerank_doc_examples_validate_against_4819_types():
    examples = load_sample("rerank-config-docs-v4.8.19.json5")
    entries = [e for doc in examples for e in doc.get("reRankModels", [])]
    assert len(entries) == 2
    for entry in entries:
        V4819ReRankModelItem.model_validate(entry)
    # The legacy type needs charsPointsPrice, which one documented example lacks: exports carry it.
    assert "charsPointsPrice" in required_fields(LegacyReRankModelItem)


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("provider-*.json")))
def test_builtin_provider_models_validate_against_metadata_types(name):
    sample = load_sample(name)
    for entry in sample["list"]:
        METADATA_TYPES[entry["type"]].model_validate({**entry, "provider": sample["provider"]})


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("model-config-docs-*.json5")))
def test_doc_model_config_examples_validate_once_typed(name):
    examples = load_sample(name)
    # FastGPT's docs omit metadata.type for the llm and embedding examples (they fail to import).
    for item, kind in zip(examples, ["llm", "embedding", "rerank", "tts", "stt"], strict=True):
        assert item["metadata"].get("type", kind) == kind
        SystemModelItem.model_validate({**item, "metadata": {"type": kind, **item["metadata"]}})


@pytest.mark.parametrize("path", CONFIG_SAMPLES, ids=lambda p: p.name)
def test_export_has_every_required_key_the_samples_have(path):
    sample = load_sample(path.name)
    ours = build_config_json(seed_models(), base_url=BASE_URL, api_key=API_KEY, overrides={})
    for key, types in CONFIG_LIST_TYPES.items():
        required = set().union(*(required_fields(cls) for cls in types))
        sample_keys = set().union(*(set(e) for e in sample[key])) if sample[key] else set()
        assert ours[key], f"the seed models give no {key} entry to compare"
        for entry in ours[key]:
            missing = (sample_keys & required) - set(entry)
            assert not missing, f"{key} {entry['model']} lacks {missing}"
    whisper_required = set().union(*(required_fields(cls) for cls in WHISPER_TYPES))
    assert (set(sample["whisperModel"]) & whisper_required) <= set(ours["whisperModel"])


def test_model_config_has_every_key_the_docs_examples_require():
    items = by_model(
        build_model_config(seed_models(), base_url=BASE_URL, api_key=API_KEY, overrides={})
    )
    examples = load_sample("model-config-docs-v4.8.23.json5")
    ours_by_type = {item["metadata"]["type"]: item["metadata"] for item in items.values()}
    for example, kind in zip(examples, ["llm", "embedding", "rerank", "tts", "stt"], strict=True):
        required = required_fields(METADATA_TYPES[kind])
        missing = (set(example["metadata"]) & required) - set(ours_by_type[kind])
        assert not missing, f"{kind}: {missing}"
        # And every key FastGPT documents for the type is one our types know.
        assert set(example["metadata"]) <= set(METADATA_TYPES[kind].model_fields)
