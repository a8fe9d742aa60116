"""config.json (FastGPT <= 4.8.19): values follow the served models, overrides, merge, files."""

from __future__ import annotations

import json

import pytest

from gateway.export import (
    FastGPTExportError,
    build_config_json,
    build_model_config,
    dump_json,
    load_user_config,
)
from gateway.export.fastgpt_types import CONFIG_LIST_TYPES, PROVIDER_IDS, WHISPER_TYPES
from gateway.model_info import ServedModel
from tests.gateway.export.fastgpt_fixtures import API_KEY, BASE_URL, by_model, seed_models

FLAGS = ("datasetProcess", "usedInClassify", "usedInExtractFields", "usedInToolCall")


def build(models=None, **kwargs):
    kwargs.setdefault("overrides", {})
    return build_config_json(
        seed_models() if models is None else models, base_url=BASE_URL, api_key=API_KEY, **kwargs
    )


def test_fresh_config_has_every_section_and_points_at_the_gateway():
    cfg = build()
    assert list(cfg) == [
        "feConfigs",
        "systemEnv",
        "llmModels",
        "vectorModels",
        "reRankModels",
        "audioSpeechModels",
        "whisperModel",
    ]
    env = cfg["systemEnv"]
    assert env["oneapiUrl"] == "http://modelport:3000/v1"
    assert env["chatApiKey"] == API_KEY
    for key in ("vectorMaxProcess", "qaMaxProcess", "tokenWorkers", "pgHNSWEfSearch"):
        assert isinstance(env[key], int)


def test_every_entry_satisfies_both_eras_types():
    cfg = build()
    for key, types in CONFIG_LIST_TYPES.items():
        for entry in cfg[key]:
            for cls in types:
                cls.model_validate(entry)
    for cls in WHISPER_TYPES:
        cls.model_validate(cfg["whisperModel"])


def test_llm_entries_follow_the_served_models():
    served = {m.id: m for m in seed_models()}
    llms = by_model(build()["llmModels"])
    assert set(llms) == {"qwen-chat", "small-chat", "remote-unknown", "deepseek-reasoner"}
    for model_id, e in llms.items():
        m = served[model_id]
        assert e["maxContext"] == (m.context_length or 4096)
        assert e["vision"] is ("vision" in m.abilities)
        assert e["toolChoice"] is ("tools" in m.abilities)
        assert e["functionCall"] is False
        assert e["name"] == (m.display_name or m.id)
        assert e["provider"] in PROVIDER_IDS
        assert 0 < e["maxResponse"] <= e["maxContext"] // 2
        assert e["quoteMaxToken"] > 0
        assert e["maxResponse"] + e["quoteMaxToken"] < e["maxContext"]
        assert e["customCQPrompt"] == "" and e["customExtractPrompt"] == ""
    assert llms["qwen-chat"]["maxResponse"] == 4096  # the catalog's max output
    assert llms["qwen-chat"]["provider"] == "Qwen"
    assert llms["remote-unknown"]["provider"] == "Other"


def test_completion_only_and_image_models_are_left_out():
    cfg = build()
    everything = [e["model"] for k in CONFIG_LIST_TYPES for e in cfg[k]]
    assert "tiny-completion" not in everything
    assert "sd-turbo" not in everything


def test_primary_llm_comes_first_and_carries_every_feature():
    llms = build()["llmModels"]
    assert llms[0]["model"] == "qwen-chat"  # tools beat the larger context of deepseek-reasoner
    assert all(llms[0][f] for f in (*FLAGS, "usedInQueryExtension"))
    small = by_model(llms)["small-chat"]
    assert small["datasetProcess"] and small["usedInQueryExtension"]
    assert not small["usedInToolCall"] and not small["usedInClassify"]


def test_feature_flags_are_guaranteed_without_a_tool_model():
    models = [m for m in seed_models() if m.id in ("small-chat", "remote-unknown")]
    llms = build(models)["llmModels"]
    assert [e["model"] for e in llms] == ["small-chat", "remote-unknown"]  # larger context first
    for flag in FLAGS:
        assert next(e["model"] for e in llms if e[flag]) == "small-chat"
    assert by_model(llms)["remote-unknown"]["usedInToolCall"] is False


