#!/usr/bin/env bash
# Runs the integration suite's Testcontainers path for real, through podman's Docker-compatible API: the tests
# marked `portable` (fresh install, repair, concurrency, privileges) on a PostgreSQL container that
# Testcontainers starts, from an image made here from Debian's postgresql package (containers/postgres, the
# official image's contract), with no fallback to a local cluster (MIGRATOR_TEST_PG_SOURCE=docker).
#   bash scripts/testcontainers-test.sh [PYTEST ARGS...]     (as root; installs podman, runc, debootstrap if missing)
# The API service runs with runc (CONTAINERS_CONF); Ryuk (the reaper container) is off, as no registry serves its
# image; Testcontainers stops its containers itself. This machine is itself a container, which makes
# Testcontainers look for the PostgreSQL container's gateway (absent from podman's answer): the published port on
# the API's host is what the tests reach (TESTCONTAINERS_CONNECTION_MODE=docker_host).
# PYTEST_WORKERS (default 2) as in scripts/test.sh.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=podman.sh
source "$REPO_ROOT/scripts/podman.sh"
cd "$REPO_ROOT"

SERVICE_PID=""
WORK="$(mktemp -d /tmp/testcontainers-podman.XXXXXX)"
cleanup() {
    local rc=$?
    if [[ -n "$SERVICE_PID" ]]; then
        kill "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    finish "$rc"
}
trap cleanup EXIT

make_postgres_image() {
    POSTGRES_LOCAL_IMAGE="$(postgres_image)"
    log "$POSTGRES_LOCAL_IMAGE: $(podman_run --rm --entrypoint postgres "$POSTGRES_LOCAL_IMAGE" --version)"
}

start_api_service() {
    printf '[engine]\nruntime = "runc"\n' >"$WORK/containers.conf"
    CONTAINERS_CONF="$WORK/containers.conf" podman system service --time=0 "unix://$WORK/podman.sock" \
        >"$WORK/service.log" 2>&1 &
    SERVICE_PID=$!
    export DOCKER_HOST="unix://$WORK/podman.sock" TESTCONTAINERS_RYUK_DISABLED=true \
        TESTCONTAINERS_CONNECTION_MODE=docker_host
    local tries
    for tries in $(seq 50); do
        "$PYTHON" -c 'import docker; docker.from_env().ping()' 2>/dev/null && break
        ((tries < 50)) || die "podman's API did not answer on $DOCKER_HOST (log: $WORK/service.log)"
        sleep 0.2
    done
    log "podman API on $DOCKER_HOST (runtime runc), Ryuk off"
}

run_portable_tests() {
    local since started
    since="$(date --iso-8601=seconds)"
    MIGRATOR_TEST_PG_SOURCE=docker MIGRATOR_TEST_POSTGRES_IMAGE="$POSTGRES_LOCAL_IMAGE" \
        "$PYTHON" -m pytest -m portable -n "${PYTEST_WORKERS:-2}" --dist worksteal integration "$@"
    started="$(podman events --stream=false --since "$since" --filter event=start --format '{{.ID}} {{.Image}}' |
        awk -v image="$POSTGRES_LOCAL_IMAGE" '$2 == image { print $1 }' | sort -u | wc -l)"
    ((started > 0)) || die "no container of $POSTGRES_LOCAL_IMAGE was started: the tests did not use Testcontainers"
    log "PostgreSQL source: Testcontainers through podman's API, $started container(s) of $POSTGRES_LOCAL_IMAGE"
}

stage "container tools (podman, runc, debootstrap)" setup_podman
stage "python virtualenv and locked deps" setup_python
stage "postgresql client binaries (pg_dump)" setup_postgres
stage "go toolchain" setup_go
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool
stage "PostgreSQL $POSTGRES_MAJOR image from Debian's packages" make_postgres_image
stage "podman system service (Docker-compatible API)" start_api_service
stage "pytest -m portable through Testcontainers" run_portable_tests "$@"
