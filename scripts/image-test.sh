#!/usr/bin/env bash
# Builds the image from the Dockerfile, unchanged but for its base-image arguments (local bases: Debian 12 made
# with debootstrap, and the pinned release's tool and schema tree at the vendor's paths), and smoke-tests it
# against a throwaway local PostgreSQL, the container on the host network:
#   - the README's `docker run` example: migrate both stores, then status and wait for each;
#   - a migration with a read-only root filesystem (--read-only);
#   - the image's python3 is the one the tests ran on (Debian 12's);
#   - the user is 10001 (image config and `id -u` inside);
#   - the password, given as a podman secret, is in neither `podman inspect` nor the image's history;
#   - a wrong password exits 4 and a missing database exits 3, as documented.
#   bash scripts/image-test.sh        (as root; installs podman, runc and debootstrap if missing)
# Prints the image size and each stage's time.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=podman.sh
source "$REPO_ROOT/scripts/podman.sh"
cd "$REPO_ROOT"

IMAGE=localhost/temporal-migrator:test
SECRET="temporal-migrator-image-test-$$"
PGCLUSTER_DIR=""
cleanup() {
    local rc=$?
    podman rm --force --ignore "$SECRET" >/dev/null 2>&1 || true
    podman secret rm "$SECRET" >/dev/null 2>&1 || true
    if [[ -n "$PGCLUSTER_DIR" ]]; then
        "$PYTHON" -m devtools.pgcluster stop --dir "$PGCLUSTER_DIR" || log "could not stop the cluster in $PGCLUSTER_DIR"
    fi
    finish "$rc"
}
trap cleanup EXIT

make_debian_base() {
    DEBIAN_BASE="$(base_image bookworm)"
}

make_admin_tools_base() {
    local context
    context="$(mktemp -d)"
    cp "$TEMPORAL_SQL_TOOL" "$context/temporal-sql-tool"
    cp -rL "$TEMPORAL_SCHEMA_DIR" "$context/schema"
    chmod -R u+w,a+rX "$context"
    ADMIN_TOOLS_IMAGE="localhost/temporal-migrator-base/admin-tools:${TEMPORAL_VERSION#v}"
    podman_build --quiet --build-arg DEBIAN_BASE="$DEBIAN_BASE" -t "$ADMIN_TOOLS_IMAGE" \
        -f containers/admin-tools/Containerfile "$context" >/dev/null
    rm -rf "$context"
    log "ADMIN_TOOLS_IMAGE=$ADMIN_TOOLS_IMAGE"
}

build_image() {
    podman_build --build-arg DEBIAN_BASE="$DEBIAN_BASE" --build-arg ADMIN_TOOLS_IMAGE="$ADMIN_TOOLS_IMAGE" \
        -t "$IMAGE" . >&2
    log "image $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
}

start_database() {
    local db
    eval "$("$PYTHON" -m devtools.pgcluster start)"
    # As in the README's example, role temporal owns every database; each call sets a new password, so the last
    # one printed is the role's.
    for db in temporal temporal_visibility temporal_readonly; do
        SQL_PASSWORD="$("$PYTHON" -m devtools.pgcluster create-app-db --dir "$PGCLUSTER_DIR" --role temporal \
            --database "$db")"
    done
    export SQL_HOST=127.0.0.1 SQL_PORT="$PGCLUSTER_PORT" SQL_USER=temporal SQL_PASSWORD
    log "PostgreSQL $PGCLUSTER_MAJOR on 127.0.0.1:$PGCLUSTER_PORT; role temporal owns temporal, temporal_visibility, temporal_readonly"
}

# in_image [PODMAN RUN OPTIONS...] -- [MIGRATOR ARGS...]: the image on the host network, connected through the
# environment; SQL_PASSWORD is passed by name, so its value never appears in an argv.
in_image() {
    local opts=()
    while [[ "$1" != -- ]]; do opts+=("$1"); shift; done
    shift
    podman_run --rm -e SQL_HOST -e SQL_PORT -e SQL_USER -e SQL_PASSWORD -e MIGRATOR_LOG_FORMAT=console \
        "${opts[@]}" "$IMAGE" "$@"
}

expect_state() {
    local json="$1" want="$2"
    "$PYTHON" -c 'import json, sys; d = json.loads(sys.argv[1]); sys.exit(d["state"] != sys.argv[2])' "$json" "$want" ||
        die "status is not '$want': $json"
}

