#!/usr/bin/env bash
# Installs what the local stack needs and is missing: Debian's PostgreSQL 15 with pg_cron, wal2json,
# plpgsql_check (for `supabase db lint`), PgBouncer (the local transaction pooler),
# pgTAP and pg_prove (as root with apt-get; otherwise prints the exact command), then the npm
# dependencies (supabase CLI, deno, tsx, vitest, ...) with `npm ci`. Idempotent and quick when
# everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_BIN=/usr/lib/postgresql/15/bin
APT_PACKAGES=(postgresql-15 postgresql-contrib postgresql-15-cron postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl postgresql-15-wal2json postgresql-15-plpgsql-check pgbouncer)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # the Debian package would create and start a cluster of its own on 5432: we do not need it
    mkdir -p /etc/postgresql-common
    if [[ ! -f /etc/postgresql-common/createcluster.conf ]] || ! grep -q '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf; then
      echo "create_main_cluster = false" >> /etc/postgresql-common/createcluster.conf
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # the package's own service would listen on 6432: the stack runs a pgbouncer of its own per cluster
    if command -v systemctl >/dev/null && systemctl is-enabled pgbouncer >/dev/null 2>&1; then
      systemctl disable --now pgbouncer >/dev/null 2>&1 || true
    fi
  else
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

for bin in initdb pg_ctl postgres psql pg_dump pg_restore; do
  if [[ ! -x "$PG_BIN/$bin" ]]; then
    echo "PostgreSQL 15 binary $PG_BIN/$bin not found although its package is installed." >&2
    exit 1
  fi
done
[[ -x /usr/sbin/pgbouncer ]] || { echo "/usr/sbin/pgbouncer not found although its package is installed" >&2; exit 1; }
command -v pg_prove >/dev/null || { echo "pg_prove not found: install libtap-parser-sourcehandler-pgtap-perl" >&2; exit 1; }

# npm dependencies: install when node_modules is absent or older than the lockfile. npm ci installs
# exactly package-lock.json (which lists every platform's optional binaries of the Supabase CLI and
# Deno, so it holds on any machine) or fails: then nothing else is tried, so what runs is always
# what the lockfile says.
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "==> npm ci"
  if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "npm ci failed (its error is above): the npm dependencies were not installed." >&2
    echo "If package.json changed without package-lock.json, run npm install and commit package-lock.json;" >&2
    echo "if the registry was unreachable, check the network (npm config get registry) and run this again." >&2
    exit 1
  fi
fi
for bin in supabase deno tsx vitest; do
  [[ -x node_modules/.bin/$bin ]] || { echo "node_modules/.bin/$bin missing after npm ci" >&2; exit 1; }
done
