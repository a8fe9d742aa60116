"""Rendering speech-to-text results in the OpenAI `response_format`s, and parsing form parameters.

Kept apart from the engine so any speech engine (faster-whisper today, others later) answers in
exactly the shapes OpenAI clients expect: `json`, `text`, `srt`, `vtt`, `verbose_json`.
Parameters arrive from a multipart form, so every value may be a string; the parsers here accept
both the typed and the string spelling.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
TEXT_MEDIA = "text/plain; charset=utf-8"
VTT_MEDIA = "text/vtt; charset=utf-8"
JSON_MEDIA = "application/json"

# Whisper's language codes and the names OpenAI's verbose_json reports ("language": "english").
_LANGUAGE_TABLE = (
    "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese "
    "pt:portuguese tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian "
    "id:indonesian hi:hindi fi:finnish vi:vietnamese he:hebrew uk:ukrainian el:greek "
    "ms:malay cs:czech ro:romanian da:danish hu:hungarian ta:tamil no:norwegian th:thai "
    "ur:urdu hr:croatian bg:bulgarian lt:lithuanian la:latin mi:maori ml:malayalam cy:welsh "
    "sk:slovak te:telugu fa:persian lv:latvian bn:bengali sr:serbian az:azerbaijani "
    "sl:slovenian kn:kannada et:estonian mk:macedonian br:breton eu:basque is:icelandic "
    "hy:armenian ne:nepali mn:mongolian bs:bosnian kk:kazakh sq:albanian sw:swahili "
    "gl:galician mr:marathi pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba so:somali "
    "af:afrikaans oc:occitan ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati "
    "am:amharic yi:yiddish lo:lao uz:uzbek fo:faroese ht:haitian_creole ps:pashto "
    "tk:turkmen nn:nynorsk mt:maltese sa:sanskrit lb:luxembourgish my:myanmar bo:tibetan "
    "tl:tagalog mg:malagasy as:assamese tt:tatar haw:hawaiian ln:lingala ha:hausa "
    "ba:bashkir jw:javanese su:sundanese yue:cantonese"
)
_LANGUAGE_NAMES = dict(pair.split(":") for pair in _LANGUAGE_TABLE.split())
_NAME_TO_CODE = {name: code for code, name in _LANGUAGE_NAMES.items()}


class Word(TypedDict):
    word: str
    start: float
    end: float


class Segment(TypedDict):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


def language_name(code: str) -> str:
    return _LANGUAGE_NAMES.get(code, code).replace("_", " ")


def language_code(value: str) -> str | None:
    """Accept "en", "EN", "english" or "English"; None when whisper does not know the language."""
    v = value.strip().lower().replace(" ", "_")
    if v in _LANGUAGE_NAMES:
        return v
    return _NAME_TO_CODE.get(v)


def as_bool(value: Any, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def as_list(value: Any) -> list[str]:
    """Form fields repeat (`timestamp_granularities[]=word`) or arrive comma-joined."""
    if value is None:
        return []
    items: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
    out: list[str] = []
    for item in items:
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    return out


def _clock(seconds: float, sep: str) -> str:
    ms = round(max(seconds, 0.0) * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{i}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{s['text'].strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{s['text'].strip()}\n"
        for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(
    response_format: str,
    *,
    task: str,
    language: str,
    duration: float,
    segments: Sequence[Segment],
    words: Sequence[Word] | None,
    include_segments: bool = True,
) -> tuple[str | dict[str, Any], str]:
    """Return (body, media type) for one finished transcription."""
    text = "".join(s["text"] for s in segments).strip()
    # whisper-1 bills by duration and says so in `usage`; the gateway settles usage from it.
    usage = {"type": "duration", "seconds": max(1, round(duration))}
    if response_format == "json":
        return {"text": text, "usage": usage}, JSON_MEDIA
    if response_format == "text":
        return text + "\n", TEXT_MEDIA
    if response_format == "srt":
        return to_srt(segments), TEXT_MEDIA
    if response_format == "vtt":
        return to_vtt(segments), VTT_MEDIA
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(language),
        "duration": round(duration, 3),
        "text": text,
    }
    if include_segments:
        body["segments"] = list(segments)
    if words is not None:
        body["words"] = list(words)
    body["usage"] = usage
    return body, JSON_MEDIA