def test_embedding_entries():
    vectors = by_model(build()["vectorModels"])
    bge = vectors["bge-m3"]
    assert (bge["maxToken"], bge["defaultToken"], bge["weight"]) == (8192, 512, 100)
    assert bge["provider"] == "BAAI"
    assert "defaultConfig" not in bge  # 1024 dimensions fit FastGPT's vector column
    # 4096 dimensions do not: the model is asked for what FastGPT can store.
    assert vectors["big-embed"]["defaultConfig"] == {"dimensions": 1536}
    assert vectors["big-embed"]["maxToken"] == 32768


@pytest.mark.parametrize(
    "base", ["http://modelport:3000", "http://modelport:3000/v1/", " http://modelport:3000/ "]
)
def test_rerank_is_reached_through_the_gateway(base):
    cfg = build_config_json(seed_models(), base_url=base, api_key=API_KEY, overrides={})
    (rerank,) = cfg["reRankModels"]
    assert rerank["model"] == "bge-reranker"
    assert rerank["requestUrl"] == "http://modelport:3000/v1/rerank"
    assert rerank["requestAuth"] == API_KEY  # bare: FastGPT adds "Bearer "
    assert cfg["systemEnv"]["oneapiUrl"] == "http://modelport:3000/v1"


def test_speech_models():
    cfg = build()
    assert cfg["whisperModel"]["model"] == "whisper"
    (tts,) = cfg["audioSpeechModels"]
    assert tts["model"] == "cosy-tts"
    assert tts["voices"] and all(set(v) == {"label", "value", "bufferId"} for v in tts["voices"])
    assert len({v["bufferId"] for v in tts["voices"]}) == len(tts["voices"])


def test_prices_are_points_per_1k_tokens():
    llms = by_model(build()["llmModels"])
    priced = llms["deepseek-reasoner"]
    assert priced["inputPrice"] == pytest.approx(0.00055)
    assert priced["outputPrice"] == pytest.approx(0.00219)
    assert priced["charsPointsPrice"] == pytest.approx((0.00055 + 0.00219) / 2)
    unpriced = llms["qwen-chat"]
    assert unpriced["charsPointsPrice"] == unpriced["inputPrice"] == unpriced["outputPrice"] == 0


def test_overrides_win():
    overrides = {
        "qwen-chat": {
            "name": "通义千问",
            "avatar": "/imgs/model/qwen.svg",
            "maxContext": 30000,
            "defaultConfig": {"top_p": 0.8},
            "charsPointsPrice": 2,
        },
        "bge-m3": {"defaultToken": 700},
        "not-served": {"name": "ignored"},
    }
    cfg = build(overrides=overrides)
    qwen = by_model(cfg["llmModels"])["qwen-chat"]
    assert qwen["name"] == "通义千问"
    assert qwen["avatar"] == "/imgs/model/qwen.svg"
    assert qwen["maxContext"] == 30000
    assert qwen["defaultConfig"] == {"top_p": 0.8}
    assert qwen["charsPointsPrice"] == 2
    assert by_model(cfg["vectorModels"])["bge-m3"]["defaultToken"] == 700
    assert "ignored" not in json.dumps(cfg)
    overrides["qwen-chat"]["defaultConfig"]["top_p"] = 0.1  # the export holds a copy
    assert qwen["defaultConfig"] == {"top_p": 0.8}


def test_unknown_override_key_is_refused_with_the_known_keys():
    with pytest.raises(FastGPTExportError) as exc:
        build(overrides={"qwen-chat": {"maxContex": 1000}})
    message = str(exc.value)
    assert "'qwen-chat'" in message and "maxContex" in message and "maxContext" in message


def test_the_model_id_cannot_be_overridden():
    with pytest.raises(FastGPTExportError, match="cannot be overridden"):
        build(overrides={"qwen-chat": {"model": "other"}})


