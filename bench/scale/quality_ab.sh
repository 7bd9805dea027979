#!/usr/bin/env bash
# A/B of live quality's pass at two commits in one window: `make bench-quality-ab A=<rev>`.
#
# Runs `python -m bench.scale.quality` (QUALITY_ARGS) three times, B A B: B is this checkout,
# A a temporary git worktree at <rev> with this checkout's benchmark file copied in (so both
# measure the same way). Each run's lines go to bench/results/quality_ab.txt; quality_scale.json
# is left as the last B run wrote it.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
A=${A:?name the baseline commit: A=<rev>}
ARGS=${QUALITY_ARGS:-}
A=$(git rev-parse --short "$A")
B="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- orchestrator/ || echo '+changes')"
OUT=bench/results/quality_ab.txt
WORKTREE=$(mktemp -d)/a
trap 'git worktree remove --force "$WORKTREE" 2>/dev/null || true' EXIT
git worktree add -q --detach "$WORKTREE" "$A"
cp bench/scale/quality.py "$WORKTREE/bench/scale/quality.py"
echo "# make bench-quality-ab A=$A (B=$B) QUALITY_ARGS=\"$ARGS\", started $(date -u +%FT%TZ) on $(nproc) cores" > "$OUT"
for v in B A B; do
  dir=$([ "$v" = A ] && echo "$WORKTREE" || echo "$ROOT")
  rev=$([ "$v" = A ] && echo "$A" || echo "$B")
  echo "== $v $rev $(date -u +%T)" | tee -a "$OUT"
  # shellcheck disable=SC2086
  (cd "$dir" && PYTHONPATH="$dir" "$ROOT/.venv/bin/python" -m bench.scale.quality $ARGS) 2>&1 \
    | grep '^N=' | tee -a "$OUT"
done
echo "-> $OUT"
