#!/usr/bin/env bash
# Regenerate requirements/constraints.txt, the one lock that scripts/bootstrap.sh, the Dockerfile
# and CI's fresh-install check install from. Run it after changing pyproject.toml's dependencies.
#
# Inputs: pyproject.toml (every extra but vllm, which lives in its own venv) and
# requirements/lock.in (the torch pin). Resolved for CPython 3.11 on manylinux x86_64; on other
# platforms pip takes the same versions where they exist. uv itself is pinned and kept in
# .venv-tools (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
TOOLS=.venv-tools
if [ ! -x "$TOOLS/bin/uv" ] || [ "$("$TOOLS/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  "${PYTHON:-python3}" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q "uv==$UV_VERSION"
fi
extras=()
for e in providers embeddings llama-cpp transformers whisper image tts oneapi-import starter test; do
  extras+=(--extra "$e")
done
"$TOOLS/bin/uv" pip compile pyproject.toml requirements/lock.in "${extras[@]}" \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command scripts/lock.sh \
  -o requirements/constraints.txt
