#!/usr/bin/env bash
# One command from a fresh checkout to the whole test suite passing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
# every gate is installed above, so a skip is a failure unless tests/skips.py allows it
export MODELPORT_STRICT_SKIPS="${MODELPORT_STRICT_SKIPS:-1}"
export MODELPORT_VLLM_PYTHON="${MODELPORT_VLLM_PYTHON:-$(pwd)/.venv-vllm/bin/python}"
exec .venv/bin/python -m pytest -q -ra --durations=25 "$@"
