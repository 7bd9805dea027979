#!/usr/bin/env bash
# Installs perf_analyzer into the app environment: the binary from the tritonclient 2.41.0 wheel,
# libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel, and Debian's libb64-0d.
set -euo pipefail
py="$1"; venv="${2:-.venv}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/trading-ml-engine/wheels"
libexec="$venv/libexec/perf_analyzer"
mkdir -p "$cache" "$libexec"

if ! ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's libb64-0d (perf_analyzer needs it)" >&2
    apt-get install -y -qq libb64-0d >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libb64-0d >/dev/null; }
  else
    echo "error: perf_analyzer needs libb64.so.0d: run 'sudo apt-get install libb64-0d'" >&2; exit 1
  fi
fi

fetch() {  # fetch SPEC PATTERN -> path of the cached wheel
  local found
  found=$(ls "$cache"/$2 2>/dev/null | head -n1 || true)
  if [ -z "$found" ]; then
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --python-version 3.12 \
      -d "$cache" "$1" >&2
    found=$(ls "$cache"/$2 | head -n1)
  fi
  echo "$found"
}
client_whl=$(fetch "tritonclient==2.41.0" "tritonclient-2.41.0-*manylinux*x86_64*.whl")
cudart_whl=$(fetch "nvidia-cuda-runtime-cu12==12.4.127" "nvidia_cuda_runtime_cu12-12.4.127-*.whl")

"$py" - "$client_whl" "$cudart_whl" "$libexec" <<'PY'
import os, sys, zipfile, shutil
client, cudart, dest = sys.argv[1:]
def extract(whl, suffix, name):
    with zipfile.ZipFile(whl) as z:
        member = next(m for m in z.namelist() if m.endswith(suffix))
        with z.open(member) as src, open(os.path.join(dest, name), "wb") as out:
            shutil.copyfileobj(src, out)
    os.chmod(os.path.join(dest, name), 0o755)
extract(client, "/bin/perf_analyzer", "perf_analyzer")
extract(cudart, "/lib/libcudart.so.12", "libcudart.so.12")
PY

cat > "$venv/bin/perf_analyzer" <<WRAP
#!/usr/bin/env bash
here="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")/../libexec/perf_analyzer" && pwd)"
LD_LIBRARY_PATH="\$here\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$here/perf_analyzer" "\$@"
WRAP
chmod +x "$venv/bin/perf_analyzer"
"$venv/bin/perf_analyzer" --version >/dev/null 2>&1 || "$venv/bin/perf_analyzer" --help 2>&1 | head -n 1 >/dev/null
echo "perf_analyzer ready: $venv/bin/perf_analyzer"
