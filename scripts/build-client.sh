#!/usr/bin/env bash
# Build the integration suite's Temporal client (integration/temporalclient, Go SDK; its go.mod and go.sum
# are committed) into ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/temporalclient-<hash>/temporalclient,
# the hash covering its sources, so an edit rebuilds it and an unchanged tree reuses the binary.
#   bash scripts/build-client.sh
# The last line on stdout is the binary's path.
set -euo pipefail

# shellcheck source=golib.sh
source "$(dirname "${BASH_SOURCE[0]}")/golib.sh"
source_dir="$golib_root/integration/temporalclient"
hash="$(cat "$source_dir"/go.mod "$source_dir"/go.sum "$source_dir"/*.go | sha256sum | cut -c1-16)"
client="$GO_CACHE_ROOT/temporalclient-$hash/temporalclient"
go_cached "$client" temporalclient -C "$source_dir" .
echo "$client"
