"""Every served model's kind: the admin's word, else litellm's model table, else name rules; local
models from the runtime's type and abilities. And the channel field that holds the admin's word,
through the admin API (One API envelope) and the admin UI form."""

from __future__ import annotations

import pytest

from gateway.model_kinds import channel_kind, local_kind, name_kind, normalise_kinds
from tests.admin_ui.helpers import UIClient
from tests.conftest import Gateway
from tests.support.fake_openai import FakeOpenAI


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        # litellm's bundled table (`mode`), found without importing litellm
        ("gpt-4o", "chat"),
        ("text-embedding-3-small", "embedding"),
        ("bge-reranker-v2-m3", "rerank"),
        ("whisper-1", "audio_transcription"),
        ("tts-1", "audio_speech"),
        ("gpt-4o-mini-tts", "audio_speech"),
        ("dall-e-3", "image_generation"),
        # names litellm does not know: the rules
        ("FunAudioLLM/SenseVoiceSmall", "audio_transcription"),
        ("FunAudioLLM/CosyVoice2-0.5B", "audio_speech"),
        ("acme-embed-v2", "embedding"),
        ("totally-new-model", "chat"),
    ],
)
def test_channel_kind_without_an_admin_word(model: str, kind: str) -> None:
    assert channel_kind(model, model, {}) == kind


def test_the_admin_word_wins_then_the_upstream_name_counts() -> None:
    assert channel_kind("whisper-1", "whisper-1", {"whisper-1": "chat"}) == "chat"
    # a mapped name: the upstream model it is sent as says what it is
    assert channel_kind("my-speech", "tts-1", {}) == "audio_speech"
    assert name_kind("house-model") is None


def test_local_kinds_follow_xinference_types_and_abilities() -> None:
    assert local_kind("llm", ["chat", "tools"]) == "chat"
    assert local_kind("audio", ["transcriptions", "translations"]) == "audio_transcription"
    # Xinference types TTS as model_type audio with the text2audio ability
    # (xinference/model/audio/model_spec.json)
    assert local_kind("audio", ["text2audio"]) == "audio_speech"
    assert local_kind("image", []) == "image_generation"


def test_other_systems_words_are_accepted_and_unknown_ones_refused() -> None:
    assert normalise_kinds({"a": "llm", "b": "stt", "c": "tts", "d": "image"}) == {
        "a": "chat",
        "b": "audio_transcription",
        "c": "audio_speech",
        "d": "image_generation",
    }
    with pytest.raises(ValueError, match="'x' has kind 'banana'; use one of chat, embedding"):
        normalise_kinds({"x": "banana"})


def test_admin_api_stores_kinds_and_models_show_them(
    gateway: Gateway, fake_upstream: FakeOpenAI
) -> None:
    bad = gateway.admin.post(
        "/api/channel/",
        json={"name": "x", "base_url": fake_upstream.url, "model_types": {"m": "banana"}},
    ).json()
    assert bad["success"] is False and "use one of chat, embedding" in bad["message"]

    made = gateway.add_channel(
        name="up",
        base_url=fake_upstream.url,
        models="house-a,house-b",
        model_types='{"house-a": "embedding"}',  # One API clients send JSON strings
    )
    channel = made[0] if isinstance(made, list) else made
    cid = channel["id"]
    stored = gateway.api("GET", f"/api/channel/{cid}")
    assert stored["model_types"] == '{"house-a":"embedding"}'
    gateway.api("PUT", "/api/channel/", json={"id": cid, "model_types": {"house-b": "rerank"}})
    key = gateway.create_token()
    described = {
        m: gateway.admin.get(f"/v1/models/{m}", headers={"Authorization": f"Bearer {key}"}).json()
        for m in ("house-a", "house-b")
    }
    assert described["house-a"]["kind"] == "chat"  # the update replaced the mapping
    assert described["house-b"]["kind"] == "rerank"
    assert described["house-b"]["model_type"] == "rerank"


def test_ui_channel_form_sets_kinds_and_the_test_follows_them(
    gateway: Gateway, fake_upstream: FakeOpenAI
) -> None:
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get("/ui")
    bad = ui.post("/ui/channels/new", {"type": "50", "name": "x", "model_types": '{"m": "speech"}'})
    assert bad.status_code == 400 and "use one of chat, embedding" in bad.text
    made = ui.post(
        "/ui/channels/new",
        {
            "type": "50",
            "name": "up",
            "base_url": fake_upstream.url,
            "models": "house-ranker",
            "model_types": '{"house-ranker": "rerank"}',
        },
    )
    assert made.status_code == 303
    cid = int(made.headers["location"].rsplit("/", 1)[1])
    page = ui.get(f"/ui/channels/{cid}")
    assert "house-ranker" in page.text and "rerank" in page.text
    ui.http.post(
        f"/ui/channels/{cid}/test?model=house-ranker",
        headers={"X-CSRF-Token": ui.csrf, "HX-Request": "true"},
    )
    assert fake_upstream.requests[-1].path.endswith("/rerank")  # tested as what it is
    fastgpt_page = ui.get("/ui/fastgpt").text
    assert "<td><code>house-ranker</code></td><td>rerank</td>" in fastgpt_page


def test_a_speech_model_is_tested_with_speech(gateway: Gateway, fake_upstream: FakeOpenAI) -> None:
    """One API tests every model with a chat call; a tts-1 channel failed its test. Speech models
    are tested with OpenAI's createSpeech (openai/openai-openapi openapi.yaml, CreateSpeechRequest:
    model, input, voice)."""
    made = gateway.add_channel(name="voice", base_url=fake_upstream.url, models="tts-1")
    cid = (made[0] if isinstance(made, list) else made)["id"]
    result = gateway.admin.get(f"/api/channel/test/{cid}", params={"model": "tts-1"}).json()
    assert result["success"] is True, result
    sent = fake_upstream.requests[-1]
    assert sent.path == "/v1/audio/speech" and sent.body["voice"] == "alloy"
