#!/usr/bin/env bash
# Prints the path of a CPython 3.12 interpreter that has a shared libpython
# (Triton's Python-backend stub links against it); exits 1 with a message if none.
set -euo pipefail

candidates=()
[ -n "${PYTHON312:-}" ] && candidates+=("$PYTHON312")
command -v python3.12 >/dev/null 2>&1 && candidates+=("$(command -v python3.12)")
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
if [ -d "$pyenv_root/versions" ]; then
  while IFS= read -r dir; do candidates+=("$dir/bin/python3.12"); done \
    < <(ls -d "$pyenv_root"/versions/3.12* 2>/dev/null | sort -rV)
fi
candidates+=(/usr/local/bin/python3.12 /usr/bin/python3.12)
if command -v uv >/dev/null 2>&1; then
  found=$(uv python find --no-python-downloads 3.12 2>/dev/null || true)
  [ -n "$found" ] && candidates+=("$found")
fi

for py in "${candidates[@]}"; do
  [ -x "$py" ] || continue
  if "$py" - <<'PY' 2>/dev/null; then
import os, sys, sysconfig
ok = sys.version_info[:2] == (3, 12)
libdir = sysconfig.get_config_var("LIBDIR") or ""
ok = ok and os.path.exists(os.path.join(libdir, "libpython3.12.so.1.0"))
sys.exit(0 if ok else 1)
PY
    echo "$py"
    exit 0
  fi
done

cat >&2 <<'MSG'
error: no Python 3.12 interpreter with a shared libpython3.12 was found.
  looked at: $PYTHON312, python3.12 on PATH, ~/.pyenv/versions/3.12*, /usr/local/bin, /usr/bin, `uv python find 3.12`.
  fix: install one (e.g. `pyenv install 3.12` with PYTHON_CONFIGURE_OPTS=--enable-shared,
  or Debian's python3.12 + libpython3.12) and/or point PYTHON312=/path/to/python3.12 at it.
MSG
exit 1
