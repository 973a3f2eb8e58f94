#!/usr/bin/env bash
# The benchmark (issue 5): sets up what a fresh machine lacks, as scripts/test.sh does, then compares the
# migrator with the bare temporal-sql-tool on a throwaway local PostgreSQL.
#   bash scripts/bench.sh [--rounds N] [--out FILE]
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
trap finish EXIT

stage "python virtualenv and locked deps" setup_python
stage "postgresql server binaries" setup_postgres
stage "go toolchain" setup_go
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool
stage "benchmark" "$PYTHON" -m bench.run "$@"
