#!/usr/bin/env bash
# wrk (Debian's package): the benchmarks' HTTP load generator. A C client keeps the load
# generator's own CPU small on a 2-core machine, so warm throughput measures the server.
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${ALLOW_APT_INSTALL:-1}" != 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
else
  echo "note: wrk is not installed (sudo apt-get install wrk); the benchmark falls back to its Python client" >&2
fi
