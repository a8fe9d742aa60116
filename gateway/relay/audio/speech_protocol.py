"""Text to speech request, OpenAI's `CreateSpeechRequest` (openai/openai-openapi `openapi.yaml`).

Bounds are OpenAI's: `input` up to 4096 characters, `speed` 0.25 to 4.0, `response_format` one of
mp3, opus, aac, flac, wav, pcm (default mp3); `voice` is a name or OpenAI's custom-voice object
`{"id": ...}`. Other fields (`instructions`, Xinference's `stream`/`kwargs`) flow through to the
upstream untouched, as on every surface.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.relay.bounds import ModelName

MAX_INPUT_CHARS = 4096
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class CustomVoice(BaseModel):
    id: Annotated[str, Field(min_length=1, max_length=256)]


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: ModelName
    input: str
    voice: str | CustomVoice
    response_format: SpeechFormat = "mp3"
    speed: Annotated[float, Field(ge=0.25, le=4.0)] | None = None
    stream_format: Literal["sse", "audio"] | None = None
    instructions: Annotated[str, Field(max_length=MAX_INPUT_CHARS)] | None = None

    @field_validator("voice", mode="before")
    @classmethod
    def _voice(cls, value: Any) -> Any:
        """One message for every bad voice (the union would name its members instead)."""
        name = value.get("id") if isinstance(value, dict) else value
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            raise ValueError('voice must be a voice name (or {"id": name}), 1 to 256 characters')
        return value

    @field_validator("input")
    @classmethod
    def _input(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input is empty: send the text to speak")
        if len(value) > MAX_INPUT_CHARS:
            raise ValueError(
                f"input is {len(value)} characters; the limit is {MAX_INPUT_CHARS} "
                "(OpenAI's): split the text into several requests"
            )
        return value
