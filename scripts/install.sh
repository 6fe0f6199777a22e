#!/usr/bin/env bash
# Installs the built tdxfer agent as a systemd service (Linux).
#
#   npm ci && npm run build          # once, in the source checkout
#   sudo scripts/install.sh [--prefix /opt/tdxfer] [--no-enable]
#
# Lays down (every path below $DESTDIR when set, for packaging and tests):
#   <prefix>/app/            dist/src, package.json, package-lock.json, README.md, config/,
#                            and the production node_modules copied from this checkout
#                            (offline and reproducible: exactly the locked versions
#                            `npm ls --omit=dev` reports; no registry access at install time)
#   <prefix>/bin/tdxfer      launcher: the node found at install time ($TDXFER_NODE overrides)
#   /usr/local/bin/tdxfer    symlink to the launcher (left alone if it is something else)
#   /etc/systemd/system/tdxfer.service   systemd/tdxfer.service for the launcher, written by
#                            `tdxfer service install --program <prefix>/bin/tdxfer --no-enable`
#   /etc/tdxfer/config.json  a minimal starter (`tdxfer init`: a new key, inbox and outbox in
#                            /srv/tdxfer, no legacy listener, no hooks), only if absent
#   /var/lib/tdxfer          state, owned by tdxfer, mode 0750
#   /srv/tdxfer              default place for inboxes/outboxes (writable by the service)
# and creates the `tdxfer` system user and enables the unit (both skipped under DESTDIR;
# enabling also skipped with --no-enable or without a running systemd). The service is not
# started: edit /etc/tdxfer/config.json first. Running it again upgrades in place; with the
# same build it changes nothing. scripts/uninstall.sh reverses it.
set -euo pipefail

