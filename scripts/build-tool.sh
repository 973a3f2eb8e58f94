#!/usr/bin/env bash
# Build temporal-sql-tool at a Temporal version with `go install`, into
# ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/temporal-<version>/bin/sql.
#   bash scripts/build-tool.sh [--tree-only] [VERSION]
# VERSION defaults to TEMPORAL_VERSION from pins.env; pass a pinned one (e.g. one of TEMPORAL_UPGRADE_FROM).
# --tree-only fetches the release's schema tree (`go mod download`, seconds) without building its tool, for the
# upgrade sources that TEMPORAL_VERSION's tool installs (pins.env, TEMPORAL_UPGRADE_OWN_TOOL).
# Builds with GOTOOLCHAIN from pins.env (scripts/golib.sh).
# Idempotent: an existing binary is reused (a cold build takes a minute or two; Go's module and build
# caches are the defaults, so they persist on the machine). Progress goes to stderr; the last two lines on
# stdout are
#   TEMPORAL_SQL_TOOL=<binary>
#   TEMPORAL_SCHEMA_DIR=<GOMODCACHE>/go.temporal.io/server@<version>/schema
# (the vendor tree of the same release: postgresql/v12/{temporal,visibility}/versioned/vX.Y/), whatever the
# version: the caller names the variables it exports (scripts/lib.sh setup_tool).
set -euo pipefail

# shellcheck source=golib.sh
source "$(dirname "${BASH_SOURCE[0]}")/golib.sh"
: "${TEMPORAL_VERSION:?TEMPORAL_VERSION missing from pins.env}"
tree_only=""
if [[ "${1:-}" == --tree-only ]]; then
    tree_only=1
    shift
fi
version="${1:-$TEMPORAL_VERSION}"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "build-tool: not a release tag: '$version'" >&2; exit 2; }

module="go.temporal.io/server"
tool="$GO_CACHE_ROOT/temporal-$version/bin/sql"
[[ -n "$tree_only" ]] || go_cached "$tool" sql "$module/cmd/tools/sql@$version"

schema_dir="$(go env GOMODCACHE)/$module@$version/schema"
if [[ ! -d "$schema_dir/postgresql/v12" ]]; then
    # The binary is cached but the module cache was cleaned: fetch the module source again.
    echo "build-tool: downloading $module@$version for its schema tree" >&2
    GOFLAGS=-mod=mod go mod download "$module@$version" >&2
fi
[[ -d "$schema_dir/postgresql/v12" ]] || { echo "build-tool: no schema tree at $schema_dir" >&2; exit 1; }

if [[ -z "$tree_only" ]]; then
    "$tool" --version >&2
    echo "TEMPORAL_SQL_TOOL=$tool"
fi
echo "TEMPORAL_SCHEMA_DIR=$schema_dir"
