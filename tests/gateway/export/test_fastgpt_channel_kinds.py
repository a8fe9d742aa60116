"""Channel models reach FastGPT in the list of their kind, and a push never retypes a built-in.

FastGPT >= 4.8.20 builds each built-in model as `{...fileModel, ...dbModel.metadata, type:
dbModel?.metadata?.type || fileModel.type}` (labring/FastGPT packages/service/core/ai/config/
utils.ts, `loadSystemModels`), so a pushed `metadata.type` replaces the type of FastGPT's own model
of that name. Exporting every channel model as `llm` therefore turned FastGPT's whisper-1, tts-1
and embedding built-ins into chat models. The fake FastGPT applies that rule and its model/update
merge (tests/support/fake_fastgpt.py) to FastGPT 4.8.23's real built-in list
(tests/data/fastgpt-system-models-v4.8.23.json, copied from its provider JSON files).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.fake_fastgpt import FakeFastGPT
from tests.support.fake_openai import FakeOpenAI

PASSWORD = "root-pw"
# Names a channel in front of OpenAI, SiliconFlow or a local Xinference serves; all but the last
# are FastGPT built-ins too. The kind each should get, in FastGPT's words.
EXPECTED = {
    "gpt-4o-mini": "llm",
    "text-embedding-3-small": "embedding",
    "whisper-1": "stt",
    "tts-1": "tts",
    "bge-reranker-v2-m3": "rerank",
    "Qwen/Qwen2.5-72B-Instruct": "llm",
    "BAAI/bge-m3": "embedding",
    "FunAudioLLM/SenseVoiceSmall": "stt",
    "FunAudioLLM/CosyVoice2-0.5B": "tts",
    "house-embedder": "embedding",  # only the admin knows: set in the channel's model_types
}
# OpenAI's six classic voices (openai/openai-openapi openapi.yaml, CreateSpeechRequest `voice`)
OPENAI_VOICES = ["alloy", "echo", "fable", "onyx", "nova", "shimmer"]


@pytest.fixture
def served(gateway: Gateway, fake_upstream: FakeOpenAI) -> Gateway:
    gateway.add_channel(
        name="cloud",
        base_url=fake_upstream.url,
        models=",".join(EXPECTED),
        model_types={"house-embedder": "embedding"},
    )
    return gateway


@pytest.fixture
def fastgpt() -> Iterator[FakeFastGPT]:
    fake = FakeFastGPT(root_password=PASSWORD)
    yield fake
    fake.stop()


def test_config_json_puts_channel_models_in_their_lists(served: Gateway) -> None:
    doc = served.api("GET", "/api/export/fastgpt", params={"format": "config"})
    lists = {
        key: {e["model"] for e in doc[key]}
        for key in ("llmModels", "vectorModels", "reRankModels", "audioSpeechModels")
    }
    assert lists["llmModels"] == {"gpt-4o-mini", "Qwen/Qwen2.5-72B-Instruct"}
    assert lists["vectorModels"] == {"text-embedding-3-small", "BAAI/bge-m3", "house-embedder"}
    assert lists["reRankModels"] == {"bge-reranker-v2-m3"}
    assert lists["audioSpeechModels"] == {"tts-1", "FunAudioLLM/CosyVoice2-0.5B"}
    assert doc["whisperModel"]["model"] in {"whisper-1", "FunAudioLLM/SenseVoiceSmall"}
    tts = next(e for e in doc["audioSpeechModels"] if e["model"] == "tts-1")
    assert [v["value"] for v in tts["voices"]] == OPENAI_VOICES
    assert all(v["bufferId"] == f"tts-1-{v['value']}" for v in tts["voices"])


def test_model_config_types_and_voices(served: Gateway) -> None:
    items = served.api("GET", "/api/export/fastgpt", params={"format": "models"})
    types = {i["model"]: i["metadata"]["type"] for i in items}
    assert types == EXPECTED
    tts = next(i["metadata"] for i in items if i["model"] == "tts-1")
    assert tts["voices"] == [{"label": v.capitalize(), "value": v} for v in OPENAI_VOICES]
    assert tts["requestUrl"].endswith("/v1/audio/speech")


def test_an_override_type_moves_a_model(served: Gateway) -> None:
    served.api(
        "PUT",
        "/api/export/fastgpt/overrides",
        json={"model": "FunAudioLLM/SenseVoiceSmall", "data": {"type": "llm"}},
    )
    items = served.api("GET", "/api/export/fastgpt", params={"format": "models"})
    entry = next(i["metadata"] for i in items if i["model"] == "FunAudioLLM/SenseVoiceSmall")
    assert entry["type"] == "llm" and entry["requestUrl"].endswith("/v1/chat/completions")
    refused = served.admin.put(
        "/api/export/fastgpt/overrides",
        json={"model": "tts-1", "data": {"type": "speech"}},
    )
    assert refused.json()["success"] is True  # stored; the export says what is wrong
    bad = served.admin.get("/api/export/fastgpt", params={"format": "models"}).json()
    assert (
        bad["success"] is False and "use one of llm, embedding, rerank, tts, stt" in bad["message"]
    )


def test_push_keeps_every_builtin_type(served: Gateway, fastgpt: FakeFastGPT) -> None:
    before = {m: v["type"] for m, v in fastgpt.state.models.items()}
    assert len(before) == 24 and before["whisper-1"] == "stt" and before["tts-1"] == "tts"

    result = CliRunner().invoke(
        cli,
        [
            "export",
            "fastgpt",
            "--push",
            fastgpt.url,
            "--root-password",
            PASSWORD,
            "--url",
            served.url,
            "--admin-token",
            ADMIN_TOKEN,
            "--api-key",
            "sk-fastgpt",
        ],
    )
    assert result.exit_code == 0, result.output
    assert fastgpt.state.calls_to("/updateWithJson") == []

    after = fastgpt.state.models
    changed = {m: (t, after[m]["type"]) for m, t in before.items() if after[m]["type"] != t}
    assert changed == {}
    for model, kind in EXPECTED.items():
        assert after[model]["type"] == kind, model
        assert after[model]["isActive"] is True
        assert after[model]["requestAuth"] == "sk-fastgpt"
    assert after["house-embedder"]["isCustom"] is True and after["gpt-4o-mini"]["isCustom"] is False
    # the built-in keeps FastGPT's own fields the push did not send
    assert after["gpt-4o-mini"]["responseFormatList"] == ["text", "json_object", "json_schema"]
    assert [v["value"] for v in after["tts-1"]["voices"]] == OPENAI_VOICES
