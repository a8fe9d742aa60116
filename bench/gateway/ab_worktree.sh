#!/usr/bin/env bash
# Interleaved A/B of overhead.py: a base revision (checked out in a throwaway worktree) against
# the working tree, same venv, alternating quick runs so machine noise hits both sides alike.
# Both sides run this tree's benchmark scripts; only the gateway code served differs
# (BENCH_GATEWAY_ROOT, see bench/common/gateway_proc.py), so new bench flags work on old code.
#   bench/gateway/ab_worktree.sh BASE_REV [ROUNDS] [overhead.py args...]
# Prints every table row prefixed with its side and round; raw outputs go to $AB_OUT (/tmp/ab).
set -euo pipefail
cd "$(dirname "$0")/../.."
base_rev="${1:?base revision}"; rounds="${2:-3}"; shift $(( $# >= 2 ? 2 : 1 ))
args=("$@"); [ ${#args[@]} -eq 0 ] && args=(--quick --conns 50)
here="$(pwd)"; py="$here/.venv/bin/python"; out="${AB_OUT:-/tmp/ab}"
base="$(mktemp -d)/base"
git worktree add -q --detach "$base" "$base_rev"
trap 'git worktree remove --force "$base"' EXIT
mkdir -p "$out"
for i in $(seq "$rounds"); do
  for side in base new; do
    root="$here"; [ "$side" = base ] && root="$base"
    (BENCH_GATEWAY_ROOT="$root" "$py" bench/gateway/overhead.py "${args[@]}" \
      > "$out/${side}_$i.txt" 2>&1)
    git -C "$here" checkout -q -- bench/gateway/results 2>/dev/null || true
    grep -E '^\| (non-)?stream' "$out/${side}_$i.txt" | sed "s/^/$side $i /"
  done
done
