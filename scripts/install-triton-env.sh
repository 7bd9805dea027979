#!/usr/bin/env bash
# Builds the Triton model environment (.venv-triton): the pytriton wheel's real tritonserver,
# the Python-backend stub for this interpreter, and numpy<2 + onnxruntime + xgboost for the models.
set -euo pipefail
uv="$1"; py="$2"; env_dir="${3:-.venv-triton}"
"$uv" venv --quiet --allow-existing --python "$py" "$env_dir"
"$uv" pip install --quiet --python "$env_dir/bin/python" -r requirements/triton-model-env.txt
site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
server="$site/pytriton/tritonserver"
cp "$server/python_backend_stubs/3.12/triton_python_backend_stub" "$server/backends/python/"
"$server/bin/tritonserver" --help >/dev/null 2>&1 || {
  # Only to surface a missing shared library with a readable message.
  LD_LIBRARY_PATH="$site/nvidia_pytriton.libs" ldd "$server/bin/tritonserver" | grep 'not found' >&2 || true
}
echo "triton model environment ready: $env_dir ($("$env_dir/bin/python" -c 'import numpy; print("numpy", numpy.__version__)'))"
