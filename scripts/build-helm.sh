#!/usr/bin/env bash
# Build helm at the version pinned in pins.env (HELM_VERSION) with `go install`, into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/helm-$HELM_VERSION/bin/helm
# Idempotent: an existing binary is reused (a cold build takes a minute or two). Builds as golib.sh's go_cached
# does (GOTOOLCHAIN from pins.env; helm v3.19 needs Go 1.24+). The last line on stdout is the binary's path;
# everything else goes to stderr.
set -euo pipefail

# shellcheck source=golib.sh
source "$(dirname "${BASH_SOURCE[0]}")/golib.sh"
: "${HELM_VERSION:?HELM_VERSION missing from pins.env}"

helm_bin="$GO_CACHE_ROOT/helm-$HELM_VERSION/bin/helm"
go_cached "$helm_bin" helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
"$helm_bin" version --short >&2
echo "$helm_bin"
