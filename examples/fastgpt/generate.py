"""Regenerate the example FastGPT files in this folder from a representative model list.

    python examples/fastgpt/generate.py          # writes config.json and model-config.json
    python examples/fastgpt/generate.py --check  # exits 1 when the committed files are stale

The models are those of the walkthrough (README.md): a local chat model under UID qwen-chat, the
bge-m3 embedding (1024 dimensions), the bge-reranker-v2-m3 reranker and whisper for speech.
The files are what `modelport export fastgpt` writes for them, with the compose file's URL and
token, so they work as they are with ../../docker-compose.yml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run from anywhere in a checkout

from gateway.export import build_config_json, build_model_config, dump_json  # noqa: E402
from gateway.model_info import ServedModel  # noqa: E402

BASE_URL = "http://modelport:3000"  # the modelport service as FastGPT's container sees it
API_KEY = "sk-modelport-fastgpt"  # MODELPORT_INITIAL_TOKEN in docker-compose.yml


def example_models() -> list[ServedModel]:
    return [
        ServedModel(
            id="qwen-chat",
            kind="chat",
            source="local",
            display_name="Qwen2.5 7B Instruct",
            abilities=["chat", "tools"],
            context_length=32768,
            max_output_tokens=8192,
        ),
        ServedModel(
            id="bge-m3",
            kind="embedding",
            source="local",
            dimensions=1024,
            max_input_tokens=8192,
        ),
        ServedModel(
            id="bge-reranker",
            kind="rerank",
            source="local",
            display_name="bge-reranker-v2-m3",
            max_input_tokens=8192,
        ),
        ServedModel(
            id="whisper",
            kind="audio_transcription",
            source="local",
            display_name="whisper-large-v3",
        ),
    ]


def render() -> dict[str, str]:
    """File name -> content, exactly as committed."""
    models = example_models()
    config = build_config_json(models, base_url=BASE_URL, api_key=API_KEY, overrides={})
    items = build_model_config(models, base_url=BASE_URL, api_key=API_KEY, overrides={})
    return {"config.json": dump_json(config), "model-config.json": dump_json(items)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        names = ", ".join(stale)
        print(f"stale: {names}; run python examples/fastgpt/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
