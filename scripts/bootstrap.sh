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

# The Dockerfile's EXTRAS and this line name the same extras (tests/test_install_files.py).
SERVE_EXTRAS="providers,embeddings,llama-cpp,transformers,whisper,image,starter"
# Every install (this script, the Dockerfile, CI's fresh-install check) takes its versions from
# this lock; regenerate it with scripts/lock.sh after changing pyproject.toml.
CONSTRAINTS=requirements/constraints.txt
extras="$SERVE_EXTRAS"
[ "$PROFILE" = test ] && extras="$extras,tts,test"  # tts: opt-in for users (GPL runtime)

stamp="$VENV/.modelport-$PROFILE-$(cat pyproject.toml requirements/*.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  log "installing modelport[$extras]"
  "$PIP" install -q -c "$CONSTRAINTS" torch==2.13.0
  "$PIP" install -q -c "$CONSTRAINTS" -e ".[$extras]"
  "$PIP" install -q --no-deps -r requirements/starter-nodeps.txt
  # The stamp means "this venv serves": written only once the installed server works, so a
  # failed or half-done install is repaired by the next run.
  "$VENV/bin/modelport" check \
    || { echo "modelport does not work in $VENV; run this script again to repair it" >&2; exit 1; }
  rm -f "$VENV"/.modelport-"$PROFILE"-*
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