def test_an_override_type_must_be_one_of_fastgpts():
    with pytest.raises(FastGPTExportError, match="use one of llm, embedding, rerank, tts, stt"):
        build(overrides={"qwen-chat": {"type": "other"}})


def test_override_of_the_wrong_type_is_refused():
    with pytest.raises(FastGPTExportError, match="maxContext"):
        build(overrides={"qwen-chat": {"maxContext": "big"}})


def test_a_key_of_the_other_era_applies_only_there():
    overrides = {"deepseek-reasoner": {"reasoning": False, "showTopP": True}}
    cfg = build(overrides=overrides)
    assert "reasoning" not in by_model(cfg["llmModels"])["deepseek-reasoner"]
    items = build_model_config(
        seed_models(), base_url=BASE_URL, api_key=API_KEY, overrides=overrides
    )
    meta = by_model(items)["deepseek-reasoner"]["metadata"]
    assert meta["reasoning"] is False and meta["showTopP"] is True


def test_a_feature_turned_off_by_override_moves_to_another_model():
    models = [m for m in seed_models() if m.id in ("qwen-chat", "small-chat")]
    llms = by_model(build(models, overrides={"qwen-chat": {"usedInToolCall": False}})["llmModels"])
    assert llms["qwen-chat"]["usedInToolCall"] is False
    assert llms["small-chat"]["usedInToolCall"] is True


def test_turning_off_a_feature_on_every_model_is_refused():
    models = [m for m in seed_models() if m.id == "qwen-chat"]
    with pytest.raises(FastGPTExportError, match="usedInToolCall"):
        build(models, overrides={"qwen-chat": {"usedInToolCall": False}})


USER_CONFIG = """// 已使用 json5 进行解析 (a comment, as FastGPT's sample has)
{
  "feConfigs": {
    "lafEnv": "https://laf.dev", // laf
    "show_emptyChat": true,
  },
  "systemEnv": {
    "openapiPrefix": "fastgpt",
    "vectorMaxProcess": 10, /* fewer workers */
    "qaMaxProcess": 10,
    "pgHNSWEfSearch": 80
  },
  "customTopLevel": {"keep": [1, 2, 3]},
  "llmModels": [
    {"provider": "OpenAI", "model": "gpt-4o", "name": "gpt-4o", "maxContext": 125000,
     "maxResponse": 4000, "quoteMaxToken": 120000, "maxTemperature": 1.2, "charsPointsPrice": 0,
     "functionCall": false, "toolChoice": true, "customCQPrompt": "", "customExtractPrompt": "",
     "datasetProcess": false},
    {"model": "qwen-chat", "name": "stale entry", "maxContext": 1},
  ],
  "vectorModels": [
    {"model": "text-embedding-3-small", "name": "small", "charsPointsPrice": 0,
     "defaultToken": 512, "maxToken": 3000, "weight": 100}
  ],
  "reRankModels": [],
  "audioSpeechModels": [],
  "whisperModel": {"model": "whisper-1", "name": "Whisper1", "charsPointsPrice": 0}
}
"""


def test_merge_keeps_everything_else_of_a_json5_file():
    existing = load_user_config(USER_CONFIG)
    before = json.loads(json.dumps(existing))
    cfg = build(existing=existing)
    assert existing == before  # the caller's dict is not changed
    assert cfg["feConfigs"] == {"lafEnv": "https://laf.dev", "show_emptyChat": True}
    assert cfg["systemEnv"] == before["systemEnv"]  # the user's own gateway settings stay
    assert cfg["customTopLevel"] == {"keep": [1, 2, 3]}
    llms = cfg["llmModels"]
    assert llms[0] == before["llmModels"][0]  # the user's model, untouched
    assert llms[1]["model"] == "qwen-chat" and llms[1]["name"] == "Qwen"  # replaced in place
    assert llms[1]["maxContext"] == 32768
    assert [e["model"] for e in llms[2:]] == ["small-chat", "remote-unknown", "deepseek-reasoner"]
    assert [e["model"] for e in cfg["vectorModels"]] == [
        "text-embedding-3-small",
        "bge-m3",
        "big-embed",
    ]
    assert cfg["whisperModel"]["model"] == "whisper"
    assert list(cfg)[:4] == ["feConfigs", "systemEnv", "customTopLevel", "llmModels"]


