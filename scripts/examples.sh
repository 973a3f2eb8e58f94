#!/usr/bin/env bash
# Recapture every example output in README.md and docs/*.md from real runs of the current code: sets up what a
# fresh machine lacks (as scripts/test.sh does), then devtools/examples.py runs each scenario on a throwaway
# local PostgreSQL with the pinned temporal-sql-tool and rewrites the <!-- example:NAME --> blocks.
#   bash scripts/examples.sh
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
trap finish EXIT

stage "python virtualenv and locked deps" setup_python
stage "postgresql server binaries" setup_postgres
stage "go toolchain" setup_go
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool
stage "examples (python -m devtools.examples)" "$PYTHON" -m devtools.examples
