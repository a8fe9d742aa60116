"""Encoding synthesized speech in OpenAI's `response_format`s, chunk by chunk as it is made.

OpenAI's speech API (openai/openai-openapi `openapi.yaml`, CreateSpeechRequest) offers mp3, opus,
aac, flac, wav and pcm. wav and pcm are written here with numpy alone; the compressed formats go
through PyAV's FFmpeg encoders (libmp3lame, libopus, FFmpeg's aac, flac), each into a streamable
container (MP3 frames, Ogg, ADTS, FLAC), so every sentence can reach the client as soon as it is
synthesized. A format whose encoder is missing here is refused up front with the formats that
work, never answered with a body that is not what its name says.

Why the sample rates:
- pcm is 24 kHz 16-bit little-endian, because that is what OpenAI documents and what clients that
  play raw pcm assume (a 22.05 kHz voice would play 9% fast and high);
- opus only encodes 8/12/16/24/48 kHz, so it is resampled to 24 kHz;
- the others keep the voice's own rate.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

# Media types as Xinference answers its /v1/audio/speech (xinference/api/restful_api.py,
# _AUDIO_RESPONSE_MEDIA_TYPES); OpenAI's own answers agree for mp3, aac, flac and wav.
MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
FORMATS = tuple(MEDIA_TYPES)
PCM_RATE = 24_000
# format -> (FFmpeg muxer, encoder, forced sample rate or None for the voice's own)
_CODECS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None),
    "opus": ("ogg", "libopus", 24_000),
    "aac": ("adts", "aac", None),
    "flac": ("flac", "flac", None),
}


def available_formats() -> list[str]:
    """The formats this machine can produce: wav and pcm always, the rest when PyAV has the
    encoder (its wheels bundle all four)."""
    formats = ["wav", "pcm"]
    try:
        import av
    except ImportError:
        return formats
    for fmt, (_, codec, _) in _CODECS.items():
        try:
            av.codec.Codec(codec, "w")
        except ValueError:  # UnknownCodecError: this FFmpeg build lacks the encoder
            continue
        formats.append(fmt)
    return [f for f in FORMATS if f in formats]


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear interpolation: enough for speech between nearby rates (22.05 -> 24 kHz)."""
    if rate == target or audio.size == 0:
        return audio
    n_out = round(audio.size * target / rate)
    positions = np.arange(n_out, dtype=np.float64) * (rate / target)
    return np.interp(positions, np.arange(audio.size), audio).astype(np.float32)


def wav_header(rate: int) -> bytes:
    """A mono 16-bit WAV header for a stream of unknown length: the RIFF and data sizes are
    0xFFFFFFFF, as streaming servers write them (FFmpeg, browsers and soundfile read to EOF)."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


class _Sink:
    """A write-only file for PyAV: the container writes here and we hand the bytes on."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class SpeechEncoder:
    """Encode float32 mono chunks at `rate` into `fmt`; `encode` returns what is ready so far,
    `finish` the rest (trailing frames, container end)."""

    def __init__(self, fmt: str, rate: int) -> None:
        self.fmt = fmt
        self.rate = rate
        self._started = False
        self._container: Any = None
        if fmt in _CODECS:
            import av

            muxer, codec, forced = _CODECS[fmt]
            self._out_rate = forced or rate
            self._sink = _Sink()
            self._container = av.open(self._sink, "w", format=muxer)
            self._stream = self._container.add_stream(codec, rate=self._out_rate)
            self._stream.layout = "mono"
            self._resampler = av.AudioResampler(
                format=self._stream.format.name, layout="mono", rate=self._out_rate
            )

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.fmt]

    def encode(self, audio: np.ndarray) -> bytes:
        if self.fmt == "pcm":
            return to_int16(resample(audio, self.rate, PCM_RATE)).tobytes()
        if self.fmt == "wav":
            head = b"" if self._started else wav_header(self.rate)
            self._started = True
            return head + to_int16(audio).tobytes()
        import av

        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = self.rate
        self._mux(self._resampler.resample(frame))
        return self._sink.drain()

    def finish(self) -> bytes:
        if self._container is None:
            return b"" if self._started or self.fmt == "pcm" else wav_header(self.rate)
        self._mux(self._resampler.resample(None))
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._sink.drain()

    def close(self) -> None:
        """Release the encoder of a stream abandoned before `finish`."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def _mux(self, frames: list[Any]) -> None:
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