def test_merge_keeps_the_users_whisper_model_when_we_serve_none():
    existing = load_user_config(USER_CONFIG)
    models = [m for m in seed_models() if m.kind == "chat"]
    cfg = build(models, existing=existing)
    assert cfg["whisperModel"] == existing["whisperModel"]
    assert cfg["vectorModels"] == existing["vectorModels"]


def test_merge_into_a_file_without_model_lists():
    cfg = build(existing={"feConfigs": {"lafEnv": "x"}})
    assert cfg["feConfigs"] == {"lafEnv": "x"}
    assert cfg["llmModels"][0]["model"] == "qwen-chat"
    assert "oneapiUrl" not in cfg["systemEnv"]  # a merge leaves the gateway choice to the user


def test_load_user_config_from_a_path(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(USER_CONFIG, encoding="utf-8")
    assert load_user_config(path) == load_user_config(str(path)) == load_user_config(USER_CONFIG)


@pytest.mark.parametrize(
    ("text", "match"),
    [("{not json", "not valid JSON5"), ("[1, 2]", "JSON object"), ('{"llmModels": {}}', "list")],
)
def test_load_user_config_refuses_what_fastgpt_could_not_read(text, match):
    with pytest.raises(FastGPTExportError, match=match):
        load_user_config(text)


def test_load_user_config_names_a_missing_file(tmp_path):
    with pytest.raises(FastGPTExportError, match="cannot read"):
        load_user_config(str(tmp_path / "missing.json"))


def test_dump_writes_plain_json(tmp_path):
    cfg = build(existing=load_user_config(USER_CONFIG))
    path = tmp_path / "out" / "config.json"
    path.parent.mkdir()
    text = dump_json(cfg, path)
    assert path.read_text(encoding="utf-8") == text
    assert json.loads(text) == cfg  # strict JSON: no comments, no trailing commas
    assert not any(line.lstrip().startswith(("//", "/*")) for line in text.splitlines())


def test_no_chat_model_still_gives_a_complete_file():
    models = [ServedModel(id="bge-m3", kind="embedding", dimensions=1024)]
    cfg = build(models)
    assert cfg["llmModels"] == []
    assert [e["model"] for e in cfg["vectorModels"]] == ["bge-m3"]
    assert cfg["whisperModel"]["model"]  # FastGPT reads it unguarded


@pytest.mark.parametrize(
    ("model", "key"), [("qwen-chat", "reasoningSwitch"), ("bge-m3", "batchSize")]
)
def test_keys_fastgpt_never_declared_are_refused(model, key):
    """FastGPT 4.8.20 .. 4.12 declares neither an LLM `reasoningSwitch` nor an embedding
    `batchSize` (labring/FastGPT packages/global/core/ai/model.d.ts: LLMModelItemType,
    EmbeddingModelItemType), so an override may not claim them."""
    with pytest.raises(FastGPTExportError, match=key):
        build(overrides={model: {key: True}})


def test_speech_models_list_their_own_voices():
    """A local TTS engine's voices (ServedModel.voices) replace OpenAI's in both eras."""
    models = [ServedModel(id="piper-joe", kind="audio_speech", source="local", voices=["joe"])]
    doc = build_config_json(models, base_url=BASE_URL, api_key=API_KEY)
    assert doc["audioSpeechModels"][0]["voices"] == [
        {"label": "Joe", "value": "joe", "bufferId": "piper-joe-joe"}
    ]
    (item,) = build_model_config(models, base_url=BASE_URL, api_key=API_KEY)
    assert item["metadata"]["voices"] == [{"label": "Joe", "value": "joe"}]
