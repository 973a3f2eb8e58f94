#!/usr/bin/env bash
# Build temporal-sql-tool at a Temporal version with `go install`, into
# ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/temporal-<version>/bin/sql.
#   bash scripts/build-tool.sh [VERSION]
# VERSION defaults to TEMPORAL_VERSION from pins.env; pass a pinned one (e.g. "$TEMPORAL_NEXT_VERSION").
# Idempotent: an existing binary is reused (a cold build takes a minute or two; Go's module and build
# caches are the defaults, so they persist on the machine). Progress goes to stderr; the last two lines on
# stdout are
#   TEMPORAL_SQL_TOOL=<binary>
#   TEMPORAL_SCHEMA_DIR=<GOMODCACHE>/go.temporal.io/server@<version>/schema
# (the vendor tree of the same release: postgresql/v12/{temporal,visibility}/versioned/vX.Y/), whatever the
# version: the caller names the variables it exports (scripts/lib.sh setup_tool).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../pins.env
source "$repo_root/pins.env"
: "${TEMPORAL_VERSION:?TEMPORAL_VERSION missing from pins.env}"
version="${1:-$TEMPORAL_VERSION}"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "build-tool: not a release tag: '$version'" >&2; exit 2; }

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "build-tool: go is not installed (nor on PATH)" >&2; exit 1; }

module="go.temporal.io/server"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator"
gobin="$cache_root/temporal-$version/bin"
tool="$gobin/sql"

if [[ ! -x "$tool" ]]; then
    echo "build-tool: building temporal-sql-tool $version into $gobin ($(go version))" >&2
    mkdir -p "$gobin"
    # Build into a private directory first: an interrupted build never leaves a half-written binary.
    tmp="$(mktemp -d "$cache_root/temporal-build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    GOBIN="$tmp" GOFLAGS=-mod=mod go install "$module/cmd/tools/sql@$version" >&2
    mv "$tmp/sql" "$tool"
fi

schema_dir="$(go env GOMODCACHE)/$module@$version/schema"
if [[ ! -d "$schema_dir/postgresql/v12" ]]; then
    # The binary is cached but the module cache was cleaned: fetch the module source again.
    echo "build-tool: downloading $module@$version for its schema tree" >&2
    GOFLAGS=-mod=mod go mod download "$module@$version" >&2
fi
[[ -d "$schema_dir/postgresql/v12" ]] || { echo "build-tool: no schema tree at $schema_dir" >&2; exit 1; }

"$tool" --version >&2
echo "TEMPORAL_SQL_TOOL=$tool"
echo "TEMPORAL_SCHEMA_DIR=$schema_dir"
