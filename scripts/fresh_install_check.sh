#!/usr/bin/env bash
# What a new user gets, checked end to end (CI runs it before the suite, so a broken install fails
# fast): the wheel, built from this checkout, in a brand-new venv with the serving extras only (no
# test tools), installed from the lock; `modelport serve --workers 2` started from a temporary
# directory on a fresh home with the starter models; one chat, one embedding and one
# transcription (scripts/smoke.py, standard library only); stopped; no process left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="${PYTHON:-python3}"
eval "$(grep -E '^(SERVE_EXTRAS|CONSTRAINTS)=' scripts/bootstrap.sh)"

log() { printf '\033[1m==> fresh install: %s\033[0m\n' "$*" >&2; }
WORK=$(mktemp -d /tmp/modelport-fresh.XXXXXX)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill -9 "$SERVER" 2>/dev/null || true; fi
  pkill -9 -f "$WORK/" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "building the wheel"
"$PY" -m pip wheel -q --no-deps "$ROOT" -w "$WORK/dist" 2> >(grep -v "WARNING: Location" >&2)
WHEEL=$(ls "$WORK"/dist/modelport-*.whl)

log "installing $(basename "$WHEEL")[$SERVE_EXTRAS] into a new venv"
"$PY" -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/pip" install -q -c "$ROOT/$CONSTRAINTS")
"${PIP[@]}" torch==2.13.0 2> >(grep -v "WARNING: Location" >&2)
"${PIP[@]}" "$WHEEL[$SERVE_EXTRAS]" 2> >(grep -v "WARNING: Location" >&2)
"$WORK/venv/bin/pip" install -q --no-deps -r "$ROOT/requirements/starter-nodeps.txt" \
  2> >(grep -v "WARNING: Location" >&2)
if "$WORK/venv/bin/python" -c "import pytest" 2>/dev/null; then
  echo "fresh install: pytest is installed, so a test tool leaked into the serving extras" >&2
  exit 1
fi
"$WORK/venv/bin/modelport" check

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADMIN="fresh-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$WORK/cwd"
log "serving from $WORK/cwd on port $PORT (--workers 2, starter models)"
(
  cd "$WORK/cwd"
  exec env -u MODELPORT_CONFIG -u MODELPORT_DATABASE_URL -u MODELPORT_REDIS_URL \
    MODELPORT_HOME="$WORK/home" MODELPORT_STARTER=1 MODELPORT_ADMIN_TOKEN="$ADMIN" \
    "$WORK/venv/bin/modelport" serve --port "$PORT" --workers 2
) >"$WORK/server.log" 2>&1 &
SERVER=$!

if ! "$WORK/venv/bin/python" "$ROOT/scripts/smoke.py" --url "http://127.0.0.1:$PORT" \
    --admin-token "$ADMIN" --wait 300; then
  echo "---- server log ----" >&2
  tail -n 80 "$WORK/server.log" >&2
  exit 1
fi

log "stopping the server"
kill -TERM "$SERVER"
for _ in $(seq 1 60); do
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 1
done
if kill -0 "$SERVER" 2>/dev/null; then
  echo "fresh install: the server did not stop within 60 s of SIGTERM" >&2
  exit 1
fi
sleep 1
left=$(pgrep -af "$WORK/" || true)
if [ -n "$left" ]; then
  echo "fresh install: processes left after the server stopped:" >&2
  echo "$left" >&2
  exit 1
fi
if grep -E "Traceback|ERROR" "$WORK/server.log" >&2; then
  echo "fresh install: the server logged errors (above)" >&2
  exit 1
fi
log "passed"
