# Shared by scripts/test, scripts/demo and bench/run: install what is
# missing, build, and run a command against a throwaway PostgreSQL 15.
# shellcheck shell=bash

PGVER=15
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PGVER/bin/pg_config}
BASE_PACKAGES="postgresql-$PGVER postgresql-server-dev-$PGVER postgresql-$PGVER-cron
  postgresql-common libroaring-dev libnlopt-dev build-essential"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

log() { printf '\n==> %s\n' "$*" >&2; }

# ensure_packages PKG...: apt-get install the packages that are not installed
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# build_and_install: warning-free build (-Werror) and install into the
# server.  With CDP_DESTDIR set, install under that directory instead and let
# the throwaway server load the extension from there (Debian's
# extension_destdir), so several work trees can be tested side by side.
build_and_install() {
  log "building cdp"
  make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" PG_CFLAGS="-Werror ${CDP_EXTRA_CFLAGS:-}" >/dev/null
  if [ -n "${CDP_DESTDIR:-}" ]; then
    make -s PG_CONFIG="$PG_CONFIG" DESTDIR="$CDP_DESTDIR" install >/dev/null
    chmod -R a+rX "$CDP_DESTDIR"
  else
    $SUDO make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
  fi
}

# with_server CMD...: run CMD with PG* variables pointing at a throwaway
# PostgreSQL (pg_virtualenv runs the server as the postgres user when we are
# root).  Extra settings come from PG_SETTINGS ("guc=value ...").
with_server() {
  local opts=(-t -v "$PGVER"
    -o "shared_preload_libraries=pg_cron"
    -o "cron.database_name=${CDP_CRON_DB:-contrib_regression}"
    -o "cron.use_background_workers=on"
    -o "max_worker_processes=24"
    -o "max_parallel_workers=8"
    -o "max_parallel_workers_per_gather=2"
    -o "log_min_messages=warning")
  local s
  [ -n "${CDP_DESTDIR:-}" ] && opts+=(-o "extension_destdir=$CDP_DESTDIR")
  for s in ${PG_SETTINGS:-}; do opts+=(-o "$s"); done
  # a caller's PG* settings must not steer the throwaway server
  env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD -u PGSERVICE \
    pg_virtualenv "${opts[@]}" env PGHOST=127.0.0.1 "$@"
}
