"""Model-config JSON (FastGPT >= 4.8.20): `[{model, metadata}]` as FastGPT's importer needs it."""

from __future__ import annotations

import pytest

from gateway.export import FastGPTExportError, build_model_config, export_fastgpt
from gateway.export.fastgpt_types import METADATA_TYPES, PROVIDER_IDS, SystemModelItem
from tests.gateway.export.fastgpt_fixtures import API_KEY, BASE_URL, by_model, seed_models

EXPECTED_TYPES = {
    "qwen-chat": "llm",
    "small-chat": "llm",
    "remote-unknown": "llm",
    "deepseek-reasoner": "llm",
    "bge-m3": "embedding",
    "big-embed": "embedding",
    "bge-reranker": "rerank",
    "whisper": "stt",
    "cosy-tts": "tts",
}
PATHS = {
    "llm": "/v1/chat/completions",
    "embedding": "/v1/embeddings",
    "rerank": "/v1/rerank",
    "tts": "/v1/audio/speech",
    "stt": "/v1/audio/transcriptions",
}


def build(**kwargs):
    kwargs.setdefault("overrides", {})
    return build_model_config(seed_models(), base_url=BASE_URL, api_key=API_KEY, **kwargs)


def test_every_item_is_importable():
    items = build()
    assert items[0]["model"] == "qwen-chat"
    assert {i["model"]: i["metadata"]["type"] for i in items} == EXPECTED_TYPES
    for item in items:
        SystemModelItem.model_validate(item)
        meta = item["metadata"]
        METADATA_TYPES[meta["type"]].model_validate(meta)
        assert set(item) == {"model", "metadata"}
        assert meta["model"] == item["model"]
        assert meta["isActive"] is True and meta["isCustom"] is True
        assert meta["provider"] in PROVIDER_IDS
        assert meta["requestUrl"] == "http://modelport:3000" + PATHS[meta["type"]]
        assert meta["requestAuth"] == API_KEY


def test_llm_metadata_follows_the_served_models():
    served = {m.id: m for m in seed_models()}
    for item in build():
        meta = item["metadata"]
        if meta["type"] != "llm":
            continue
        m = served[item["model"]]
        assert meta["maxContext"] == (m.context_length or 4096)
        assert meta["vision"] is ("vision" in m.abilities)
        assert meta["toolChoice"] is ("tools" in m.abilities)
        assert meta["reasoning"] is ("reasoning" in m.abilities)
        assert meta["maxResponse"] + meta["quoteMaxToken"] < meta["maxContext"]
    primary = by_model(build())["qwen-chat"]["metadata"]
    for flag in ("datasetProcess", "usedInClassify", "usedInExtractFields", "usedInToolCall"):
        assert primary[flag] is True


def test_embedding_tts_and_stt_metadata():
    items = by_model(build())
    bge = items["bge-m3"]["metadata"]
    assert (bge["defaultToken"], bge["maxToken"]) == (512, 8192)
    assert "defaultConfig" not in bge
    assert items["big-embed"]["metadata"]["defaultConfig"] == {"dimensions": 1536}
    voices = items["cosy-tts"]["metadata"]["voices"]
    assert voices and all(set(v) == {"label", "value"} for v in voices)


def test_request_urls_can_be_left_to_fastgpts_env():
    for item in build(request_urls=False):
        assert "requestUrl" not in item["metadata"] and "requestAuth" not in item["metadata"]


def test_overrides_apply_to_metadata():
    items = by_model(
        build(overrides={"qwen-chat": {"name": "Qwen 14B", "isDefault": True, "isActive": False}})
    )
    meta = items["qwen-chat"]["metadata"]
    assert (meta["name"], meta["isDefault"], meta["isActive"]) == ("Qwen 14B", True, False)


def test_unknown_override_key_is_refused():
    with pytest.raises(FastGPTExportError, match="voicez"):
        build(overrides={"cosy-tts": {"voicez": []}})


def test_empty_voices_override_is_refused():
    # FastGPT throws "voice not found" for a TTS model without voices.
    with pytest.raises(FastGPTExportError, match="voices"):
        build(overrides={"cosy-tts": {"voices": []}})


def test_export_fastgpt_dispatches_by_format():
    common = {"base_url": BASE_URL, "api_key": API_KEY, "overrides": {}}
    assert export_fastgpt(seed_models(), format="models", **common) == build()
    config = export_fastgpt(seed_models(), format="config", **common)
    assert config["llmModels"][0]["model"] == "qwen-chat"
    with pytest.raises(FastGPTExportError, match="format"):
        export_fastgpt(seed_models(), format="yaml", **common)  # type: ignore[arg-type]
    with pytest.raises(FastGPTExportError, match="config only"):
        export_fastgpt(seed_models(), format="models", existing={}, **common)
