#!/usr/bin/env bash
# A/B of the engine at two commits in one window: `make bench-scale-ab A=<rev> B=<rev>`.
#
# This shared machine's speed moves by a third from hour to hour, so a sweep time is only
# comparable with one measured beside it. Runs `make bench-scale` (SCALE_ARGS, default 10,000
# symbols x 3 sweeps) four times, B A B A, with orchestrator/ checked out at each commit (bench/
# stays as it is), and writes each run's warm sweep seconds and the engine's and Triton's CPU
# seconds per sweep to bench/results/scale_ab.txt. orchestrator/ is put back at B at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
A=${A:?name the baseline commit: A=<rev>}
B=${B:-HEAD}
ARGS=${SCALE_ARGS:---sizes 10000 --repeats 3}
if ! git diff --quiet HEAD -- orchestrator/; then
  echo "orchestrator/ has uncommitted changes: commit or stash them first (this checks out A and B there)" >&2
  exit 2
fi
A=$(git rev-parse --short "$A"); B=$(git rev-parse --short "$B")
OUT=bench/results/scale_ab.txt
LOG=$(mktemp -d)
echo "# make bench-scale-ab A=$A B=$B SCALE_ARGS=\"$ARGS\", started $(date -u +%FT%TZ) on $(nproc) cores" > "$OUT"
echo "# per run: warm sweeps (after the cold start, after the restart, then one sweep in flight)" >> "$OUT"
trap 'git checkout -q "$B" -- orchestrator/' EXIT
for v in B A B A; do
  rev=$([ "$v" = A ] && echo "$A" || echo "$B")
  git checkout -q "$rev" -- orchestrator/
  make --no-print-directory bench-scale SCALE_ARGS="$ARGS" > "$LOG/$v.log" 2>&1
  {
    echo "$v $rev wall_s $(grep -o 'warm sweep [0-9]*/[0-9]*: [0-9.]* s' "$LOG/$v.log" | awk '{print $4}' | tr '\n' ' ')"
    echo "$v $rev engine_cpu_s $(grep -o 'engine [0-9.]*' "$LOG/$v.log" | awk '{print $2}' | tr '\n' ' ')"
    echo "$v $rev triton_cpu_s $(grep -o 'triton [0-9.]*' "$LOG/$v.log" | awk '{print $2}' | tr '\n' ' ')"
    echo "$v $rev cold_start_s $(grep -o 'cold start [0-9.]* s' "$LOG/$v.log" | awk '{print $3}' | tr '\n' ' ')"
  } | tee -a "$OUT"
done
git checkout -q -- bench/results/scale*.json bench/results/scale*.png 2>/dev/null || true
echo "-> $OUT"
