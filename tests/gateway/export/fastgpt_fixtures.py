"""Served-model lists for the FastGPT export tests, and paths to FastGPT's own sample files.

`fastgpt_samples/` holds FastGPT's sample config.json files, documentation examples and
built-in provider model lists, copied unedited from its release tags (see SOURCES.md there).
"""

from __future__ import annotations

from pathlib import Path

import json5

from gateway.model_info import ServedModel

SAMPLES = Path(__file__).parent / "fastgpt_samples"
CONFIG_SAMPLES = sorted(SAMPLES.glob("config-v*.json"))
BASE_URL = "http://modelport:3000"
API_KEY = "sk-test-fastgpt"


def load_sample(name: str) -> object:
    return json5.loads((SAMPLES / name).read_text(encoding="utf-8"))


def seed_models() -> list[ServedModel]:
    """The seed flow's models: a chat LLM, an embedding, a reranker, speech-to-text, and a few
    that test the edges (no tools, unknown limits, completion-only, image, TTS, priced)."""
    return [
        ServedModel(
            id="small-chat",
            kind="chat",
            source="local",
            abilities=["chat"],
            context_length=8192,
        ),
        ServedModel(
            id="qwen-chat",
            kind="chat",
            source="local",
            display_name="Qwen",
            abilities=["chat", "tools", "vision"],
            context_length=32768,
            max_output_tokens=4096,
        ),
        ServedModel(id="remote-unknown", kind="chat", source="channel"),
        ServedModel(
            id="deepseek-reasoner",
            kind="chat",
            source="channel",
            abilities=["chat", "reasoning"],
            context_length=65536,
            input_price=0.55,
            output_price=2.19,
        ),
        ServedModel(id="tiny-completion", kind="chat", abilities=["generate"], context_length=2048),
        ServedModel(
            id="bge-m3",
            kind="embedding",
            source="local",
            dimensions=1024,
            max_input_tokens=8192,
        ),
        ServedModel(id="big-embed", kind="embedding", dimensions=4096, context_length=32768),
        ServedModel(id="bge-reranker", kind="rerank", source="local", max_input_tokens=512),
        ServedModel(id="whisper", kind="audio_transcription", source="local"),
        ServedModel(id="cosy-tts", kind="audio_speech", source="local"),
        ServedModel(id="sd-turbo", kind="image_generation", source="local"),
    ]


def by_model(entries: list[dict]) -> dict[str, dict]:
    return {e["model"]: e for e in entries}
