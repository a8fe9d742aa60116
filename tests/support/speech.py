"""Synthetic speech for speech-to-text tests: espeak-ng for the voice, sox/ffmpeg for the rest.

CI must install the Debian packages `espeak-ng`, `sox` and `ffmpeg`. The settings below (en-us,
100 words/min, punctuation in the sentence) were chosen because whisper tiny.en transcribes them
word for word; espeak's faster default speech makes it hear "The Lord World".
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

HELLO = "hello, world. this is a test."


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def speak(path: str | Path, text: str = HELLO, *, voice: str = "en-us", speed: int = 100) -> Path:
    """Write a mono 22.05 kHz 16-bit WAV of `text` spoken by espeak-ng."""
    out = Path(path)
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text],
        check=True,
        capture_output=True,
    )
    return out


def convert(src: str | Path, dst: str | Path) -> Path:
    """Re-encode with ffmpeg; the codec follows the extension of `dst` (.mp3, .ogg, .m4a...)."""
    out = Path(dst)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def long_speech(path: str | Path, src: str | Path, *, repeats: int, gap_s: float = 2.0) -> Path:
    """`src` repeated with `gap_s` of silence between copies: longer than whisper's 30 s window."""
    out = Path(path)
    parts: list[str] = []
    silence = out.with_suffix(".silence.wav")
    subprocess.run(
        ["sox", "-n", "-r", "22050", "-c", "1", "-b", "16", str(silence), "trim", "0", str(gap_s)],
        check=True,
        capture_output=True,
    )
    for _ in range(repeats):
        parts += [str(src), str(silence)]
    subprocess.run(["sox", *parts, str(out)], check=True, capture_output=True)
    return out


def silent_wav(seconds: float = 1.0) -> bytes:
    """A valid 16 kHz mono WAV of near-silence, for relay tests that never decode it."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x01" * int(16000 * seconds))
    return buf.getvalue()
