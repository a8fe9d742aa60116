"""Speech-to-text with faster-whisper (CTranslate2 whisper models).

Why these choices:
- Audio is decoded once, by PyAV, to 16 kHz mono float32 (any container/codec FFmpeg reads), and
  that single array is what whisper consumes; segments are then produced lazily by faster-whisper
  and rendered as they come, so a long file costs its decoded samples plus the text, not more.
- Concurrency is bounded, not unlimited: CTranslate2 runs `num_workers` transcriptions in
  parallel on one loaded model (engine option `num_workers`, default 1); further requests wait
  on a semaphore in arrival order. On a 2-core CPU one at a time is fastest overall.
- compute_type defaults to int8 on CPU and float16 on CUDA (engine option `compute_type`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local_runtime import audio_formats as af
from local_runtime.engines.base import TRANSCRIPTIONS, TRANSLATIONS, Engine, EngineError
from local_runtime.spec import ResolvedSpec

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

_SAMPLE_RATE = 16_000
# Options a launch may set in engine_options and that go straight to WhisperModel.transcribe().
_TRANSCRIBE_OPTIONS = (
    "beam_size",
    "best_of",
    "patience",
    "condition_on_previous_text",
    "vad_parameters",
    "no_speech_threshold",
    "log_prob_threshold",
    "compression_ratio_threshold",
    "hallucination_silence_threshold",
    "chunk_length",
)


def _is_cuda(device: str) -> bool:
    return device.startswith(("cuda", "gpu"))


class FasterWhisperEngine(Engine):
    name = "faster_whisper"
    model_types = frozenset({"audio"})
    capabilities = frozenset({TRANSCRIPTIONS, TRANSLATIONS})
    requires = "faster_whisper"

    def __init__(self, spec: ResolvedSpec) -> None:
        super().__init__(spec)
        self._model: WhisperModel | None = None
        self._slots: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self._waiting = 0
        self._jobs: dict[int, dict[str, float]] = {}
        self._next_job = 0

    @classmethod
    def extra(cls) -> str:
        return "whisper"

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        ok, reason = super().match(spec)
        if not ok:
            return ok, reason
        if spec.model_format != "ct2":
            return (
                False,
                f"faster-whisper serves CTranslate2 whisper models, not {spec.model_format}",
            )
        path = Path(spec.model_path)
        if not path.is_dir():
            return False, f"faster-whisper needs a CTranslate2 model folder; {path} is not a folder"
        if not (path / "model.bin").is_file():
            have = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
            return False, (
                "faster-whisper needs a CTranslate2 model folder (model.bin); "
                f"this folder has {have} (convert with ct2-transformers-converter)"
            )
        return True, ""

    # --- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        from faster_whisper import WhisperModel

        opts = self.spec.engine_options
        cuda = _is_cuda(self.spec.device)
        workers = int(opts.get("num_workers", 1))
        self._model = WhisperModel(
            str(self.spec.model_path),
            device="cuda" if cuda else "cpu",
            device_index=self.spec.gpu_idx or 0,
            compute_type=str(opts.get("compute_type") or ("float16" if cuda else "int8")),
            cpu_threads=int(opts.get("cpu_threads", 0)),
            num_workers=workers,
            local_files_only=True,
        )
        self._slots = asyncio.Semaphore(workers)

    def unload(self) -> None:
        self._model = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            jobs = [dict(j) for j in self._jobs.values()]
        return {"queued": self._waiting, "running": jobs}

    @property
    def multilingual(self) -> bool:
        return bool(self._require().model.is_multilingual)

    def _require(self) -> WhisperModel:
        if self._model is None:
            raise EngineError("model is not loaded", status=503, code="model_not_loaded")
        return self._model

    # --- operation -------------------------------------------------------------------------
    async def transcriptions(
        self, audio_path: str, params: dict[str, Any], *, translate: bool = False
    ) -> tuple[str | dict[str, Any], str]:
        model = self._require()
        request = self._parse(params, translate=translate)
        assert self._slots is not None
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await asyncio.to_thread(self._run, model, audio_path, request)
        finally:
            self._slots.release()

    def _parse(self, params: dict[str, Any], *, translate: bool) -> dict[str, Any]:
        """Validate a request before it waits for a slot, so bad requests fail at once."""
        fmt = str(params.get("response_format") or "json")
        if fmt not in af.RESPONSE_FORMATS:
            raise EngineError(
                f"response_format must be one of {', '.join(af.RESPONSE_FORMATS)}; got {fmt!r}"
            )
        multilingual = self.multilingual
        if translate and not multilingual:
            raise EngineError(
                f"model {self.spec.uid!r} is English-only and cannot translate; "
                "launch a multilingual whisper model (e.g. whisper base) for /v1/audio/translations",
                code="unsupported_task",
            )
        language: str | None = None
        if params.get("language"):
            language = af.language_code(str(params["language"]))
            if language is None:
                raise EngineError(f"unknown language {params['language']!r}", code="invalid_value")
            if not multilingual and language != "en":
                raise EngineError(
                    f"model {self.spec.uid!r} is English-only; language {language!r} is not served",
                    code="invalid_value",
                )
        temperature: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        if params.get("temperature") not in (None, ""):
            try:
                t = float(params["temperature"])
            except ValueError:
                raise EngineError("temperature must be a number", code="invalid_value") from None
            if not 0.0 <= t <= 1.0:
                raise EngineError("temperature must be between 0 and 1", code="invalid_value")
            # OpenAI semantics: 0 means "start at 0 and raise it when decoding fails".
            if t > 0:
                temperature = t
        granularities = af.as_list(
            params.get("timestamp_granularities", params.get("timestamp_granularities[]"))
        )
        bad = set(granularities) - {"segment", "word"}
        if bad:
            raise EngineError(f"timestamp_granularities: unknown {sorted(bad)}")
        want_words = "word" in granularities and fmt == "verbose_json"
        opts = self.spec.engine_options
        kwargs: dict[str, Any] = {k: opts[k] for k in _TRANSCRIBE_OPTIONS if k in opts}
        kwargs.update(
            language=language or (None if multilingual else "en"),
            task="translate" if translate else "transcribe",
            initial_prompt=params.get("prompt") or None,
            temperature=temperature,
            word_timestamps=want_words,
            vad_filter=af.as_bool(params.get("vad_filter"), af.as_bool(opts.get("vad_filter"))),
        )
        return {
            "format": fmt,
            "kwargs": kwargs,
            "words": want_words,
            "segments": not granularities or "segment" in granularities,
        }

    def _run(
        self, model: WhisperModel, audio_path: str, request: dict[str, Any]
    ) -> tuple[str | dict[str, Any], str]:
        from av.error import FFmpegError
        from faster_whisper.audio import decode_audio

        if not os.path.getsize(audio_path):
            raise EngineError("the uploaded audio file is empty", code="invalid_audio")
        try:
            audio = decode_audio(audio_path, sampling_rate=_SAMPLE_RATE)
        except FFmpegError as exc:
            raise EngineError(
                f"could not decode the audio file ({exc.strerror or exc}); send a format FFmpeg "
                "reads, such as wav, mp3, m4a, ogg, flac or webm",
                code="invalid_audio",
            ) from None
        if audio.size == 0:
            raise EngineError("the audio file holds no audio samples", code="invalid_audio")

        kwargs = request["kwargs"]
        seg_iter, info = model.transcribe(audio, **kwargs)
        del audio  # faster-whisper keeps what it needs; drop our reference early
        with self._lock:
            job_id = self._next_job
            self._next_job += 1
            self._jobs[job_id] = {"done_s": 0.0, "duration_s": float(info.duration)}
        segments: list[af.Segment] = []
        words: list[af.Word] = []
        try:
            for seg in seg_iter:
                segments.append(
                    af.Segment(
                        id=seg.id - 1,
                        seek=int(seg.seek),
                        start=round(float(seg.start), 3),
                        end=round(float(seg.end), 3),
                        text=seg.text,
                        tokens=list(seg.tokens),
                        temperature=float(seg.temperature or 0.0),
                        avg_logprob=float(seg.avg_logprob),
                        compression_ratio=float(seg.compression_ratio),
                        no_speech_prob=float(seg.no_speech_prob),
                    )
                )
                for w in seg.words or ():
                    words.append(
                        af.Word(
                            word=w.word.strip(),
                            start=round(float(w.start), 3),
                            end=round(float(w.end), 3),
                        )
                    )
                with self._lock:
                    self._jobs[job_id]["done_s"] = float(seg.end)
        finally:
            with self._lock:
                self._jobs.pop(job_id, None)
        return af.render(
            request["format"],
            task=kwargs["task"],
            language=info.language,
            duration=float(info.duration),
            segments=segments,
            words=words if request["words"] else None,
            include_segments=request["segments"],
        )