PREFIX=/opt/tdxfer
ENABLE=1
DESTDIR=${DESTDIR:-}
SERVICE_USER=tdxfer

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
note() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --no-enable) ENABLE=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$PREFIX" in
  /*) ;;
  *) die "--prefix must be an absolute path, got $PREFIX" ;;
esac
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || die "--prefix / is not allowed"
case "$PREFIX" in
  *[!A-Za-z0-9/._+-]*) die "--prefix may only contain letters, digits and / . _ + - (it is written into the unit file)" ;;
esac

SRC=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$SRC/dist/src/cli/main.js" ] || die "no build in $SRC/dist: run \`npm ci && npm run build\` in $SRC first"
[ -f "$SRC/package-lock.json" ] || die "$SRC/package-lock.json is missing: install from a complete checkout"
[ -d "$SRC/node_modules" ] || die "$SRC/node_modules is missing: run \`npm ci\` in $SRC first"

# The node the service will run. Checked here so a too-old node fails now, not at boot.
NODE_BIN=${TDXFER_NODE:-$(command -v node || true)}
if [ -z "$NODE_BIN" ]; then
  [ -n "$DESTDIR" ] || die "node not found: install Node.js 20.19 or newer, or set TDXFER_NODE=/path/to/node"
  NODE_BIN=/usr/bin/node
  note "node not found; the launcher will use $NODE_BIN (set TDXFER_NODE to change)"
else
  NODE_BIN=$(cd "$(dirname "$NODE_BIN")" && pwd)/$(basename "$NODE_BIN")
  "$NODE_BIN" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
    || die "$NODE_BIN is Node $("$NODE_BIN" --version); tdxfer needs 20.19 or newer (set TDXFER_NODE to another node)"
fi

ROOT_PREFIX="$DESTDIR$PREFIX"
APP="$ROOT_PREFIX/app"
UNIT_DIR="$DESTDIR/etc/systemd/system"
ETC="$DESTDIR/etc/tdxfer"
STATE="$DESTDIR/var/lib/tdxfer"
SHOW="$DESTDIR/srv/tdxfer"
LINK="$DESTDIR/usr/local/bin/tdxfer"

# put FILE MODE: writes FILE from stdin only when the content differs, then sets MODE (idempotent).
put() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
  chmod "$2" "$1"
}

# ---- user ----
if [ -n "$DESTDIR" ]; then
  note "DESTDIR is set: not creating the $SERVICE_USER user (the package's postinst must)"
elif id -u "$SERVICE_USER" >/dev/null 2>&1; then
  :
else
  NOLOGIN=$(command -v nologin || echo /usr/sbin/nologin)
  if command -v useradd >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/tdxfer --no-create-home --shell "$NOLOGIN" --comment "tdxfer agent" "$SERVICE_USER"
  elif command -v adduser >/dev/null 2>&1; then
    adduser -S -D -H -h /var/lib/tdxfer -s "$NOLOGIN" "$SERVICE_USER"
  else
    die "cannot create the $SERVICE_USER user: neither useradd nor adduser found"
  fi
  note "created system user $SERVICE_USER"
fi

# ---- application ----
mkdir -p "$ROOT_PREFIX/bin"
STAGE="$ROOT_PREFIX/.app.new"
rm -rf "$STAGE"
mkdir -p "$STAGE"
cleanup() { rm -rf "$STAGE" "$ROOT_PREFIX/.app.old"; }
trap cleanup EXIT

cp -pR "$SRC/dist/src" "$STAGE/dist-src.tmp"
mkdir -p "$STAGE/dist"
mv "$STAGE/dist-src.tmp" "$STAGE/dist/src"
# Source maps point at sources that are not installed.
find "$STAGE/dist" -name '*.map' -type f -exec rm -f {} +
for f in package.json package-lock.json README.md LICENSE; do
  if [ -f "$SRC/$f" ]; then cp -p "$SRC/$f" "$STAGE/$f"; fi
done
if [ -d "$SRC/config" ]; then cp -pR "$SRC/config" "$STAGE/config"; fi

# Production dependencies, each package without its nested node_modules (those that are
# production dependencies are listed separately by npm ls).
pkgs=$(cd "$SRC" && npm ls --omit=dev --all --parseable 2>/dev/null) \
  || die "npm ls reports a broken dependency tree in $SRC: run \`npm ci\` there first"
(
  cd "$SRC"
  printf '%s\n' "$pkgs" | while IFS= read -r abs; do
    rel=${abs#"$SRC"/}
    [ "$abs" = "$SRC" ] && continue
    [ -d "$rel" ] || continue
    find "$rel" -path "$rel/node_modules" -prune -o -print0
  done | tar --null --no-recursion -T - -cf -
) | tar -C "$STAGE" --no-same-owner -xf -
[ -f "$STAGE/node_modules/commander/package.json" ] || die "copying node_modules failed (commander missing in $STAGE)"
# Installed files belong to root, whoever owns the checkout.
if [ "$(id -u)" -eq 0 ]; then chown -R 0:0 "$STAGE"; fi
chmod -R u=rwX,go=rX "$STAGE"
# The launcher runs the build with node: no file of it needs to be executable (`npm link` or
# `npx tdxfer` in the checkout mark dist/src/cli/main.js executable).
find "$STAGE/dist" -type f -exec chmod 0644 {} +

# Same content as installed already: keep the installed copy untouched.
if [ -d "$APP" ] && diff -r -q "$STAGE" "$APP" >/dev/null 2>&1; then
  rm -rf "$STAGE"
else
  rm -rf "$ROOT_PREFIX/.app.old"
  if [ -d "$APP" ]; then mv "$APP" "$ROOT_PREFIX/.app.old"; fi
  mv "$STAGE" "$APP"
  rm -rf "$ROOT_PREFIX/.app.old"
  note "installed the agent into $PREFIX/app"
fi

put "$ROOT_PREFIX/bin/tdxfer" 0755 <<EOF
#!/bin/sh
# tdxfer launcher, written by scripts/install.sh. TDXFER_NODE selects another node binary.
exec "\${TDXFER_NODE:-$NODE_BIN}" "$PREFIX/app/dist/src/cli/main.js" "\$@"
EOF

mkdir -p "$(dirname "$LINK")"
if [ -L "$LINK" ] || [ ! -e "$LINK" ]; then
  ln -sfn "$PREFIX/bin/tdxfer" "$LINK"
else
  note "$LINK exists and is not a symlink: left alone (run $PREFIX/bin/tdxfer directly)"
fi

# ---- systemd unit ----
# Written by `tdxfer service install` (one source for the unit), for the launcher above.
DESTDIR="$DESTDIR" "$NODE_BIN" "$SRC/dist/src/cli/main.js" service install --program "$PREFIX/bin/tdxfer" --no-enable >/dev/null \
  || die "\`tdxfer service install\` could not write the unit (run it with --dry-run to see why)"
[ -f "$UNIT_DIR/tdxfer.service" ] || die "the unit was not written to $UNIT_DIR"

# ---- config, state, show folder ----
mkdir -p "$ETC"
chmod 0750 "$ETC"
if [ -e "$ETC/config.json" ]; then
  note "/etc/tdxfer/config.json exists: kept as is"
else
  # The starter holds a new installation key (security.key): written 0600 by init, then made
  # readable for the service's group below. Its stdout (the key banner) is not echoed here.
  "$NODE_BIN" "$SRC/dist/src/cli/main.js" init --config "$ETC/config.json" --data-dir /var/lib/tdxfer --folder /srv/tdxfer >/dev/null \
    || die "\`tdxfer init\` could not write $ETC/config.json"
  chmod 0640 "$ETC/config.json"
  note "wrote /etc/tdxfer/config.json: a minimal starter (outbox /srv/tdxfer/outbox -> inbox /srv/tdxfer/inbox, a new installation key in security.key); config/example.json shows every setting"
fi
mkdir -p "$STATE" "$SHOW"
chmod 0750 "$STATE"
chmod 0755 "$SHOW"
if [ -z "$DESTDIR" ]; then
  chown root:"$SERVICE_USER" "$ETC"
  if [ -f "$ETC/config.json" ]; then chown root:"$SERVICE_USER" "$ETC/config.json"; fi
  chown "$SERVICE_USER":"$SERVICE_USER" "$STATE" "$SHOW"
fi

# ---- enable ----
if [ -n "$DESTDIR" ]; then
  note "DESTDIR is set: not enabling the unit"
elif [ "$ENABLE" -eq 0 ]; then
  note "--no-enable: enable later with \`systemctl enable --now tdxfer\`"
elif ! command -v systemctl >/dev/null 2>&1 || [ ! -d /run/systemd/system ]; then
  note "systemd is not running here: not enabling the unit"
else
  systemctl daemon-reload
  systemctl enable tdxfer.service
  # An upgrade restarts a running agent; a fresh install is started by hand after editing the config.
  systemctl try-restart tdxfer.service
fi

note "done. Next: edit /etc/tdxfer/config.json (peers, routes; every machine needs its security.key), check with \`tdxfer doctor --config /etc/tdxfer/config.json\`, then \`systemctl start tdxfer\`."
