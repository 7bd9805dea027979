#!/usr/bin/env bash
# Packs what a GPU machine without a registry needs to run bench/gpu into one ignored folder
# (default .run/gpu-carry, ~46 MB, to carry with a device call):
#   triton-bundle.tar.xz  the pytriton wheel's tritonserver + Python backend + 3.12 stub + bundled
#                         libraries (laid out as in the wheel, stripped), perf_analyzer with
#                         libcudart.so.12 and libb64, a stripped libpython3.12 and libssl/libcrypto
#                         as fallbacks for a machine that lacks them
#   numpy-1.26.4-*.whl    numpy<2 for the Python-backend stub (numpy 2 corrupts its inputs)
# Needs `make triton-env perf-analyzer` done here. Usage: bench/gpu/prepare_carry.sh [DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${1:-$root/.run/gpu-carry}"
site="$(ls -d "$root"/.venv-triton/lib/python3.*/site-packages | tail -n1)"
pa="$root/.venv/libexec/perf_analyzer"
[ -x "$site/pytriton/tritonserver/bin/tritonserver" ] || { echo "error: run 'make triton-env' first" >&2; exit 1; }
[ -x "$pa/perf_analyzer" ] || { echo "error: run 'make perf-analyzer' first" >&2; exit 1; }
libpython="$("$root/.venv-triton/bin/python" -c 'import sysconfig,os; print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")))')"
mkdir -p "$dest"
if [ ! -f "$dest/triton-bundle.tar.xz" ]; then
  stage="$(mktemp -d)"; trap 'rm -rf "$stage"' EXIT
  b="$stage/bundle"; server="$b/site/pytriton/tritonserver"
  mkdir -p "$server/bin" "$server/backends/python" "$b/site/nvidia_pytriton.libs" "$b/pa" "$b/pa-fallback" "$b/pylib"
  cp "$site/pytriton/tritonserver/bin/tritonserver" "$server/bin/"
  cp "$site/pytriton/tritonserver/backends/python/libtriton_python.so" \
     "$site/pytriton/tritonserver/backends/python/triton_python_backend_utils.py" "$server/backends/python/"
  cp "$site/pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub" "$server/backends/python/"
  # every bundled library but the wheel's own libpython3.13 (PyTriton's, not the server's)
  find "$site/nvidia_pytriton.libs" -maxdepth 1 -type f ! -name 'libpython3*' -exec cp {} "$b/site/nvidia_pytriton.libs/" \;
  cp "$pa/perf_analyzer" "$pa/libcudart.so.12" "$b/pa/"
  cp "$(ldconfig -p | awk '/libb64.so.0d/ {print $NF; exit}')" "$b/pa/libb64.so.0d"
  for lib in libssl.so.3 libcrypto.so.3; do cp "$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')" "$b/pa-fallback/$lib"; done
  cp "$libpython" "$b/pylib/"
  find "$b" -type f \( -name '*.so*' -o -name tritonserver -o -name perf_analyzer -o -name triton_python_backend_stub \) \
    -exec strip --strip-unneeded {} \;
  echo "packing $(du -sh "$b" | cut -f1) into $dest/triton-bundle.tar.xz (xz -9, a minute or two)"
  tar -C "$b" -cf - . | xz -9 -T0 > "$dest/triton-bundle.tar.xz.tmp"
  mv "$dest/triton-bundle.tar.xz.tmp" "$dest/triton-bundle.tar.xz"
fi
if ! ls "$dest"/numpy-1.26.4-*.whl >/dev/null 2>&1; then
  "$root/.venv-triton/bin/python" -m pip --version >/dev/null 2>&1 && py="$root/.venv-triton/bin/python" || py=python3
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" numpy==1.26.4
fi
du -sh "$dest"/*
