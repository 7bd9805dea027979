#!/usr/bin/env bash
# Prints the path of a uv binary; installs a pinned one under .run/tools when none is on PATH.
set -euo pipefail
UV_VERSION="${UV_VERSION:-0.13.9}"
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
tools="$(pwd)/.run/tools"
if [ ! -x "$tools/bin/uv" ]; then
  py="$(scripts/find-python312.sh)"
  echo "installing uv $UV_VERSION into $tools" >&2
  "$py" -m pip install --quiet --disable-pip-version-check --target "$tools" "uv==$UV_VERSION" >&2
fi
echo "$tools/bin/uv"
