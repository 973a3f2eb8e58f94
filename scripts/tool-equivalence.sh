#!/usr/bin/env bash
# Checks that TEMPORAL_VERSION's tool installs the tree of each upgrade source outside TEMPORAL_UPGRADE_OWN_TOOL
# exactly as that release's own tool does (integration/tool_equivalence.py: statements run, schema dump, version
# and history rows, seed rows, a crash in the middle of a version). The suite relies on it to build one tool
# instead of one per release; run this when a Temporal pin changes.
#   bash scripts/tool-equivalence.sh [PYTEST ARGS...]
# Builds the releases' own tools first (scripts/build-tool.sh, a minute or two each when not cached).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
trap finish EXIT

compare() {
    "$PYTHON" -m pytest -p no:cacheprovider -n 0 -s -q integration/tool_equivalence.py "$@" |
        grep --line-buffered -E '^tool-equivalence: |passed|failed|error'
}

stage "python virtualenv and locked deps" setup_python
stage "postgresql server binaries" setup_postgres
stage "go toolchain" setup_go
stage "temporal-sql-tool $TEMPORAL_VERSION" setup_tool
for release in $TEMPORAL_UPGRADE_FROM; do
    [[ " $TEMPORAL_UPGRADE_OWN_TOOL " == *" $release "* ]] && continue
    stage "temporal-sql-tool $release (its own, to compare with)" bash scripts/build-tool.sh "$release" >/dev/null
done
stage "compare the tools on each tree" compare "$@"