readme_example() {
    local store json
    for store in temporal:temporal visibility:temporal_visibility; do
        in_image -e SQL_DATABASE="${store#*:}" -- migrate --schema "${store%%:*}"
    done
    for store in temporal:temporal visibility:temporal_visibility; do
        json="$(in_image -e SQL_DATABASE="${store#*:}" -- status --schema "${store%%:*}")"
        echo "$json"
        expect_state "$json" current
        in_image -e SQL_DATABASE="${store#*:}" -- wait --schema "${store%%:*}" --wait-timeout 30
    done
}

read_only_root() {
    in_image --read-only -e SQL_DATABASE=temporal_readonly -- migrate --schema temporal
    expect_state "$(in_image --read-only -e SQL_DATABASE=temporal_readonly -- status --schema temporal)" current
}

# CI tests with Debian 12's /usr/bin/python3 (scripts/lib.sh); the image must ship that same interpreter.
ships_the_tested_python() {
    local shipped tested
    shipped="$(podman_run --rm --entrypoint python3 "$IMAGE" --version)"
    tested="$("$PYTHON" --version)"
    [[ "$shipped" == "$tested" ]] || die "the image ships $shipped, CI tests $tested"
    log "image and tests: $shipped"
}

runs_as_10001() {
    local configured inside
    configured="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
    inside="$(podman_run --rm --entrypoint id "$IMAGE" -u)"
    [[ "$configured" == 10001:10001 && "$inside" == 10001 ]] ||
        die "the image runs as '$configured' (id -u inside: $inside), not 10001:10001"
    log "USER $configured, id -u $inside"
}

# The password as a file secret, read into SQL_PASSWORD inside the container: podman 4.3 copies the value of an
# environment secret (type=env) into the container's config, where `podman inspect` shows it.
password_not_recorded() {
    printf '%s' "$SQL_PASSWORD" | podman secret create "$SECRET" - >/dev/null
    podman_run --name "$SECRET" --secret "$SECRET" -e SQL_HOST -e SQL_PORT -e SQL_USER -e SQL_DATABASE=temporal \
        --entrypoint sh "$IMAGE" -c \
        'SQL_PASSWORD="$(cat "/run/secrets/$0")" exec temporal-migrator status --schema temporal' "$SECRET" >/dev/null
    local where
    for where in "podman inspect (container)" "podman image inspect" "podman history"; do
        case "$where" in
            "podman inspect (container)") podman inspect "$SECRET" ;;
            "podman image inspect") podman image inspect "$IMAGE" ;;
            "podman history") podman history --no-trunc "$IMAGE" ;;
        esac | grep -qF "$SQL_PASSWORD" && die "the password appears in $where"
        log "password absent from $where"
    done
}

# expect_exit CODE [PODMAN RUN OPTIONS...] -- [MIGRATOR ARGS...]
expect_exit() {
    local want="$1" rc=0
    shift
    in_image "$@" >/dev/null 2>&1 || rc=$?
    [[ "$rc" == "$want" ]] || die "expected exit $want, got $rc: $*"
    log "exit $rc as documented"
}

bad_password_exits_4() {
    SQL_PASSWORD=not-the-password expect_exit 4 -e SQL_DATABASE=temporal -- status --schema temporal
}

missing_database_exits_3() {
    expect_exit 3 -e SQL_DATABASE=no_such_database -- status --schema temporal --connect-timeout 3
}

stage "container tools (podman, runc, debootstrap)" setup_podman
stage "python virtualenv and locked deps" setup_python
stage "postgresql server binaries" setup_postgres
stage "go toolchain" setup_go
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool
stage "local base: Debian bookworm" make_debian_base
stage "local base: admin-tools $TEMPORAL_VERSION (tool and schema tree at the vendor's paths)" make_admin_tools_base
stage "podman build (the Dockerfile, local bases)" build_image
stage "throwaway PostgreSQL and databases" start_database
stage "smoke: README's docker run example (migrate both stores, status, wait)" readme_example
stage "smoke: --read-only root filesystem" read_only_root
stage "smoke: the Python CI tests" ships_the_tested_python
stage "smoke: user 10001" runs_as_10001
stage "smoke: password absent from podman inspect and the image history" password_not_recorded
stage "smoke: wrong password exits 4" bad_password_exits_4
stage "smoke: missing database exits 3" missing_database_exits_3
