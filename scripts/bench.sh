#!/usr/bin/env bash
# The benchmarks: set up what a fresh machine lacks, as scripts/test.sh does, then compare the migrator with
# the bare temporal-sql-tool on a throwaway local PostgreSQL.
#   bash scripts/bench.sh [--rounds N] [--out FILE] [--noop-only]                 # no-op (and its Python floor),
#                                                                                 # install, contention
#   bash scripts/bench.sh online [--blocker-seconds B] [--rows N] [--out FILE]    # under live traffic
#   bash scripts/bench.sh rewrite [--rows N] [--before S] [--out FILE]            # visibility 1.9 -> newest under
#                                                                                 # a witnessed load: tool vs online
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
trap finish EXIT

# The rewrite benchmark's picture, live-query latency over time (docs/rewrite-latency.png):
#   bash scripts/bench.sh plot [--data bench/rewrite.json] [--out docs/rewrite-latency.png]
# It needs matplotlib, which nothing else may load: its own virtualenv, from its own hashed lock file
# (requirements/bench.txt), apart from the test virtualenv and from what the image installs.
plot() {
    local venv="$REPO_ROOT/.venv-plot"
    [[ -x "$venv/bin/python" ]] || "$(command -v /usr/bin/python3 || command -v python3)" -m venv "$venv"
    "$venv/bin/python" -m pip --disable-pip-version-check --quiet install --require-hashes \
        -r "$REPO_ROOT/requirements/bench.txt"
    "$venv/bin/python" "$REPO_ROOT/bench/plot.py" "$@"
}
if [[ "${1:-}" == plot ]]; then
    shift
    stage "plot (bench/plot.py)" plot "$@"
    exit 0
fi
BENCH_MODE="${1:-run}" # kept: the mode is shifted off below

stage "python virtualenv and locked deps" setup_python
stage "postgresql server binaries" setup_postgres
stage "go toolchain" setup_go
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool

# The migrator and the Python floor run in what the image installs (runtime dependencies and the package as a
# wheel), not in the test virtualenv: its extra packages change what imports cost (structlog loads rich when
# it is there).
runtime_env() {
    local venv="$REPO_ROOT/.venv-bench" wheels
    [[ -x "$venv/bin/python" ]] || "$(command -v /usr/bin/python3 || command -v python3)" -m venv "$venv"
    "$venv/bin/python" -m pip --disable-pip-version-check --quiet install --require-hashes \
        -r "$REPO_ROOT/requirements/runtime.txt"
    wheels="$(mktemp -d)"
    "$PYTHON" -m pip --disable-pip-version-check --quiet wheel --no-deps --no-build-isolation \
        --wheel-dir "$wheels" "$REPO_ROOT"
    "$venv/bin/python" -m pip --disable-pip-version-check --quiet install --force-reinstall --no-deps "$wheels"/*.whl
    rm -rf "$wheels"
    export BENCH_PYTHON="$venv/bin/python"
    log "BENCH_PYTHON=$BENCH_PYTHON"
}
stage "the image's python environment" runtime_env
if [[ "${1:-}" == online || "${1:-}" == rewrite ]]; then
    mode="$1"
    shift
    stage "temporal-sql-tool $TEMPORAL_SERVER_FROM (the $mode benchmark's starting schemas)" \
        setup_tool "$TEMPORAL_SERVER_FROM" BENCH_FROM
    stage "$mode benchmark" "$PYTHON" -m "bench.$mode" "$@"
else
    stage "benchmark" "$PYTHON" -m bench.run "$@"
fi
# The rewrite benchmark's picture, from the figures it has just written (bench/rewrite.json by default).
if [[ "$BENCH_MODE" == rewrite ]]; then
    stage "plot (bench/plot.py)" plot
fi
