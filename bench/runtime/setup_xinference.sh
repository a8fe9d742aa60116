#!/usr/bin/env bash
# Build the Xinference peer used by the side-by-side runtime benchmarks, in its OWN venv
# (never inside modelport's .venv, never inside the repository).
#   bash bench/runtime/setup_xinference.sh [VENV_DIR]      (default /work/xinf-venv)
# Pinned so that two machines get the same peer. torch is pinned to the CPU build
# (an unpinned torch pulls a multi-GB CUDA build).
set -euo pipefail
VENV="${1:-/work/xinf-venv}"
PY="${PYTHON:-python3.11}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade "pip==25.3" 
"$VENV/bin/pip" install -q "torch==2.13.0"
# The constraint keeps pip from "upgrading" torch to a CUDA build while resolving xinference.
CONSTRAINTS="$(mktemp)"
echo "torch==2.13.0" > "$CONSTRAINTS"
"$VENV/bin/pip" install -q -c "$CONSTRAINTS" \
  "xinference==4.1.0" \
  "xllamacpp==2026.10.11549" \
  "sentence-transformers==6.2.0" \
  "transformers==5.17.0"
rm -f "$CONSTRAINTS"
# Xinference pulls a CUDA torchvision that breaks transformers' imports on this CPU build.
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import xinference, xllamacpp, sentence_transformers; print('xinference', xinference.__version__)"
