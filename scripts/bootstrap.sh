#!/usr/bin/env bash
# Set up (or bring up to date) everything modelport needs, idempotently.
#   scripts/bootstrap.sh serve   the service with its starter models and CPU engines
#   scripts/bootstrap.sh test    + test tools, Debian packages for the tests (chromium, espeak-ng,
#                                sox, ffmpeg), the vLLM venv, and PostgreSQL/Redis if they are down
# torch is pinned to 2.13.0 (CPU on machines whose pip finds the local CPU wheel): an unpinned
# torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${1:-serve}"
PY="${PYTHON:-python3}"
VENV=.venv

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel
fi
PIP="$VENV/bin/pip"

extras="providers,embeddings,llama-cpp,transformers,whisper,image,starter"
[ "$PROFILE" = test ] && extras="$extras,test"

stamp="$VENV/.modelport-$PROFILE-$(cat pyproject.toml requirements/*.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  log "installing modelport[$extras]"
  "$PIP" install -q torch==2.13.0
  "$PIP" install -q -e ".[$extras]"
  "$PIP" install -q --no-deps -r requirements/starter-nodeps.txt
  touch "$stamp"
fi

if [ "$PROFILE" = test ]; then
  need=()
  for pair in chromium:chromium chromedriver:chromium-driver espeak-ng:espeak-ng sox:sox \
              ffmpeg:ffmpeg; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing Debian packages: ${need[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ ! -x .venv-vllm/bin/python ] || ! .venv-vllm/bin/python -c "import vllm" 2>/dev/null; then
    log "creating .venv-vllm (vLLM CPU build, for the vLLM engine tests)"
    scripts/setup-vllm-venv.sh .venv-vllm >/dev/null
  fi
  scripts/services.sh
fi
