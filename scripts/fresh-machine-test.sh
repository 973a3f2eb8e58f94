#!/usr/bin/env bash
# Proves the README's quick start on a fresh machine: a new container from a freshly made Debian image that has
# only python3, given nothing from this machine but its Go toolchain (mounted read-only at /usr/local/go), its Go
# caches (below) and the CA certificates it trusts, runs the README's "run" command and `temporal-migrator
# --version`, as root; and, as a user in such a container, checks that the command stops at once naming the
# package to install.
#   bash scripts/fresh-machine-test.sh            (as root; installs podman, runc and debootstrap if missing)
# FRESH_MACHINE_SUITE   Debian suite of the container (default bookworm; trixie works too)
# FRESH_MACHINE_GO_CACHES  shared (default): the container sees this machine's Go module cache read-only and its
#   build cache through an overlay (the container's writes go to a layer dropped with it), at the same paths; its
#   `go install`s of the tool, the server and the client (CGO_ENABLED=0 here and there, scripts/golib.sh) then
#   find what this machine compiled and linked. cold: the container downloads and builds everything itself (a new
#   machine's first run, several minutes more).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=podman.sh
source "$REPO_ROOT/scripts/podman.sh"
cd "$REPO_ROOT"
trap finish EXIT

SUITE="${FRESH_MACHINE_SUITE:-bookworm}"
GO_CACHES="${FRESH_MACHINE_GO_CACHES:-shared}"
[[ "$GO_CACHES" == shared || "$GO_CACHES" == cold ]] ||
    die "FRESH_MACHINE_GO_CACHES must be 'shared' or 'cold', not '$GO_CACHES'"

make_base() {
    BASE="$(base_image "$SUITE" python3)"
}

# The work tree as a clone would have it (tracked and new files, nothing ignored such as .venv), streamed in.
work_tree() {
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -c
}

# Not root, nothing installed: the run command must stop at once and name the command that fixes it.
non_root_is_told_the_fix() {
    local out rc=0
    out="$(work_tree | podman_run --rm -i "$BASE" bash -c '
        mkdir /src && tar -x -C /src && chown -R nobody /src && cd /src
        exec setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp bash scripts/demo.sh' 2>&1)" || rc=$?
    [[ "$rc" == 1 && "$out" == *"run 'sudo apt-get install -y python3-venv'"* ]] ||
        die "as a user without python3-venv, demo.sh exited $rc without naming 'apt-get install -y python3-venv':" \
            "$(tail -n 4 <<<"$out")"
    log "as expected, exit 1 with: $(grep -m 1 -o 'ERROR: .*' <<<"$out")"
}

run_readme_in_container() {
    local go_root mod_cache build_cache mounts=()
    go_root="$(GOTOOLCHAIN=local go env GOROOT)"
    mounts+=(--volume "$go_root:/usr/local/go:ro")
    if [[ "$GO_CACHES" == shared ]]; then
        mod_cache="$(GOTOOLCHAIN=local go env GOMODCACHE)"
        build_cache="$(GOTOOLCHAIN=local go env GOCACHE)"
        [[ -d "$mod_cache" && -d "$build_cache" ]] ||
            die "no Go caches to share at $mod_cache and $build_cache: build first (bash scripts/test.sh), or FRESH_MACHINE_GO_CACHES=cold"
        mounts+=(--volume "$mod_cache:$mod_cache:ro" --volume "$build_cache:$build_cache:O"
            --env GOMODCACHE="$mod_cache" --env GOCACHE="$build_cache")
        log "sharing Go caches: modules $mod_cache (read-only), build $build_cache (overlay)"
    fi
    work_tree | podman_run --rm -i "${mounts[@]}" "$BASE" bash -euo pipefail -c '
            mkdir /src && tar -x -C /src && cd /src
            echo "container: $(. /etc/os-release && echo "$PRETTY_NAME"), $(python3 --version), root"
            bash scripts/demo.sh
            .venv/bin/temporal-migrator --version' 2>&1 | tee "$LOG" | tail -n 25
}

LOG="$(mktemp /tmp/fresh-machine-test.XXXXXX.log)"
log "full container output: $LOG"
stage "container tools (podman, runc, debootstrap)" setup_podman
stage "go toolchain" setup_go
stage "fresh Debian $SUITE image with python3" make_base
stage "as a user, without python3-venv: told the command to run" non_root_is_told_the_fix
stage "README's run command (bash scripts/demo.sh) in a new container, as root" run_readme_in_container
