"""FastGPT's declared model types, per era, as pydantic models.

FastGPT does not validate its model configuration: a missing or mistyped field surfaces much later
as a broken feature (an unknown model silently falls back to the first list entry). So every export
is validated here against the TypeScript types FastGPT declares
(`packages/global/core/ai/model.d.ts`):

- `Legacy*` (4.7 .. 4.8.18): `config.json` lists, `charsPointsPrice` required. Extra keys are
  allowed, as FastGPT ignores them; an export carries newer keys for newer versions.
- `V4819*` (4.8.19, the last `config.json` era): `provider` required, `PriceType` prices optional.
  Extra keys are forbidden, so an export holds nothing FastGPT does not declare.
- `*Metadata` (>= 4.8.20): the `{model, metadata}` documents of the `system_models` collection,
  with the optional keys FastGPT 4.8.20 .. 4.12 declares (`showTopP`, `responseFormatList`,
  `showStopSign`, `reasoning`, `normalization`, `isDefaultDataset*Model`, ...). Keys FastGPT
  never declared in those versions (`reasoningSwitch`, an embedding `batchSize`) are not here,
  so an override cannot claim them.

`config.json` exports must pass both `Legacy*` and `V4819*`, so one file serves 4.7 .. 4.8.19.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Number = Annotated[float, Field(strict=True)]  # strict float still takes a JSON integer
ModelType = Literal["llm", "embedding", "rerank", "tts", "stt"]

# `ModelProviderIdType` of FastGPT 4.8.19 (packages/global/core/ai/provider.ts). Later versions add
# more ids; an unknown id is shown as "Other", so exports stick to this list.
PROVIDER_IDS: tuple[str, ...] = (
    "OpenAI", "Claude", "Gemini", "Meta", "MistralAI", "Groq", "AliCloud", "Qwen", "Doubao",
    "ChatGLM", "DeepSeek", "Ernie", "Moonshot", "MiniMax", "SparkDesk", "Hunyuan", "Baichuan",
    "StepFun", "Yi", "Ollama", "BAAI", "FishAudio", "Other",
)  # fmt: skip


class FastGPTExportError(ValueError):
    """The export cannot be made as asked (unknown override key, contradictory overrides, ...).

    A ValueError, so the CLI and the admin API can answer it as a user error (HTTP 400)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Exact(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------- config.json, 4.7 .. 4.8.18
class LegacyLLMModelItem(_Lenient):
    model: StrictStr
    name: StrictStr
    avatar: StrictStr | None = None
    maxContext: StrictInt
    maxResponse: StrictInt
    quoteMaxToken: StrictInt
    maxTemperature: Number
    charsPointsPrice: Number
    censor: StrictBool | None = None
    vision: StrictBool | None = None
    datasetProcess: StrictBool | None = None
    usedInClassify: StrictBool | None = None
    usedInExtractFields: StrictBool | None = None
    usedInToolCall: StrictBool | None = None
    usedInQueryExtension: StrictBool | None = None
    functionCall: StrictBool
    toolChoice: StrictBool
    customCQPrompt: StrictStr
    customExtractPrompt: StrictStr
    defaultSystemChatPrompt: StrictStr | None = None
    defaultConfig: dict[str, Any] | None = None
    fieldMap: dict[str, StrictStr] | None = None  # 4.8.15


class LegacyVectorModelItem(_Lenient):
    model: StrictStr
    name: StrictStr
    avatar: StrictStr | None = None
    defaultToken: StrictInt
    charsPointsPrice: Number
    maxToken: StrictInt
    weight: Number
    hidden: StrictBool | None = None
    defaultConfig: dict[str, Any] | None = None
    dbConfig: dict[str, Any] | None = None
    queryConfig: dict[str, Any] | None = None


class LegacyReRankModelItem(_Lenient):
    model: StrictStr
    name: StrictStr
    charsPointsPrice: Number
    requestUrl: StrictStr
    requestAuth: StrictStr


class AudioSpeechVoice(_Exact):
    label: StrictStr
    value: StrictStr
    bufferId: StrictStr


class LegacyAudioSpeechModelItem(_Lenient):
    model: StrictStr
    name: StrictStr
    charsPointsPrice: Number
    voices: Annotated[list[AudioSpeechVoice], Field(min_length=1)]


class LegacyWhisperModel(_Lenient):
    model: StrictStr
    name: StrictStr
    charsPointsPrice: Number


# ---------------------------------------------------------------- config.json, 4.8.19
class _V4819Price(_Exact):
    charsPointsPrice: Number | None = None
    inputPrice: Number | None = None  # set: FastGPT bills input and output tokens apart
    outputPrice: Number | None = None


class V4819LLMModelItem(_V4819Price):
    provider: StrictStr
    model: StrictStr
    name: StrictStr
    avatar: StrictStr | None = None
    maxContext: StrictInt
    maxResponse: StrictInt
    quoteMaxToken: StrictInt
    maxTemperature: Number
    censor: StrictBool | None = None
    vision: StrictBool | None = None
    datasetProcess: StrictBool | None = None
    usedInClassify: StrictBool | None = None
    usedInExtractFields: StrictBool | None = None
    usedInToolCall: StrictBool | None = None
    usedInQueryExtension: StrictBool | None = None
    functionCall: StrictBool
    toolChoice: StrictBool
    customCQPrompt: StrictStr
    customExtractPrompt: StrictStr
    defaultSystemChatPrompt: StrictStr | None = None
    defaultConfig: dict[str, Any] | None = None
    fieldMap: dict[str, StrictStr] | None = None


class V4819VectorModelItem(_V4819Price):
    provider: StrictStr
    model: StrictStr
    name: StrictStr
    avatar: StrictStr | None = None
    defaultToken: StrictInt
    maxToken: StrictInt
    weight: Number
    hidden: StrictBool | None = None
    defaultConfig: dict[str, Any] | None = None
    dbConfig: dict[str, Any] | None = None
    queryConfig: dict[str, Any] | None = None


class V4819ReRankModelItem(_V4819Price):
    provider: StrictStr | None = None  # undeclared for rerank in 4.8.19; harmless, used by 4.8.20
    model: StrictStr
    name: StrictStr
    requestUrl: StrictStr
    requestAuth: StrictStr


class V4819AudioSpeechModelItem(_V4819Price):
    provider: StrictStr
    model: StrictStr
    name: StrictStr
    voices: Annotated[list[AudioSpeechVoice], Field(min_length=1)]


class V4819WhisperModel(_V4819Price):
    provider: StrictStr
    model: StrictStr
    name: StrictStr


# ---------------------------------------------------------------- system_models, >= 4.8.20
class _BaseMetadata(_Exact):
    provider: StrictStr
    model: StrictStr
    name: StrictStr
    avatar: StrictStr | None = None
    isActive: StrictBool | None = None  # FastGPT registers only models with isActive: true
    isCustom: StrictBool | None = None
    isDefault: StrictBool | None = None
    isDefaultDatasetTextModel: StrictBool | None = None  # 4.10+
    isDefaultDatasetImageModel: StrictBool | None = None  # 4.10+
    requestUrl: StrictStr | None = None  # a full URL, e.g. http://modelport:3000/v1/rerank
    requestAuth: StrictStr | None = None  # the bare key; FastGPT adds "Bearer "
    charsPointsPrice: Number | None = None
    inputPrice: Number | None = None
    outputPrice: Number | None = None


class LLMMetadata(_BaseMetadata):
    type: Literal["llm"]
    maxContext: StrictInt
    maxResponse: StrictInt
    quoteMaxToken: StrictInt
    maxTemperature: Number | None = None  # null hides the temperature slider
    showTopP: StrictBool | None = None
    responseFormatList: list[StrictStr] | None = None
    showStopSign: StrictBool | None = None
    censor: StrictBool | None = None
    vision: StrictBool | None = None
    reasoning: StrictBool | None = None
    datasetProcess: StrictBool | None = None
    usedInClassify: StrictBool | None = None
    usedInExtractFields: StrictBool | None = None
    usedInToolCall: StrictBool | None = None
    usedInQueryExtension: StrictBool | None = None
    functionCall: StrictBool
    toolChoice: StrictBool
    customCQPrompt: StrictStr | None = None  # required up to 4.9, removed in 4.10
    customExtractPrompt: StrictStr | None = None
    defaultSystemChatPrompt: StrictStr | None = None
    defaultConfig: dict[str, Any] | None = None
    fieldMap: dict[str, StrictStr] | None = None


class EmbeddingMetadata(_BaseMetadata):
    type: Literal["embedding"]
    defaultToken: StrictInt
    maxToken: StrictInt
    weight: Number | None = None  # required by the type, defaulted by FastGPT's loader
    hidden: StrictBool | None = None
    normalization: StrictBool | None = None
    defaultConfig: dict[str, Any] | None = None
    dbConfig: dict[str, Any] | None = None
    queryConfig: dict[str, Any] | None = None


class RerankMetadata(_BaseMetadata):
    type: Literal["rerank"]


class TTSVoice(_Exact):
    label: StrictStr
    value: StrictStr


class TTSMetadata(_BaseMetadata):
    type: Literal["tts"]
    voices: Annotated[list[TTSVoice], Field(min_length=1)]  # empty: "voice not found"


class STTMetadata(_BaseMetadata):
    type: Literal["stt"]


ModelMetadata = Annotated[
    LLMMetadata | EmbeddingMetadata | RerankMetadata | TTSMetadata | STTMetadata,
    Field(discriminator="type"),
]


class SystemModelItem(_Exact):
    """One entry of the >= 4.8.20 model-config JSON (`updateWithJson`, the UI's JSON import)."""

    model: StrictStr
    metadata: ModelMetadata


# Which types an entry of each config.json list must satisfy (every one of them).
CONFIG_LIST_TYPES: dict[str, tuple[type[BaseModel], ...]] = {
    "llmModels": (LegacyLLMModelItem, V4819LLMModelItem),
    "vectorModels": (LegacyVectorModelItem, V4819VectorModelItem),
    "reRankModels": (LegacyReRankModelItem, V4819ReRankModelItem),
    "audioSpeechModels": (LegacyAudioSpeechModelItem, V4819AudioSpeechModelItem),
}
WHISPER_TYPES: tuple[type[BaseModel], ...] = (LegacyWhisperModel, V4819WhisperModel)

METADATA_TYPES: dict[str, type[_BaseMetadata]] = {
    "llm": LLMMetadata,
    "embedding": EmbeddingMetadata,
    "rerank": RerankMetadata,
    "tts": TTSMetadata,
    "stt": STTMetadata,
}


def known_fields(types: tuple[type[BaseModel], ...] | type[BaseModel]) -> frozenset[str]:
    """The keys FastGPT declares for an entry (the union over the given eras' types)."""
    classes = types if isinstance(types, tuple) else (types,)
    return frozenset(name for cls in classes for name in cls.model_fields)


def required_fields(cls: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, f in cls.model_fields.items() if f.is_required())
