#!/usr/bin/env bash
# Proves the README's quick start on a fresh machine: a new container from a freshly made Debian image that has
# only python3, given nothing from this machine but its Go toolchain (mounted read-only at /usr/local/go) and the
# CA certificates it trusts, runs the README's "run" command and `temporal-migrator --version`, as root; and, as
# a user in such a container, checks that the command stops at once naming the package to install.
#   bash scripts/fresh-machine-test.sh            (as root; installs podman, runc and debootstrap if missing)
# FRESH_MACHINE_SUITE   Debian suite of the container (default bookworm; trixie works too)
# FRESH_MACHINE_GO_CACHE  host directory for the container's own Go module and build caches, so that a later run
#   recompiles only what changed (default /var/cache/temporal-migrator/fresh-machine-go; empty: a cold run).
#   Only previous runs of this script fill it; the tool and server are built inside the container every run.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=podman.sh
source "$REPO_ROOT/scripts/podman.sh"
cd "$REPO_ROOT"
trap finish EXIT

SUITE="${FRESH_MACHINE_SUITE:-bookworm}"
GO_CACHE="${FRESH_MACHINE_GO_CACHE-/var/cache/temporal-migrator/fresh-machine-go}"

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
    local go_root mounts=()
    go_root="$(GOTOOLCHAIN=local go env GOROOT)"
    mounts+=(--volume "$go_root:/usr/local/go:ro")
    if [[ -n "$GO_CACHE" ]]; then
        mkdir -p "$GO_CACHE/mod" "$GO_CACHE/build"
        mounts+=(--volume "$GO_CACHE/mod:/root/go/pkg/mod" --volume "$GO_CACHE/build:/root/.cache/go-build")
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
