#!/usr/bin/env bash
# One call on a GPU machine: unpack the carried Triton bundle and numpy<2 (bench/gpu/prepare_carry.sh
# made them), then bench/gpu/driver.py: tritonserver (wheel, Python backend) serving the gpu
# profile's models on the GPU, perf_analyzer at c = 1..64, the in-process ceiling.
# Usage: bench/gpu/run_on_device.sh [--cpu] [driver options, e.g. --budget-s 240]
#   --cpu   the same steps with torch on this machine's CPU (the side-by-side run)
# Env: OUT (results folder; default bench/gpu/results/latest), GPU_BENCH_CARRY (default
#      .run/gpu-carry), GPU_BENCH_PYTHON (default python3: needs torch, numpy, onnx), GPU_BENCH_WORK.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; root="$(cd "$here/../.." && pwd)"
carry="${GPU_BENCH_CARRY:-$root/.run/gpu-carry}"
work="${GPU_BENCH_WORK:-/tmp/gpu-bench}"
out="${OUT:-$root/bench/gpu/results/latest}"
python="${GPU_BENCH_PYTHON:-python3}"
device=cuda
if [ "${1:-}" = "--cpu" ]; then device=cpu; shift; fi
mkdir -p "$work" "$out"
exec > >(tee -a "$out/run.log") 2>&1
echo "run_on_device: $(date -u '+%F %T') UTC, device=$device, python=$("$python" -c 'import sys; print(sys.executable)')"
ls "$carry"/triton-bundle.tar.xz "$carry"/numpy-1.26.4-*.whl >/dev/null || {
  echo "error: $carry lacks triton-bundle.tar.xz / numpy-1.26.4 wheel: run bench/gpu/prepare_carry.sh" >&2; exit 2; }
t0=$(date +%s)
if [ ! -x "$work/bundle/site/pytriton/tritonserver/bin/tritonserver" ]; then
  "$python" - "$carry/triton-bundle.tar.xz" "$work/bundle" <<'PY' || exit 3
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    t.extractall(sys.argv[2], filter="fully_trusted")
PY
fi
echo "unpacked in $(( $(date +%s) - t0 )) s"
nvidia-smi -L 2>/dev/null || true
PYTHONUNBUFFERED=1 "$python" "$here/driver.py" --device "$device" --bundle "$work/bundle" \
  --numpy-wheel "$(ls "$carry"/numpy-1.26.4-*.whl | head -n1)" --work "$work" --out "$out" "$@"
rc=$?
echo "driver exit status $rc"
exit $rc
