#!/usr/bin/env bash
# Installs Debian's redis-server without starting the system service (the project runs its own
# private instance under .run/redis). Needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq redis-server >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
