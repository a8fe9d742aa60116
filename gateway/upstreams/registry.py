"""Channel type -> upstream adaptor, and base URL conventions per type.

Type numbers are One API's (songquanpeng/one-api relay/channeltype/define.go, base URLs from url.go)
for every type One API has, so its users' scripts and an imported One API database keep working.
Xinference, which One API lacks, is 1047: New API's 47 (QuantumNous/new-api constant/channel.go) is
One API's Baidu V2, and New API keeps 59-999 for its own growth.
Every type in CHANNEL_TYPES must map to an adaptor kind that `build_upstreams` constructs; a test
walks the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gateway.upstreams.base import Upstream


@dataclass(frozen=True, slots=True)
class ChannelType:
    name: str
    kind: str  # "openai" | "litellm" | "local"
    default_base_url: str = ""
    provider: str = ""  # litellm provider prefix
    stream_usage: bool = True  # whether stream_options.include_usage may be injected
    hint: str = ""


CHANNEL_TYPES: dict[int, ChannelType] = {
    0: ChannelType("Local runtime", "local", hint="built in: the UIDs of launched models"),
    1: ChannelType("OpenAI", "openai", "https://api.openai.com", hint="host without /v1"),
    3: ChannelType(
        "Azure OpenAI",
        "litellm",
        provider="azure",
        hint="https://<resource>.openai.azure.com; config.api_version",
    ),
    8: ChannelType(
        "Custom (OpenAI-compatible)", "openai", stream_usage=False, hint="host without /v1"
    ),
    14: ChannelType("Anthropic", "litellm", "https://api.anthropic.com", provider="anthropic"),
    17: ChannelType(
        "Alibaba DashScope", "openai", "https://dashscope.aliyuncs.com/compatible-mode"
    ),
    20: ChannelType("OpenRouter", "openai", "https://openrouter.ai/api", stream_usage=False),
    24: ChannelType(
        "Google Gemini", "litellm", "https://generativelanguage.googleapis.com", provider="gemini"
    ),
    25: ChannelType("Moonshot", "openai", "https://api.moonshot.cn"),
    28: ChannelType("Mistral", "openai", "https://api.mistral.ai", stream_usage=False),
    29: ChannelType("Groq", "openai", "https://api.groq.com/openai", stream_usage=False),
    30: ChannelType("Ollama", "openai", "http://127.0.0.1:11434", hint="Ollama's /v1 API"),
    31: ChannelType(
        "01.AI (LingYiWanWu)", "openai", "https://api.lingyiwanwu.com", stream_usage=False
    ),
    32: ChannelType("StepFun", "openai", "https://api.stepfun.com", stream_usage=False),
    36: ChannelType("DeepSeek", "openai", "https://api.deepseek.com"),
    39: ChannelType("Together AI", "openai", "https://api.together.xyz", stream_usage=False),
    44: ChannelType("SiliconFlow", "openai", "https://api.siliconflow.cn"),
    45: ChannelType("xAI", "openai", "https://api.x.ai", stream_usage=False),
    47: ChannelType(
        "Baidu Qianfan V2", "openai", "https://qianfan.baidubce.com/v2", stream_usage=False
    ),
    49: ChannelType(
        "Alibaba Bailian",
        "openai",
        "https://dashscope.aliyuncs.com/compatible-mode",
        stream_usage=False,
    ),
    50: ChannelType(
        "OpenAI-compatible",
        "openai",
        stream_usage=False,
        hint="base URL with /v1 (without is tolerated)",
    ),
    1047: ChannelType(
        "Xinference", "openai", "http://127.0.0.1:9997", hint="New API calls this type 47"
    ),
}

_VERSION_TAIL = re.compile(r"/v\d+[a-z0-9]*$")


def channel_type(type_: int) -> ChannelType:
    try:
        return CHANNEL_TYPES[type_]
    except KeyError:
        known = ", ".join(f"{k} {v.name}" for k, v in CHANNEL_TYPES.items() if k)
        raise ValueError(f"unknown channel type {type_}; known types: {known}") from None


def normalise_base_url(type_: int, base_url: str) -> str:
    """OpenAI-shaped types end in /v1 whether or not the user wrote it (One API's types 1 and 8
    take the host alone, type 50 the /v1 URL: both spellings work here)."""
    ct = channel_type(type_)
    url = (base_url or ct.default_base_url).strip().rstrip("/")
    if not url or ct.kind != "openai":
        return url
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not _VERSION_TAIL.search(path):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def build_upstreams() -> dict[str, Upstream]:
    """One adaptor instance per kind; the local kind reuses the OpenAI pass-through."""
    from gateway.upstreams.litellm_provider import LitellmUpstream
    from gateway.upstreams.openai_compat import OpenAICompatUpstream

    openai = OpenAICompatUpstream()
    return {"openai": openai, "local": openai, "litellm": LitellmUpstream()}
