#!/usr/bin/env bash
# Removes what scripts/install.sh laid down (every path below $DESTDIR when set).
#
#   sudo scripts/uninstall.sh [--prefix /opt/tdxfer] [--purge]
#
# Stops and disables the service, removes the unit, <prefix>/app, <prefix>/bin/tdxfer and
# the /usr/local/bin/tdxfer symlink (only if it points to this install).
# Keeps /etc/tdxfer (config, key) and /var/lib/tdxfer (state) unless --purge, which also
# removes /var/log/tdxfer and the tdxfer user. /srv/tdxfer (show media) is never removed.
set -euo pipefail

PREFIX=/opt/tdxfer
PURGE=0
DESTDIR=${DESTDIR:-}
SERVICE_USER=tdxfer

die() { echo "uninstall.sh: $*" >&2; exit 1; }
note() { echo "uninstall.sh: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$PREFIX" in
  /*) ;;
  *) die "--prefix must be an absolute path, got $PREFIX" ;;
esac
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || die "--prefix / is not allowed"

ROOT_PREFIX="$DESTDIR$PREFIX"
UNIT="$DESTDIR/etc/systemd/system/tdxfer.service"
LINK="$DESTDIR/usr/local/bin/tdxfer"

live_systemd() { [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; }

if live_systemd; then
  systemctl disable --now tdxfer.service 2>/dev/null || true
fi
if [ -f "$UNIT" ]; then
  rm -f "$UNIT"
  note "removed the unit"
fi
if live_systemd; then systemctl daemon-reload; fi

# Only what install.sh created: a wrong --prefix must not delete someone else's folder.
if [ -d "$ROOT_PREFIX/app" ]; then
  grep -q '"name": *"tdxfer"' "$ROOT_PREFIX/app/package.json" 2>/dev/null \
    || die "$PREFIX/app does not look like a tdxfer install (no tdxfer package.json): not removing it"
  rm -rf "$ROOT_PREFIX/app"
  note "removed $PREFIX/app"
fi
rm -rf "$ROOT_PREFIX/.app.new" "$ROOT_PREFIX/.app.old"
if [ -f "$ROOT_PREFIX/bin/tdxfer" ]; then rm -f "$ROOT_PREFIX/bin/tdxfer"; fi
rmdir "$ROOT_PREFIX/bin" 2>/dev/null || true
rmdir "$ROOT_PREFIX" 2>/dev/null || true
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$PREFIX/bin/tdxfer" ]; then
  rm -f "$LINK"
fi

if [ "$PURGE" -eq 1 ]; then
  rm -rf "$DESTDIR/etc/tdxfer" "$DESTDIR/var/lib/tdxfer" "$DESTDIR/var/log/tdxfer"
  note "purged /etc/tdxfer, /var/lib/tdxfer and /var/log/tdxfer"
  if [ -z "$DESTDIR" ] && id -u "$SERVICE_USER" >/dev/null 2>&1; then
    if command -v userdel >/dev/null 2>&1; then userdel "$SERVICE_USER" || note "could not remove the $SERVICE_USER user"; fi
  fi
else
  note "kept /etc/tdxfer (config, key) and /var/lib/tdxfer (state): remove them with --purge"
fi
if [ -d "$DESTDIR/srv/tdxfer" ]; then note "left /srv/tdxfer (show media) in place"; fi
note "done"
