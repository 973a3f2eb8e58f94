# Shared by the scripts that build Go binaries into the cache (build-tool.sh, build-server.sh,
# build-client.sh). Source it; it defines functions and variables only.
#   GO_CACHE_ROOT                 ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator
#   go_cached DEST NAME ARGS...   unless DEST exists: `go install ARGS...` into a private directory, then the
#                                 binary NAME it made moves to DEST (an interrupted build leaves nothing behind)
#   GO_BUILD_FLAGS                flags of every build here (kube-build.sh's too), for GOFLAGS (go install -C
#                                 must come first)
# GOTOOLCHAIN comes from pins.env and is exported: v1.32 needs a newer Go than most machines have, and the go
# command fetches that toolchain itself. CGO_ENABLED=0, as Temporal builds its releases: no C compiler needed, and
# a machine with one (CI) and one without (the fresh-machine container, which shares CI's Go build cache) compile
# the same packages, so the container finds CI's compiled packages in that cache.
golib_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../pins.env
source "$golib_root/pins.env"
export GOTOOLCHAIN
export CGO_ENABLED=0
GO_CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator"
# No DWARF: nothing debugs these binaries (a panic's stack trace does not need it), and compiling without it took
# 5% less CPU (a cold build of the five Kubernetes binaries: 572 CPU-seconds against 602).
GO_BUILD_FLAGS="-gcflags=all=-dwarf=false"

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "$(basename "$0"): go is not installed (nor on PATH)" >&2; exit 1; }

go_cached() {
    local dest="$1" name="$2" tmp
    shift 2
    [[ -x "$dest" ]] && return 0
    echo "$(basename "$0"): go install $* into $dest ($(go version))" >&2
    mkdir -p "$(dirname "$dest")"
    tmp="$(mktemp -d "$GO_CACHE_ROOT/go-build.XXXXXX")"
    if GOBIN="$tmp" GOFLAGS="-mod=mod $GO_BUILD_FLAGS" go install "$@" >&2; then
        mv "$tmp/$name" "$dest"
        rm -rf "$tmp"
    else
        rm -rf "$tmp"
        return 1
    fi
}
