#!/usr/bin/env bash
# The project's test command: sets up everything a fresh machine lacks, then lints and runs every test.
#   bash scripts/test.sh [PYTEST ARGS...]
# Stages (each prints its duration): Python deps, PostgreSQL server binaries, temporal-sql-tool (the pinned
# release, then TEMPORAL_NEXT_VERSION for the cross-release upgrade test),
# helm (when scripts/build-helm.sh exists), ruff + mypy, pytest (tests/ and integration/).
# PYTEST_WORKERS (default "auto") sets pytest-xdist's worker count; 0 runs in one process.
# With CI=true a missing PostgreSQL or tool fails the integration suite instead of skipping it.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

trap finish EXIT

setup_helm() {
    local out
    out="$(bash "$REPO_ROOT/scripts/build-helm.sh")"
    HELM="$(tail -n 1 <<<"$out")"
    [[ -x "$HELM" ]] || die "scripts/build-helm.sh's last line is not an executable: $HELM"
    export HELM
    log "HELM=$HELM"
}

# A lint failure does not stop the run (the tests still say what they say); it fails it at the end.
LINT_FAILED=""
lint() {
    "$PYTHON" -m ruff check . || LINT_FAILED+=" ruff"
    "$PYTHON" -m mypy || LINT_FAILED+=" mypy"
    [[ -z "$LINT_FAILED" ]] || log "lint FAILED:$LINT_FAILED (continuing to the tests; the run fails at the end)"
}

run_pytest() {
    # Each xdist worker gets its own PostgreSQL (session fixtures run once per worker), every test its own
    # uniquely named database, and role set-up is idempotent and serialised, so workers cannot interfere.
    # worksteal balances uneven tests (a long parametrised matrix in one file) across the workers.
    "$PYTHON" -m pytest -n "${PYTEST_WORKERS:-auto}" --dist worksteal "$@"
}

stage "python deps (pip install -e '.[test]')" setup_python
stage "postgresql server binaries" setup_postgres
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool
stage "temporal-sql-tool $TEMPORAL_NEXT_VERSION (next release)" setup_tool "$TEMPORAL_NEXT_VERSION" TEMPORAL_NEXT
# integration/test_online.py starts its stores with data from these releases' schemas (cache paths).
for release in v1.29.1 v1.30.4; do
    stage "temporal-sql-tool $release (online data tests)" setup_tool "$release" ONLINE_FROM
done
if [[ -f "$REPO_ROOT/scripts/build-helm.sh" ]]; then
    stage "helm ${HELM_VERSION:-}" setup_helm
fi
stage "lint (ruff check, mypy)" lint
stage "pytest" run_pytest "$@"
[[ -z "$LINT_FAILED" ]] || die "lint failed:$LINT_FAILED"
