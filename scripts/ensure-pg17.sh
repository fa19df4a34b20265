#!/usr/bin/env bash
# Installs what the PostgreSQL 17 leg of `npm test` needs (new Supabase projects run 17): Debian
# trixie's own packages of PostgreSQL 17, pg_cron, pgTAP and wal2json, unpacked into a private
# root (PG17_ROOT, default /opt/supabase-partitioning/postgresql-17) with the trixie libraries they
# link against. Bookworm has no PostgreSQL 17 and trixie's binaries need glibc 2.38 (bookworm has
# 2.36), so they cannot be installed with dpkg here; unpacked, their programs get trixie's loader as
# interpreter and the root's library folder as RPATH (patchelf), so they never mix with the
# system's libraries. Nothing outside PG17_ROOT changes: trixie is used through a private apt
# configuration for downloads only, never added to the system's sources.
# Idempotent and quick when the root is complete; as root only (otherwise prints the command).
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=${PG17_ROOT:-/opt/supabase-partitioning/postgresql-17}
[[ $ROOT == /?*/?* ]] || { echo "PG17_ROOT must be an absolute path below a folder: $ROOT" >&2; exit 1; }
# The server and its extensions, then every library they load (closed over ELF NEEDED entries;
# the check below fails if a new trixie point release needs one more).
PACKAGES=(
  postgresql-17 postgresql-client-17 postgresql-17-cron postgresql-17-pgtap postgresql-17-wal2json
  libc6 libgcc-s1 libstdc++6 libpq5 libicu76 libssl3t64 libllvm19 libxml2 libxslt1.1 zlib1g liblzma5
  libzstd1 liblz4-1 libldap2 libsasl2-2 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0
  libcom-err2 libkeyutils1 libpam0g libaudit1 libcap-ng0 libcap2 libselinux1 libpcre2-8-0
  libsystemd0 libuuid1 libreadline8t64 libtinfo6 libedit2 libbsd0 libmd0 libffi8 libz3-4 libxxhash0
)
STAMP="$ROOT/.packages"
WANT=$(printf '%s\n' "${PACKAGES[@]}")
BIN="$ROOT/usr/lib/postgresql/17/bin"
LIB="$ROOT/usr/lib/x86_64-linux-gnu"

if [[ -f $STAMP && -x $BIN/postgres ]] && [[ "$(sed -n '/^--$/q;p' "$STAMP")" == "$WANT" ]]; then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "PostgreSQL 17 for the test leg is not installed in $ROOT. Install it with:" >&2
  echo "  sudo PG17_ROOT=$ROOT bash scripts/ensure-pg17.sh" >&2
  exit 1
fi

echo "==> installing PostgreSQL 17 (Debian trixie packages) into $ROOT"
tools=()
command -v patchelf >/dev/null || tools+=(patchelf)
command -v readelf >/dev/null || tools+=(binutils)
if ((${#tools[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tools[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs"
cat > "$work/sources.list" <<'EOF'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security trixie-security main
EOF
APT_OPTS=(
  -o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
  -o "Dir::Cache::pkgcache=$work/pkgcache.bin" -o "Dir::Cache::srcpkgcache=$work/srcpkgcache.bin"
  -o "Dir::State::status=/dev/null" -o "APT::Architecture=amd64" -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
)
apt-get "${APT_OPTS[@]}" update -qq
(cd "$work/debs" && apt-get "${APT_OPTS[@]}" download -qq "${PACKAGES[@]}")

rm -rf "$ROOT.new"
mkdir -p "$ROOT.new"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT.new"; done
NBIN="$ROOT.new/usr/lib/postgresql/17/bin"
NLIB="$ROOT.new/usr/lib/x86_64-linux-gnu"
PKGLIB="$ROOT.new/usr/lib/postgresql/17/lib"

# Every library the programs and the server's modules load must be in the root.
declare -A seen=()
queue=()
for f in "$NBIN"/* "$PKGLIB"/*.so; do head -c4 "$f" | grep -q ELF && queue+=("$f"); done
missing=()
while ((${#queue[@]})); do
  f=${queue[0]}
  queue=("${queue[@]:1}")
  for so in $(readelf -d "$f" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    [[ -n ${seen[$so]:-} ]] && continue
    seen[$so]=1
    if [[ -e $NLIB/$so ]]; then queue+=("$(readlink -f "$NLIB/$so")"); else missing+=("$so (needed by ${f#"$ROOT.new"})"); fi
  done
done
if ((${#missing[@]})); then
  printf 'PostgreSQL 17 root: no trixie package of this list provides\n' >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "add the packages that ship them to PACKAGES in $0" >&2
  exit 1
fi

# Trixie's loader and libraries for the programs (the final paths: the root is moved in place
# below); libLLVM looks for its own dependencies beside itself.
for f in "$NBIN"/*; do
  if head -c4 "$f" | grep -q ELF; then
    patchelf --set-interpreter "$LIB/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$LIB" "$f"
  fi
done
for f in "$NLIB"/libLLVM.so.*; do [[ -L $f ]] || patchelf --set-rpath '$ORIGIN' "$f"; done

rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"
chmod 755 "$ROOT"
version=$("$BIN/postgres" --version)
[[ $version == *"PostgreSQL) 17."* ]] || { echo "unexpected server version: $version" >&2; exit 1; }
{
  echo "$WANT"
  echo "--"
  for deb in "$work"/debs/*.deb; do dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"; done
} > "$STAMP"
echo "    $version, pg_cron $(dpkg-deb -f "$work"/debs/postgresql-17-cron_*.deb Version), pgTAP $(dpkg-deb -f "$work"/debs/postgresql-17-pgtap_*.deb Version)"
