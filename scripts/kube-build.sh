#!/usr/bin/env bash
# Build the single-node cluster's binaries from their Go modules at the versions pinned in pins.env, into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/kube-$KUBE_VERSION/bin/        kube-apiserver, kubelet, ...
#   ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/etcd-$ETCD_VERSION/bin/etcd
#   ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/containerd-$CONTAINERD_VERSION/bin/  containerd, ctr, shim
#   ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator/argosync-$GITOPS_ENGINE_VERSION-<source hash>/bin/argosync
#   bash scripts/kube-build.sh      (sourced by scripts/kube.sh, which calls kube_build)
# Idempotent: a directory whose binaries are all there is reused. k8s.io/kubernetes cannot be built with
# `go install pkg@version`: its go.mod replaces its staging modules (k8s.io/api, k8s.io/client-go, ...) with
# directories of its own repository. A wrapper module requires it and replaces each of them with its published
# release instead (v0.<minor>.<patch> for v1.<minor>.<patch>); etcd's server module does the same with its
# api/client/pkg modules. The wrappers are generated from the pins, in a temporary directory: nothing to keep in
# sync by hand. A cold build is nearly all the Kubernetes binaries: about 570 CPU-seconds (5 minutes on 2 idle
# cores, 15 on a busy machine); .ci/run runs it in the background from its start.
set -euo pipefail

# shellcheck source=golib.sh
source "$(dirname "${BASH_SOURCE[0]}")/golib.sh"

KUBE_BIN="$GO_CACHE_ROOT/kube-$KUBE_VERSION/bin"
ETCD_BIN="$GO_CACHE_ROOT/etcd-$ETCD_VERSION/bin"
CONTAINERD_BIN="$GO_CACHE_ROOT/containerd-$CONTAINERD_VERSION/bin"
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
CONTAINERD_COMMANDS=(containerd ctr containerd-shim-runc-v2)
ARGOSYNC_SRC="$golib_root/clustertests/argosync"
ARGOSYNC_BIN="$GO_CACHE_ROOT/argosync-$GITOPS_ENGINE_VERSION-$(sha256sum "$ARGOSYNC_SRC/main.go" | cut -c1-12)/bin"

_say() { echo "kube-build: $*" >&2; }

# _wrapper_build DEST_DIR MODULE@VERSION REPLACES LDFLAGS PACKAGES...: in a fresh module that requires MODULE at
# VERSION with the replace lines REPLACES (and holds the file $WRAPPER_MAIN if set, package `.`), `go build`
# PACKAGES into a private directory, then move the binaries to DEST_DIR (an interrupted build leaves nothing
# behind).
_wrapper_build() {
    local dest="$1" module="${2%@*}" version="${2#*@}" replaces="$3" ldflags="$4" work
    shift 4
    mkdir -p "$GO_CACHE_ROOT"
    work="$(mktemp -d "$GO_CACHE_ROOT/wrapper.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" RETURN
    printf 'module wrapper\n\ngo 1.26\n\nrequire %s %s\n\n%s\n' "$module" "$version" "$replaces" >"$work/go.mod"
    [[ -z "${WRAPPER_MAIN:-}" ]] || cp "$WRAPPER_MAIN" "$work/"
    (cd "$work" && mkdir out && GOFLAGS="-mod=mod $GO_BUILD_FLAGS" go build -ldflags "$ldflags" -o out/ "$@" >&2) || return 1
    mkdir -p "$dest"
    mv "$work"/out/* "$dest/"
}

_have_all() {
    local dir="$1" cmd
    shift
    for cmd in "$@"; do [[ -x "$dir/$cmd" ]] || return 1; done
}

# The replace block that points k8s.io/kubernetes' staging modules at their published releases.
_staging_replaces() {
    local staging="v0.${KUBE_VERSION#v1.}" mod
    mod="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    [[ -f "$mod" ]] || { _say "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"; return 1; }
    printf 'replace (\n%s\n)\n' \
        "$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p' "$mod")"
}

build_kube() {
    _have_all "$KUBE_BIN" "${KUBE_COMMANDS[@]}" && return 0
    local replaces pkgs=() cmd ldflags minor
    replaces="$(_staging_replaces)"
    for cmd in "${KUBE_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
    minor="${KUBE_VERSION#v1.}"
    minor="${minor%%.*}"
    # What the release build stamps: the API server reports it, and helm checks charts' kubeVersion against it.
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    _say "building ${KUBE_COMMANDS[*]} $KUBE_VERSION ($(go version))"
    _wrapper_build "$KUBE_BIN" "k8s.io/kubernetes@$KUBE_VERSION" "$replaces" "$ldflags" "${pkgs[@]}"
}

build_etcd() {
    _have_all "$ETCD_BIN" etcd && return 0
    local replaces="replace (" sub
    for sub in api/v3 client/pkg/v3 client/v3 pkg/v3; do
        replaces+=$'\n\t'"go.etcd.io/etcd/$sub => go.etcd.io/etcd/$sub $ETCD_VERSION"
    done
    replaces+=$'\n)'
    _say "building etcd $ETCD_VERSION"
    _wrapper_build "$ETCD_BIN.tmp" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$replaces" "-s -w" go.etcd.io/etcd/server/v3
    mv "$ETCD_BIN.tmp/v3" "$ETCD_BIN.tmp/etcd" 2>/dev/null || mv "$ETCD_BIN.tmp/server" "$ETCD_BIN.tmp/etcd"
    mv "$ETCD_BIN.tmp" "$ETCD_BIN"
}

build_containerd() {
    _have_all "$CONTAINERD_BIN" "${CONTAINERD_COMMANDS[@]}" && return 0
    local pkgs=() cmd
    for cmd in "${CONTAINERD_COMMANDS[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$cmd"); done
    _say "building ${CONTAINERD_COMMANDS[*]} $CONTAINERD_VERSION"
    _wrapper_build "$CONTAINERD_BIN" "github.com/containerd/containerd/v2@$CONTAINERD_VERSION" "" \
        "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" "${pkgs[@]}"
}

# ArgoCD's sync engine (gitops-engine) driven as the application controller drives it: clustertests/argosync, a
# small main over the engine's sync package (the engine's example agent never sees a hook Job finish). Built
# against KUBE_VERSION's modules, as the cluster, so a cached cluster build leaves it little to compile; cached
# under the hash of its source.
build_argosync() {
    _have_all "$ARGOSYNC_BIN" argosync && return 0
    local replaces
    replaces="$(_staging_replaces)
require k8s.io/kubernetes $KUBE_VERSION"
    _say "building argosync on gitops-engine $GITOPS_ENGINE_VERSION"
    WRAPPER_MAIN="$ARGOSYNC_SRC/main.go" _wrapper_build "$ARGOSYNC_BIN.tmp" \
        "github.com/argoproj/argo-cd/gitops-engine/v3@$GITOPS_ENGINE_VERSION" "$replaces" "-s -w" .
    mv "$ARGOSYNC_BIN.tmp/wrapper" "$ARGOSYNC_BIN.tmp/argosync"
    mv "$ARGOSYNC_BIN.tmp" "$ARGOSYNC_BIN"
}

kube_build() {
    build_kube
    build_etcd
    build_containerd
    build_argosync
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    kube_build
fi
