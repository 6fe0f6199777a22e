#!/usr/bin/env bash
# Installs what the tests need beyond npm packages, on a fresh machine (CI runs as root).
# Idempotent and quiet when everything is already there.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import zeroconf' 2>/dev/null || need+=(python3-zeroconf)
command -v ip >/dev/null || need+=(iproute2)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v curl >/dev/null || need+=(curl)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: missing ${need[*]}; run as root or install them (apt-get install ${need[*]}). Tests needing them will skip." >&2
    exit 0
  fi
  echo "test-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
