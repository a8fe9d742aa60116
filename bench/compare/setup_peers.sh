#!/usr/bin/env bash
# Build the peers that bench/compare/compare.py measures modelport against, each in its OWN venv
# (never inside modelport's .venv, never inside the repository), pinned so two machines get the
# same peers:
#   LiteLLM's proxy  -> $LITELLM_VENV (default /work/litellm-venv)
#   Xinference       -> $XINF_VENV    (default /work/xinf-venv, via bench/runtime/setup_xinference.sh)
#   bash bench/compare/setup_peers.sh [--gateway-only]
set -euo pipefail
cd "$(dirname "$0")/../.."
LITELLM_VENV="${LITELLM_VENV:-/work/litellm-venv}"
XINF_VENV="${XINF_VENV:-/work/xinf-venv}"
PY="${PYTHON:-python3.11}"
# The same litellm release modelport's lock pins for its litellm channels.
LITELLM_VERSION="$(sed -n 's/^litellm==//p' requirements/constraints.txt)"
if [ ! -x "$LITELLM_VENV/bin/python" ]; then
  "$PY" -m venv "$LITELLM_VENV"
fi
"$LITELLM_VENV/bin/pip" install -q --upgrade "pip==25.3"
# `litellm[proxy]` names a `litellm-proxy` distribution that PyPI does not have (the proxy's code
# ships inside litellm itself), so install litellm and the proxy extra's other requirements.
"$LITELLM_VENV/bin/pip" install -q "litellm==${LITELLM_VERSION}" \
  "gunicorn<24" "uvicorn<1" "uvloop<1" "fastapi<1" "starlette<2" "backoff<3" "pyyaml<7" \
  "rq<3" "orjson<4" "hiredis<4" "apscheduler<4" "fastapi-sso<1" "pyjwt<3" \
  "python-multipart<1" "cryptography<51" "websockets" \
  "semver==3.1.2" "expression==5.8.0" "mcp==2.3.0" "soundfile==0.14.0"  # imported by proxy_server
"$LITELLM_VENV/bin/python" -c "import litellm.proxy.proxy_server; from importlib.metadata import version; print('litellm', version('litellm'))"
if [ "${1:-}" != "--gateway-only" ]; then
  bash bench/runtime/setup_xinference.sh "$XINF_VENV"
fi
