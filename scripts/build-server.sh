#!/usr/bin/env bash
# Build the Temporal server at a release with `go install go.temporal.io/server/cmd/server@<release>`, into
# ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/temporal-<release>/bin/server (beside build-tool.sh's sql).
#   bash scripts/build-server.sh [RELEASE]
# RELEASE defaults to TEMPORAL_VERSION from pins.env. Idempotent: a cached binary is reused (a cold build takes
# about two minutes). Builds with GOTOOLCHAIN from pins.env. The last line on stdout is the binary's path.
set -euo pipefail

# shellcheck source=golib.sh
source "$(dirname "${BASH_SOURCE[0]}")/golib.sh"
version="${1:-$TEMPORAL_VERSION}"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "build-server: not a release tag: '$version'" >&2; exit 2; }

server="$GO_CACHE_ROOT/temporal-$version/bin/server"
go_cached "$server" server "go.temporal.io/server/cmd/server@$version"
echo "$server"
