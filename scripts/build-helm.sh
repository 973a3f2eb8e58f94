#!/usr/bin/env bash
# Build helm at the version pinned in pins.env (HELM_VERSION) with `go install`, into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/helm-$HELM_VERSION/bin/helm
# Idempotent: an existing binary is reused. The last line on stdout is the binary's path;
# everything else goes to stderr. Needs Go (helm v3.19 builds with Go 1.24+) and the Go module proxy.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../pins.env
source "$repo_root/pins.env"
: "${HELM_VERSION:?HELM_VERSION missing from pins.env}"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator"
gobin="$cache_root/helm-$HELM_VERSION/bin"
helm_bin="$gobin/helm"

if [[ ! -x "$helm_bin" ]]; then
    command -v go >/dev/null 2>&1 || { echo "build-helm: go is not on PATH" >&2; exit 1; }
    echo "build-helm: building helm $HELM_VERSION into $gobin (takes a minute or two)" >&2
    mkdir -p "$gobin"
    # Build into a temporary directory first so an interrupted build never leaves a half-written binary.
    tmp="$(mktemp -d "$cache_root/helm-build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    # Without DWARF, as scripts/golib.sh builds (GO_BUILD_FLAGS).
    GOBIN="$tmp" CGO_ENABLED=0 go install -gcflags=all=-dwarf=false "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    mv "$tmp/helm" "$helm_bin"
fi

"$helm_bin" version --short >&2
echo "$helm_bin"
