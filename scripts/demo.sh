#!/usr/bin/env bash
# Try the migrator end to end on this machine, with nothing set up beforehand:
#   bash scripts/demo.sh
# Installs the Python package, PostgreSQL server binaries and temporal-sql-tool if missing (as scripts/test.sh
# does), starts a throwaway local PostgreSQL, creates roles and databases the CloudNativePG way (role
# `temporal` owning database `temporal`, role `temporal_visibility` owning `temporal_visibility`), migrates
# both stores to the newest schema of the pinned Temporal release, prints `status` of both (a table on a
# terminal, else JSON), runs `migrate` once more to show it is a no-op, then starts a Temporal server of that release on the two databases
# (scripts/build-server.sh; about two minutes the first time), runs a workflow through it with the Go SDK test
# client (scripts/build-client.sh), prints the workflows visibility lists, stops the server, and removes the
# cluster on exit.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

PGCLUSTER_DIR=""
cleanup() {
    local rc=$?
    if [[ -n "$PGCLUSTER_DIR" ]]; then
        "$PYTHON" -m devtools.pgcluster stop --dir "$PGCLUSTER_DIR" || log "could not stop the cluster in $PGCLUSTER_DIR"
    fi
    finish "$rc"
}
trap cleanup EXIT

start_cluster() {
    local out
    out="$("$PYTHON" -m devtools.pgcluster start)"
    eval "$out" # shell-quoted KEY=VALUE lines: PGCLUSTER_DIR, _HOST, _PORT, _MAJOR, _ADMIN_USER, _ADMIN_PASSWORD
    log "PostgreSQL $PGCLUSTER_MAJOR on $PGCLUSTER_HOST:$PGCLUSTER_PORT (data in $PGCLUSTER_DIR)"
}

create_app_databases() {
    TEMPORAL_PASSWORD="$("$PYTHON" -m devtools.pgcluster create-app-db --dir "$PGCLUSTER_DIR" \
        --role temporal --database temporal)"
    VISIBILITY_PASSWORD="$("$PYTHON" -m devtools.pgcluster create-app-db --dir "$PGCLUSTER_DIR" \
        --role temporal_visibility --database temporal_visibility)"
    log "role temporal owns database temporal; role temporal_visibility owns database temporal_visibility"
}

# migrator SCHEMA ROLE PASSWORD DATABASE COMMAND: python -m migrator COMMAND for one store, configured through
# the same environment variables as temporal-sql-tool (the password never appears in argv).
migrator() {
    local schema="$1" role="$2" password="$3" database="$4" command="$5"
    SQL_HOST="$PGCLUSTER_HOST" SQL_PORT="$PGCLUSTER_PORT" SQL_PLUGIN=postgres12 \
        SQL_USER="$role" SQL_PASSWORD="$password" SQL_DATABASE="$database" \
        MIGRATOR_SCHEMA_DIR="$TEMPORAL_SCHEMA_DIR" TEMPORAL_SQL_TOOL="$TEMPORAL_SQL_TOOL" \
        MIGRATOR_LOG_FORMAT="${MIGRATOR_LOG_FORMAT:-console}" \
        "$PYTHON" -m migrator "$command" --schema "$schema"
}

migrate_both() {
    migrator temporal temporal "$TEMPORAL_PASSWORD" temporal migrate
    migrator visibility temporal_visibility "$VISIBILITY_PASSWORD" temporal_visibility migrate
}

status_both() {
    echo "# status of the default store (database temporal)"
    migrator temporal temporal "$TEMPORAL_PASSWORD" temporal status
    echo "# status of the visibility store (database temporal_visibility)"
    migrator visibility temporal_visibility "$VISIBILITY_PASSWORD" temporal_visibility status
}

stage "python virtualenv and locked deps" setup_python
stage "postgresql server binaries" setup_postgres
stage "go toolchain" setup_go
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool
stage "start a throwaway PostgreSQL" start_cluster
stage "roles and databases (CloudNativePG style)" create_app_databases
stage "migrate both stores" migrate_both
stage "status" status_both
stage "migrate again (a no-op)" migrate_both

build_server_and_client() {
    TEMPORAL_SERVER="$(bash "$REPO_ROOT/scripts/build-server.sh" "$TEMPORAL_VERSION" | tail -n 1)"
    TEMPORAL_CLIENT="$(bash "$REPO_ROOT/scripts/build-client.sh" | tail -n 1)"
}

# The server's stores are the two migrated databases, as their owner roles; passwords through the environment.
run_workflow() {
    echo "# workflows of a Temporal $TEMPORAL_VERSION server on the migrated databases, listed through visibility"
    TEMPORAL_PASSWORD="$TEMPORAL_PASSWORD" VISIBILITY_PASSWORD="$VISIBILITY_PASSWORD" \
        "$PYTHON" -m devtools.temporal_server demo --server "$TEMPORAL_SERVER" --client "$TEMPORAL_CLIENT" \
        --host "$PGCLUSTER_HOST" --port "$PGCLUSTER_PORT" --db temporal --visibility-db temporal_visibility
}

stage "temporal server $TEMPORAL_VERSION and test client" build_server_and_client
stage "a workflow on the migrated databases (server started, then stopped)" run_workflow
