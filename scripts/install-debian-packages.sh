#!/usr/bin/env bash
# Installs Debian packages the project needs (servers it runs as private instances under .run/:
# mariadb-server, redis-server; chromium for the browser tests) without starting their system
# services. Needs root.
#   scripts/install-debian-packages.sh mariadb-server mariadb-client
set -euo pipefail
[ "$#" -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq "$@" >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
