"""The contract every inference engine implements.

An engine is loaded inside a worker process (one model replica per process) and serves the
OpenAI-shaped operations it declares in `capabilities`. The worker's HTTP app (local_runtime.worker)
turns requests into calls on these methods and their results into responses; engines never touch
HTTP themselves.

Rules for engine modules:
- import the heavy library inside `load()` (or a helper it calls), never at module level, so the
  gateway and the catalog can import every engine module cheaply;
- `available()` says whether the library can be imported, with a reason when not;
- `match(spec)` says whether this engine can serve a resolved spec, with a readable reason when not
  ("llama.cpp serves only GGUF files; this folder has safetensors").
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from local_runtime.spec import ResolvedSpec
from modelport_wire.errors import ModelportError
from modelport_wire.openai import status_type

# Operations a worker can expose; each maps to one method below and one /v1 route.
CHAT = "chat"  # /v1/chat/completions
COMPLETIONS = "completions"  # /v1/completions
EMBEDDINGS = "embeddings"  # /v1/embeddings
RERANK = "rerank"  # /v1/rerank
TRANSCRIPTIONS = "transcriptions"  # /v1/audio/transcriptions
TRANSLATIONS = "translations"  # /v1/audio/translations
IMAGES = "images"  # /v1/images/generations
SPEECH = "speech"  # /v1/audio/speech (text to speech)


class EngineError(ModelportError):
    """A request the engine cannot serve; `status` and `code` reach the client in OpenAI shape,
    with the `type` OpenAI gives that status."""

    code: str

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message, status=status, code=code)
        self.type = status_type(status)


def with_openai_chat_fields(result: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion with `logprobs` on every choice and `refusal` on every message (null
    where the engine left them out): OpenAI's schema marks both required (openai/openai-openapi
    openapi.yaml: CreateChatCompletionResponse choices `required: [finish_reason, index,
    message, logprobs]`, ChatCompletionResponseMessage `required: [role, content, refusal]`), and
    typed clients generated from it reject an answer without them. llama.cpp's server leaves
    `refusal` out (vLLM's own answers carry both)."""
    for choice in result.get("choices") or []:
        if isinstance(choice, dict):
            choice.setdefault("logprobs", None)
            if isinstance(choice.get("message"), dict):
                choice["message"].setdefault("refusal", None)
    return result


class Engine:
    """Base class for engines. Subclasses override what they support."""

    name: ClassVar[str]
    model_types: ClassVar[frozenset[str]]
    capabilities: ClassVar[frozenset[str]]
    # The Python module whose presence makes this engine available.
    requires: ClassVar[str]
    # Engines that run the model in a separate server process (vLLM) proxy requests to it.
    external_server: ClassVar[bool] = False

    def __init__(self, spec: ResolvedSpec) -> None:
        self.spec = spec

    # --- discovery -------------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec(cls.requires) is None:
            return False, f"{cls.name} is not installed (pip install 'modelport[{cls.extra()}]')"
        return True, ""

    @classmethod
    def extra(cls) -> str:
        return cls.name

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        if spec.model_type not in cls.model_types:
            return False, f"{cls.name} does not serve {spec.model_type} models"
        return True, ""

    # --- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        """Load weights. Runs in a worker thread; may take minutes."""
        raise NotImplementedError

    def unload(self) -> None:
        """Free what load() took. The worker process exits afterwards anyway."""

    def status(self) -> dict[str, Any]:
        """Extra fields for the worker's /health (progress of a long job, queue depth...)."""
        return {}

    # --- operations (bodies are the parsed OpenAI JSON requests) ---------------------------
    async def chat(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        """Return a chat.completion dict, or, when body["stream"], an iterator of SSE frames."""
        raise EngineError(f"{self.name} does not serve chat", status=400)

    async def completions(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        raise EngineError(f"{self.name} does not serve completions", status=400)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raise EngineError(f"{self.name} does not serve embeddings", status=400)

    async def rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        raise EngineError(f"{self.name} does not serve rerank", status=400)

    async def transcriptions(
        self, audio_path: str, params: dict[str, Any], *, translate: bool = False
    ) -> tuple[str | dict[str, Any], str]:
        """Return (body, media type): JSON dict for json/verbose_json, text for text/srt/vtt."""
        raise EngineError(f"{self.name} does not serve audio", status=400)

    async def images(self, body: dict[str, Any]) -> list[bytes]:
        """Return PNG bytes, one per image; the worker encodes them as b64_json or url."""
        raise EngineError(f"{self.name} does not serve images", status=400)

    async def speech(self, body: dict[str, Any]) -> tuple[str, AsyncIterator[bytes]]:
        """Return (media type, audio bytes as they are encoded). Refuse a bad request (voice,
        format, speed) by raising before returning: once the stream starts the status is 200."""
        raise EngineError(f"{self.name} does not serve text to speech", status=400)

    @classmethod
    def voices(cls, spec: ResolvedSpec) -> list[str]:
        """The voices a text-to-speech model offers, read from its files without loading it
        (the FastGPT export and /v1/models list them)."""
        return []
